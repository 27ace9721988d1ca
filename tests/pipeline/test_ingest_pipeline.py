"""Local pipeline tier: ``ingest`` through kfp.local's SubprocessRunner, and
its compiled form."""

import datetime as dt
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
import yaml

from autoroi.config import load_config
from pipelines.run import arguments, compile_all, run_local
from tests.sqlite_source import T0, make_source

pytestmark = pytest.mark.pipeline


def _cfg(tmp_path: Path, url: str):
    return load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": str(tmp_path / "lake")},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
        }
    )


def test_ingest_runs_locally_full_then_incremental(tmp_path: Path):
    url = make_source(tmp_path / "src.db", rows=400)
    cfg = _cfg(tmp_path, url)

    first = run_local("ingest", cfg)
    assert first["tables"][0]["status"] == "full_load"
    assert first["tables"][0]["rows"] == 400

    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("DELETE FROM items WHERE item_id <= 10")
        c.execute(
            sa.text("UPDATE items SET price = 1, updated_at = :t WHERE item_id = 200"),
            {"t": (T0 + dt.timedelta(days=30)).replace(tzinfo=None)},
        )
    engine.dispose()

    second = run_local("ingest", cfg)
    t = second["tables"][0]
    assert (t["status"], t["rows"], t["deleted"], t["updated"], t["inserted"]) == (
        "incremental",
        390,
        10,
        1,
        0,
    )
    lake = ds.dataset(tmp_path / "lake" / "raw" / "items", format="parquet").to_table()
    assert lake.num_rows == 390
    assert sorted(lake.column("item_id").to_pylist()) == list(range(11, 401))


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
    cfg = load_config(overrides={"kfp": {"base_image": "registry.example.com/autoroi/components:abc"}})
    [path] = compile_all(cfg, tmp_path / "a")
    [again] = compile_all(cfg, tmp_path / "b")
    assert path.read_bytes() == again.read_bytes()
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"] == "autoroi-ingest"
    task = spec["root"]["dag"]["tasks"]["replicate"]
    assert task["taskInfo"]["name"] == "Replicate dealer database"
    assert task["cachingOptions"] == {} or task["cachingOptions"].get("enableCache") is not True
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/autoroi/components:abc"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"source_url", "lake_uri", "config_json"}
