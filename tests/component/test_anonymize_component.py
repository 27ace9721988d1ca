"""Component tier: ``anonymize`` with a real raw zone and real artifacts."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from kfp.dsl import Artifact, Dataset, Metrics

from autoroi.config import DEFAULT_ALLOW_LIST, load_config
from autoroi.errors import AnonymizationError
from autoroi.lake.datasets import read_table_dir
from autoroi.replication import replicate_tables
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.generate import generate_source
from autoroi.source.schema import DIRECT_IDENTIFIERS
from components.anonymize.component import build

KEY = "component-test-key-0123456789abcdefghij"


@pytest.fixture(scope="module")
def raw_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated dealer database replicated into a lake."""
    root = tmp_path_factory.mktemp("anonymize")
    url = f"sqlite:///{root / 'dms.sqlite'}"
    engine = connect_engine(parse_url(url))
    try:
        generate_source(engine, seed=5, sales_rows=3_000)
    finally:
        engine.dispose()
    report = replicate_tables(load_config(), source_url=url, lake_uri=str(root / "lake"))
    assert report.ok
    return root / "lake"


def _artifacts(tmp_path: Path) -> tuple[Dataset, Metrics]:
    return (
        Dataset(name="curated", uri=str(tmp_path / "curated"), metadata={}),
        Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
    )


def _ids(where: Path) -> Artifact:
    return Artifact(name="identifiers", uri=str(where / "identifiers"), metadata={})


def test_anonymize_component_writes_curated_tables_report_and_metrics(
    raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY)
    curated, metrics = _artifacts(tmp_path)
    op = build("example.org/components:test")

    out = op.python_func(
        lake_uri=str(raw_lake),
        config_json=load_config().model_dump_json(),
        curated=curated,
        identifiers=_ids(tmp_path),
        metrics=metrics,
    )

    report = json.loads(out)
    root = Path(curated.path)
    assert sorted(p.name for p in root.iterdir()) == sorted([*DEFAULT_ALLOW_LIST, "_report.json"])
    for table in DEFAULT_ALLOW_LIST:
        assert [p.name for p in (root / table).iterdir()] == ["part-00000.parquet"]
    on_disk = json.loads((root / "_report.json").read_text())
    assert {k: v for k, v in on_disk.items() if k != "source"} == report
    assert on_disk["source"]["sales"]["rows"] == 3_000  # raw versions, for the master manifest
    tables = read_table_dir(root)
    assert ds.dataset(root / "sales", format="parquet").count_rows() == 3_000
    for table, cols in DIRECT_IDENTIFIERS.items():
        assert not set(cols) & set(tables[table].column_names)
    assert tables["sales"].schema.field("customer_id").type == "string"
    assert metrics.metadata["sales.rows"] == 3_000
    assert metrics.metadata["tables_dropped"] == 0
    assert metrics.metadata["new_columns"] == 0
    assert metrics.metadata["duration_seconds"] > 0
    assert "zip3_rows_suppressed" in metrics.metadata
    assert report["as_of"] is not None
    # the scan's input: fingerprints of the raw identifiers, never a value in clear text
    ids = pq.read_table(tmp_path / "identifiers" / "identifiers.parquet").column("fingerprint")
    assert ids.type == pa.uint64() and len(ids) == metrics.metadata["identifier_fingerprints"] > 1_000
    raw_text = (tmp_path / "identifiers" / "identifiers.parquet").read_bytes()
    sales = ds.dataset(raw_lake / "raw" / "sales", format="parquet")
    vins = sales.to_table(columns=["vin"]).column("vin").to_pylist()
    assert not any(v.encode() in raw_text for v in vins[:200])

    # the same key gives the same curated tables
    again, m2 = _artifacts(tmp_path / "again")
    op.python_func(
        lake_uri=str(raw_lake),
        config_json=load_config().model_dump_json(),
        curated=again,
        identifiers=_ids(tmp_path / "again"),
        metrics=m2,
    )
    second = read_table_dir(again.path)
    assert all(second[t].equals(tables[t]) for t in tables)


def test_anonymize_component_refuses_without_key_and_writes_nothing(
    raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AUTOROI_HMAC_KEY", raising=False)
    curated, metrics = _artifacts(tmp_path)
    op = build("example.org/components:test")
    with pytest.raises(AnonymizationError, match="AUTOROI_HMAC_KEY"):
        op.python_func(
            lake_uri=str(raw_lake),
            config_json=load_config().model_dump_json(),
            curated=curated,
            identifiers=_ids(tmp_path),
            metrics=metrics,
        )
    assert not Path(curated.path).exists() or not any(Path(curated.path).iterdir())


def test_anonymize_component_reads_the_key_from_a_mounted_file(
    raw_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AUTOROI_HMAC_KEY", raising=False)
    key_file = tmp_path / "secret" / "hmac-key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    cfg = load_config(overrides={"anonymize": {"hmac_key_file": str(key_file)}})
    curated, metrics = _artifacts(tmp_path)
    build("example.org/components:test").python_func(
        lake_uri=str(raw_lake),
        config_json=cfg.model_dump_json(),
        curated=curated,
        identifiers=_ids(tmp_path),
        metrics=metrics,
    )
    assert read_table_dir(curated.path)["sales"].num_rows == 3_000


def test_table_folder_helpers(raw_lake: Path, tmp_path: Path):
    """The helpers other components share: zones through manifests, folders of tables."""
    import pyarrow as pa

    from autoroi.lake.datasets import read_zone, write_report, write_table_dir
    from autoroi.lake.storage import open_lake

    lake = open_lake(str(raw_lake))
    raw = read_zone(lake, "raw")
    assert sorted(raw) == sorted(DEFAULT_ALLOW_LIST)
    some = read_zone(lake, "raw", columns={"sales": ["vin", "no_such_column"], "nope": ["x"]})
    assert list(some) == ["sales"] and some["sales"].column_names == ["vin"]
    assert read_zone(lake, "curated") == {}

    tables = {"a": pa.table({"x": [1, 2]}), "empty": pa.table({"y": pa.array([], pa.string())})}
    write_table_dir(tmp_path / "out", tables)
    write_table_dir(tmp_path / "out", {"a": pa.table({"x": [3]})})  # replaces, never appends
    write_report(tmp_path / "out", {"ok": True})
    back = read_table_dir(tmp_path / "out")
    assert sorted(back) == ["a", "empty"]
    assert back["a"].column("x").to_pylist() == [3]
    assert back["empty"].schema == tables["empty"].schema and back["empty"].num_rows == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_report.json", "a", "empty"]
