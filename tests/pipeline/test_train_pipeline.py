"""Local pipeline tier: ``train`` through kfp.local, ``train`` nested in
``ingest`` (only when the master version changed), ``autoroi trigger``, and the
compiled ``train.yaml``."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from autoroi.cli.main import main as cli_main
from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.registry import get_version, list_versions
from pipelines.run import compile_all, run_local
from tests.dms_source import make_dms_source
from tests.model_tables import simulated_master

pytestmark = pytest.mark.pipeline

TINY_TRAINING = {
    "search_space": {
        "layers": [1],
        "units": [16],
        "embedding_dim": [4],
        "lift_units": [8],
        "batch_size": [256],
    },
    "max_trials": 2,
    "max_seconds": 60,
    "epochs": 3,
    "ensemble_members": 2,
}


def _cfg(tmp_path: Path, **sections):
    training = {**TINY_TRAINING, **sections.pop("training", {})}
    return load_config(
        overrides={
            "lake": {"uri": str(tmp_path / "lake")},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
            "training": training,
            **sections,
        }
    )


def test_train_runs_locally_and_leaves_ui_artifacts(tmp_path: Path):
    master, truth = simulated_master()
    truth.to_parquet(tmp_path / "truth.parquet")
    published = MasterStore(open_lake(str(tmp_path / "lake"))).publish(
        pa.Table.from_pandas(master, preserve_index=False), {}
    )
    cfg = _cfg(tmp_path, training={"truth_path": str(tmp_path / "truth.parquet")})

    out = run_local("train", cfg, tmp_path / "train.log")

    assert out["master_version"] == published.version
    mv = get_version(open_lake(cfg.lake.uri), out["version"])
    assert out["status"] == mv.status in {"pending_approval", "rejected_by_gate"}
    assert {"wape", "roi_mae", "roi_spearman", "roi_sign_agreement"} <= set(mv.metrics)
    run_dir = next((tmp_path / "kfp").glob("autoroi-train-*"))
    steps = {p.name for p in run_dir.iterdir()}
    assert steps == {
        "tune-hyperparameters",
        "validate-model",
        "fit-model",
        "register-model",
        "notify-reviewer",
    }
    # what the Kubeflow UI renders: the report (HTML), the gate and the notice (Markdown), metrics
    assert (run_dir / "register-model" / "report").read_text().startswith("<!DOCTYPE html>")
    assert "| check | result | detail |" in (run_dir / "validate-model" / "gate").read_text()
    assert f"autoroi approve {mv.version}" in (run_dir / "notify-reviewer" / "notice").read_text()
    executor = json.loads((run_dir / "validate-model" / "executor_output.json").read_text())
    [metrics] = executor["artifacts"]["metrics"]["artifacts"]
    assert metrics["metadata"]["wape"] == pytest.approx(mv.metrics["wape"])
    assert "approve" in (tmp_path / "train.log").read_text()


def test_ingest_runs_train_only_when_the_master_version_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "k" * 48)
    source = tmp_path / "dms.sqlite"
    make_dms_source(source)
    cfg = _cfg(tmp_path, source={"url": f"sqlite:///{source}"})
    lake = open_lake(cfg.lake.uri)

    first = run_local("ingest", cfg, tmp_path / "ingest-1.log")
    assert first["master_changed"] is True
    versions = list_versions(lake)
    assert [v.master_version for v in versions] == [first["master_version"]]
    assert (
        "Tune hyperparameters" not in (tmp_path / "ingest-1.log").read_text()
    )  # display names: cluster only
    assert "tune-hyperparameters" in (tmp_path / "ingest-1.log").read_text()

    again = run_local("ingest", cfg, tmp_path / "ingest-2.log")
    assert again["master_changed"] is False
    assert len(list_versions(lake)) == 1  # same master: nothing trained
    assert "tune-hyperparameters" not in (tmp_path / "ingest-2.log").read_text()

    # the same check from outside, as a CronJob would run it
    assert cli_main(["trigger", "--lake", cfg.lake.uri, "--dry-run"]) is None
    said = capsys.readouterr().out
    assert "nothing to do" in said and first["master_version"] in said
    # a master version without a model (published by hand here) makes trigger say train
    master = MasterStore(lake).read().to_pandas()
    MasterStore(lake).publish(pa.Table.from_pandas(master.iloc[:-1], preserve_index=False), {})
    assert cli_main(["trigger", "--lake", cfg.lake.uri, "--dry-run"]) is None
    assert "trigger: train" in capsys.readouterr().out
    assert len(list_versions(lake)) == 1  # --dry-run trains nothing


def test_compiled_train_names_steps_requests_resources_and_ui_artifacts(tmp_path: Path):
    cfg = load_config(overrides={"kfp": {"trainer_image": "registry.example.com/autoroi/trainer:abc"}})
    path = next(p for p in compile_all(cfg, tmp_path) if p.name == "train.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    assert spec["pipelineInfo"]["name"] == "autoroi-train"
    tasks = spec["root"]["dag"]["tasks"]
    assert [t["taskInfo"]["name"] for t in tasks.values()] == [
        "Fit final model",
        "Notify reviewer",
        "Register model version and report",
        "Tune hyperparameters (Keras Tuner)",
        "Validate: backtest, baselines, gates",
    ]
    executors = spec["deploymentSpec"]["executors"]
    for step in ("tune-hyperparameters", "validate-model", "fit-model"):
        container = executors[f"exec-{step}"]["container"]
        assert container["image"] == "registry.example.com/autoroi/trainer:abc"
        assert container["resources"]["cpuRequest"] == 2.0
        assert container["resources"]["memoryLimit"] == pytest.approx(8 * 2**30 / 1e9)
    comps = spec["components"]
    assert comps["comp-validate-model"]["outputDefinitions"]["artifacts"]["gate"]["artifactType"][
        "schemaTitle"
    ] == ("system.Markdown")
    assert comps["comp-validate-model"]["outputDefinitions"]["artifacts"]["metrics"]["artifactType"][
        "schemaTitle"
    ] == ("system.Metrics")
    assert comps["comp-register-model"]["outputDefinitions"]["artifacts"]["report"]["artifactType"][
        "schemaTitle"
    ] == ("system.HTML")
    assert comps["comp-fit-model"]["outputDefinitions"]["artifacts"]["model"]["artifactType"][
        "schemaTitle"
    ] == ("system.Model")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["master_version"]["defaultValue"] == ""
    assert "latest" in params["master_version"]["description"]  # what the Kubeflow UI shows beside the field
