"""Component tier: ``scan_pii`` over staged curated and master folders."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp.dsl import Artifact, Dataset, Metrics

from autoroi.config import AutoroiConfig, load_config
from autoroi.errors import PiiLeakError
from autoroi.replication import replicate_tables
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.generate import generate_source
from components.anonymize.component import build as build_anonymize
from components.scan.component import build as build_scan

KEY = "component-test-key-0123456789abcdefghij"


@pytest.fixture(scope="module")
def raw_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scan")
    url = f"sqlite:///{root / 'dms.sqlite'}"
    engine = connect_engine(parse_url(url))
    try:
        generate_source(engine, seed=3, sales_rows=3_000)
    finally:
        engine.dispose()
    assert replicate_tables(load_config(), source_url=url, lake_uri=str(root / "lake")).ok
    return root / "lake"


def _anonymize(lake: Path, cfg: AutoroiConfig, where: Path) -> tuple[Dataset, Artifact]:
    curated = Dataset(name="curated", uri=str(where / "curated"), metadata={})
    identifiers = Artifact(name="identifiers", uri=str(where / "identifiers"), metadata={})
    build_anonymize("example.org/c:test").python_func(
        lake_uri=str(lake),
        config_json=cfg.model_dump_json(),
        curated=curated,
        identifiers=identifiers,
        metrics=Metrics(name="m", uri=str(where / "anon-metrics"), metadata={}),
    )
    return curated, identifiers


def _master(where: Path, extra: dict[str, list] | None = None) -> Dataset:
    """A staged master table as ``preprocess`` leaves it: Parquet under data/
    and a report beside it."""
    master = Dataset(name="master", uri=str(where / "master"), metadata={})
    data = Path(master.path) / "data"
    data.mkdir(parents=True)
    cols = {
        "region": ["Northeast", "West"],
        "vehicle_model": ["Aria", "Volta"],
        "week_start": pa.array([19723, 19730], pa.int32()).cast(pa.date32()),
        "units": [12.0, 7.0],
        "dealer_count": [5, 6],
        **(extra or {}),
    }
    pq.write_table(pa.table(cols), data / "part-2024.parquet")
    (Path(master.path) / "_report.json").write_text(json.dumps({"anonymity": {"suppressed_rows": 3}}))
    return master


def _scan(cfg: AutoroiConfig, staged: tuple[Dataset, Artifact], master: Dataset, where: Path):
    report = Artifact(name="report", uri=str(where / "scan-report.json"), metadata={})
    metrics = Metrics(name="metrics", uri=str(where / "scan-metrics"), metadata={})
    curated, identifiers = staged
    run = lambda: build_scan("example.org/c:test").python_func(  # noqa: E731
        config_json=cfg.model_dump_json(),
        identifiers=identifiers,
        curated=curated,
        master=master,
        report=report,
        metrics=metrics,
    )
    return run, report, metrics


def test_scan_passes_on_anonymized_outputs(raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY)
    cfg = load_config()
    run, report, metrics = _scan(cfg, _anonymize(raw_lake, cfg, tmp_path), _master(tmp_path), tmp_path)

    out = json.loads(run())

    assert out["ok"] is True and out["findings"] == []
    assert json.loads(Path(report.path).read_text()) == out
    assert "curated/sales" in out["tables"] and "master" in out["tables"]
    assert "curated/_report.json" in out["tables"] and "master/_report.json" in out["tables"]
    assert metrics.metadata["findings"] == 0
    assert metrics.metadata["identifiers"] > 10_000
    assert metrics.metadata["cells_scanned"] > 3_000


def test_scan_fails_on_a_leaking_allow_list_and_reports_no_values(
    raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY)
    cfg = load_config(
        overrides={"anonymize": {"allow": {"customers": {"customer_id": "pseudonymize", "email": "keep"}}}}
    )
    staged = _anonymize(raw_lake, cfg, tmp_path)
    curated = staged[0]
    run, report, metrics = _scan(cfg, staged, _master(tmp_path), tmp_path)

    with pytest.raises(PiiLeakError, match=r"curated/customers\.email \(email: \d+, identifier: \d+\)"):
        run()

    doc = json.loads(Path(report.path).read_text())
    assert doc["ok"] is False
    assert {(f["table"], f["column"]) for f in doc["findings"]} == {("curated/customers", "email")}
    assert metrics.metadata["findings"] == 2
    emails = pq.read_table(Path(curated.path) / "customers").column("email").drop_null().to_pylist()
    text = Path(report.path).read_text()
    assert emails and not any(e in text for e in emails)


def test_scan_fails_on_a_leak_in_the_master_table(
    raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY)
    cfg = load_config()
    master = _master(tmp_path, extra={"note": ["ok", "sold to +1 (201) 555-0199"]})
    run, report, _ = _scan(cfg, _anonymize(raw_lake, cfg, tmp_path), master, tmp_path)
    with pytest.raises(PiiLeakError, match=r"master\.note \(phone: 1\)"):
        run()
    assert json.loads(Path(report.path).read_text())["findings"] == [
        {"table": "master", "column": "note", "check": "phone", "count": 1}
    ]
