"""Local pipeline tier: ``ingest`` (replicate -> anonymize -> preprocess ->
validate -> scan -> publish) through kfp.local's SubprocessRunner, and its
compiled form."""

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.mutate import mutate_source
from pipelines.run import arguments, compile_all, run_local
from tests.dms_source import make_dms_source

pytestmark = pytest.mark.pipeline

HMAC_KEY = "k" * 48


@pytest.fixture(autouse=True)
def _hmac_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOROI_HMAC_KEY", HMAC_KEY)


@pytest.fixture(scope="module")
def dms_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated source, copied per test (generating is the slow part)."""
    path = tmp_path_factory.mktemp("dms") / "dms.sqlite"
    make_dms_source(path)
    return path


def _source(tmp_path: Path, template: Path) -> str:
    path = tmp_path / "dms.sqlite"
    path.write_bytes(template.read_bytes())
    return f"sqlite:///{path}"


def _cfg(tmp_path: Path, url: str, **sections):
    """Training is off here (tests/pipeline/test_train_pipeline.py covers the
    nested run)."""
    return load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": str(tmp_path / "lake")},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
            "training": {"on_master_change": False},
            **sections,
        }
    )


def test_ingest_publishes_versions_only_when_the_data_change(tmp_path: Path, dms_template: Path):
    url = _source(tmp_path, dms_template)
    cfg = _cfg(tmp_path, url)
    store = MasterStore(open_lake(cfg.lake.uri))

    first = run_local("ingest", cfg)
    assert {t["status"] for t in first["replication"]["tables"]} == {"full_load"}
    assert first["master_changed"] is True
    v1 = first["master_version"]
    assert store.latest()["version"] == v1
    manifest = store.manifest(v1)
    assert manifest["k"] == 5 and manifest["rows"] > 0
    assert manifest["source"]["sales"]["rows"] == 30_000
    master = store.read()
    assert min(master.column("dealer_count").to_pylist()) >= 5
    for table in ("sales", "customers", "dealers"):
        curated = ds.dataset(tmp_path / "lake" / "curated" / table, format="parquet")
        assert curated.count_rows() > 0
        assert "vin" not in curated.schema.names and "email" not in curated.schema.names

    again = run_local("ingest", cfg)
    assert {t["status"] for t in again["replication"]["tables"]} == {"unchanged"}
    assert (again["master_version"], again["master_changed"]) == (v1, False)
    assert store.latest()["version"] == v1

    engine = connect_engine(parse_url(url))
    mutate_source(engine, seed=5, batches=1)
    engine.dispose()

    # a validation bound that the change breaks: the run fails, latest stays
    strict = _cfg(tmp_path, url, validation={"max_row_count_change": 0.0, "max_mean_units_change": 0.0})
    with pytest.raises(RuntimeError):
        run_local("ingest", strict)
    assert store.latest()["version"] == v1

    changed = run_local("ingest", cfg)
    assert changed["master_changed"] is True
    v2 = changed["master_version"]
    assert v2 != v1 and store.latest()["version"] == v2
    assert store.manifest(v2)["previous"] == v1
    # the new source column is not allowed into curated/ until someone allows it
    assert "delivery_date" in ds.dataset(tmp_path / "lake" / "raw" / "sales", format="parquet").schema.names
    assert (
        "delivery_date"
        not in ds.dataset(tmp_path / "lake" / "curated" / "sales", format="parquet").schema.names
    )


def test_leaking_configuration_fails_the_scan_and_publishes_nothing(tmp_path: Path, dms_template: Path):
    url = _source(tmp_path, dms_template)
    allow = load_config().anonymize.allow
    allow["customers"]["email"] = "keep"
    cfg = _cfg(tmp_path, url, anonymize={"allow": allow})
    log = tmp_path / "run.log"
    with pytest.raises(RuntimeError):
        run_local("ingest", cfg, log)
    text = log.read_text()
    assert "email" in text
    assert not (tmp_path / "lake" / "curated").exists()
    assert not (tmp_path / "lake" / "master").exists()
    assert (tmp_path / "lake" / "raw" / "customers").exists()


def test_missing_hmac_key_fails_before_anything_is_published(tmp_path: Path, dms_template, monkeypatch):
    monkeypatch.delenv("AUTOROI_HMAC_KEY")
    cfg = _cfg(tmp_path, _source(tmp_path, dms_template))
    log = tmp_path / "run.log"
    with pytest.raises(RuntimeError):
        run_local("ingest", cfg, log)
    assert "AUTOROI_HMAC_KEY" in log.read_text()
    assert not (tmp_path / "lake" / "curated").exists()


def test_password_never_becomes_a_parameter(tmp_path: Path):
    cfg = load_config(overrides={"source": {"url": "postgresql://bob:hunter2@db.example/dms"}})
    args = arguments(cfg)
    assert "hunter2" not in str(args)
    assert args["source_url"] == "postgresql://bob@db.example/dms"


def test_failed_replication_fails_the_local_run(tmp_path: Path):
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path}/absent-folder/none.db")
    with pytest.raises(RuntimeError):
        run_local("ingest", cfg)
    assert not (tmp_path / "lake" / "raw").exists()


def test_compile_is_deterministic_and_names_steps(tmp_path: Path):
    cfg = load_config(
        overrides={
            "kfp": {
                "image_registry": "registry.example.com/autoroi",
                "image_tag": "abc",
            }
        }
    )
    paths = compile_all(cfg, tmp_path / "a")
    again = compile_all(cfg, tmp_path / "b")
    assert [p.name for p in paths] == ["ingest.yaml", "train.yaml", "deploy.yaml"]
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    spec, platform = yaml.safe_load_all(
        paths[0].read_text()
    )  # the pipeline, then kfp-kubernetes' platform spec
    assert "autoroi-hmac" in json.dumps(platform)
    assert spec["pipelineInfo"]["name"] == "autoroi-ingest"
    tasks = spec["root"]["dag"]["tasks"]
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert names == {
        "Replicate dealer database",
        "Strip PII (allow-list, HMAC pseudonyms)",
        "Build master table (Spark, k-anonymity)",
        "Validate master table",
        "Scan outputs for PII",
        "Publish curated tables and master version",
        "Monitor deployed model (accuracy, lift, drift)",
        "lake-given",  # dsl.If(lake_uri) around dsl.If(the monitor says train) around train
    }
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {
        f"registry.example.com/autoroi/{kind}:abc" for kind in ("components", "spark", "trainer")
    }
    assert set(spec["root"]["outputDefinitions"]["parameters"]) == {
        "replication",
        "master_version",
        "master_changed",
        "published",
        "monitor",
    }
    assert spec["root"]["inputDefinitions"]["parameters"]["train_on_change"]["defaultValue"] is True
    assert json.dumps(spec).count("hunter2") == 0
