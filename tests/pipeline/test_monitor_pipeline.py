"""Local pipeline tier: ``ingest``'s ``monitor`` step through kfp.local
against a deployed model: nothing to judge before a version is deployed, a
record per master version once one is, and a shock that the monitor flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoroi.approval import APPROVE, decide
from autoroi.cli.main import cli
from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.model.artifact import save_model
from autoroi.model.train import train_model
from autoroi.monitoring.run import record_path
from autoroi.notify import ReviewNotice
from autoroi.registry import DEPLOYED, list_versions, register_model, set_status
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.mutate import mutate_source
from pipelines.run import run_local
from tests.dms_source import make_dms_source
from tests.model_tables import TINY_HP
from tests.pipeline.test_train_pipeline import TINY_TRAINING

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _hmac_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "m" * 48)


def _deploy(lake_uri: str, tmp: Path, master_version: str, wape: float = 0.6) -> str:
    """A small model trained on ``master_version``, registered with backtest
    WAPE ``wape`` and marked deployed (what the deploy pipeline leaves in the
    registry)."""
    lake = open_lake(lake_uri)
    master = MasterStore(lake).read(master_version).to_pandas()
    model = train_model(master, TINY_HP, epochs=3, seed=3, version="monitored")
    folder = save_model(tmp / f"model-{wape}", model)
    gate = {"passed": True, "reasons": [], "checks": []}
    meta = {"master_version": master_version, "metrics": {"wape": wape, "lift_ratio": 1.0}, "gate": gate}
    mv = register_model(lake, folder, meta, {}, "<html>report</html>", "pending_approval")
    decide(lake, mv.version, APPROVE, "tester")
    set_status(lake, mv.version, DEPLOYED, "tester", "deployed for the test")
    return mv.version


def test_monitor_judges_the_deployed_model_and_flags_a_new_model(tmp_path: Path):
    db = tmp_path / "dms.sqlite"
    make_dms_source(db)
    url = f"sqlite:///{db}"
    lake_uri = str(tmp_path / "lake")
    cfg = load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": lake_uri},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
            "training": {"on_master_change": False, "on_degraded": False},
        }
    )
    first = run_local("ingest", cfg)
    assert first["monitor"] == "not_deployed"  # nothing deployed yet: nothing judged, nothing written
    lake = open_lake(lake_uri)
    assert not lake.exists(record_path(lake, first["master_version"]))
    version = _deploy(lake_uri, tmp_path, first["master_version"])

    engine = connect_engine(parse_url(url))
    mutate_source(engine, seed=8, batches=2)
    mutate_source(engine, seed=8, batches=2, shock="new_model")
    engine.dispose()
    shocked = run_local("ingest", cfg)
    assert shocked["master_changed"] is True
    record = lake.read_json(record_path(lake, shocked["master_version"]))
    assert record is not None and record["status"] == shocked["monitor"] == "drift"
    assert record["model_version"] == version and record["model_master_version"] == first["master_version"]
    assert record["drift"]["unknown_categories"] == {"vehicle_model": ["Voltara EX"]}
    assert record["accuracy"]["weeks"] >= 2 and record["accuracy"]["rows"] > 0
    assert any("Voltara EX" in r for r in record["reasons"])

    out = CliRunner().invoke(cli, ["monitor", "show", "--json", "--lake", lake_uri])
    assert out.exit_code == 0, out.output
    history = json.loads(out.output)
    assert [h["master_version"] for h in history] == [shocked["master_version"]]

    # a deployed model that did far better in its backtest than it does now:
    # degraded, and with training.on_degraded the same ingest trains a new
    # version, although training on a master change is off
    degraded_version = _deploy(lake_uri, tmp_path, first["master_version"], wape=0.02)
    engine = connect_engine(parse_url(url))
    mutate_source(engine, seed=9, batches=1)
    engine.dispose()
    retrain = cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"on_degraded": True, **TINY_TRAINING})}
    )
    third = run_local("ingest", retrain)
    assert third["monitor"] == "degraded"
    record = lake.read_json(record_path(lake, third["master_version"]))
    assert record["model_version"] == degraded_version
    assert any("WAPE" in r for r in record["reasons"])
    (trained,) = [v for v in list_versions(lake) if v.master_version == third["master_version"]]
    because = trained.metadata["trained_because"]
    assert "degraded" in because and third["master_version"] in because
    notice = ReviewNotice.from_version(trained)
    assert f"trained because: {because}" in notice.text()
