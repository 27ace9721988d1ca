"""Component tier: ``tune`` -> ``validate`` -> ``fit`` -> ``register`` ->
``notify`` called through ``.python_func`` with real artifacts in ``tmp_path``,
on a small simulated master table published into a local lake."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Model

from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.lake.tables import TableStore
from autoroi.model.programs import PROGRAM_TABLES
from autoroi.registry import get_version, list_versions, verify_digest
from autoroi.source.simulator import simulate
from autoroi.training import needs_training
from components.fit.component import build as build_fit
from components.notify.component import build as build_notify
from components.register.component import build as build_register
from components.tune.component import build as build_tune
from components.validate.component import build as build_validate
from tests.model_tables import simulated_master

pytestmark = pytest.mark.slow
IMAGE = "example.org/trainer:test"
TINY_SPACE = {"layers": [1], "units": [16], "embedding_dim": [4], "lift_units": [8], "batch_size": [256]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A lake with one published master version, and the matching truth file."""
    root = tmp_path_factory.mktemp("train-world")
    master, truth = simulated_master()
    truth_path = root / "truth.parquet"
    truth.to_parquet(truth_path)
    lake = root / "lake"
    result = MasterStore(open_lake(str(lake))).publish(pa.Table.from_pandas(master, preserve_index=False), {})
    # the curated program tables the fit step estimates every program from
    tables = simulate(11, sales_rows=300_000).tables  # simulated_master's world
    for name in PROGRAM_TABLES:
        w = TableStore(open_lake(str(lake)), "curated", name).begin()
        w.write_table(tables[name])
        w.commit(tables[name].schema)
    return lake, truth_path, result.version


def _cfg(lake: Path, truth: Path | None, **training):
    return load_config(
        overrides={
            "lake": {"uri": str(lake)},
            "training": {
                "search_space": TINY_SPACE,
                "max_trials": 2,
                "max_seconds": 60,
                "epochs": 3,
                "ensemble_members": 2,
                "truth_path": str(truth) if truth else None,
                **training,
            },
        }
    )


def _art(cls, tmp: Path, name: str):
    return cls(name=name, uri=str(tmp / name), metadata={})


def _train(tmp: Path, lake: Path, cfg) -> dict:
    """Run the five steps in pipeline order; returns what each produced."""
    cfg_json = cfg.model_dump_json()
    tuner, tmetrics = _art(Artifact, tmp, "tuner"), _art(Metrics, tmp, "tune-metrics")
    tuned = build_tune(IMAGE).python_func(
        lake_uri=str(lake), config_json=cfg_json, master_version="", tuner=tuner, metrics=tmetrics
    )
    evaluation, vmetrics = _art(Artifact, tmp, "evaluation"), _art(Metrics, tmp, "validate-metrics")
    gate = _art(Markdown, tmp, "gate")
    validated = build_validate(IMAGE).python_func(
        lake_uri=str(lake),
        config_json=cfg_json,
        master_version=tuned.master_version,
        hyperparameters=tuned.hyperparameters,
        epochs=tuned.epochs,
        evaluation=evaluation,
        metrics=vmetrics,
        gate=gate,
    )
    model, fmetrics = _art(Model, tmp, "model"), _art(Metrics, tmp, "fit-metrics")
    digest = build_fit(IMAGE).python_func(
        lake_uri=str(lake),
        config_json=cfg_json,
        master_version=tuned.master_version,
        hyperparameters=tuned.hyperparameters,
        epochs=tuned.epochs,
        model=model,
        metrics=fmetrics,
    )
    report = _art(HTML, tmp, "report")
    registered = build_register(IMAGE).python_func(
        lake_uri=str(lake),
        config_json=cfg_json,
        master_version=tuned.master_version,
        model=model,
        evaluation=evaluation,
        tuner=tuner,
        report=report,
    )
    notice = _art(Markdown, tmp, "notice")
    channels = build_notify(IMAGE).python_func(
        lake_uri=str(lake), config_json=cfg_json, version=registered.version, notice=notice
    )
    return {
        "tuned": tuned,
        "tune_metrics": tmetrics,
        "validated": validated,
        "validate_metrics": vmetrics,
        "gate": Path(gate.path).read_text(),
        "digest": digest,
        "registered": registered,
        "report": Path(report.path).read_text(),
        "notice": Path(notice.path).read_text(),
        "channels": channels,
        "tuner_dir": Path(tuner.path),
        "evaluation_dir": Path(evaluation.path),
    }


def test_train_steps_register_a_reviewable_version(world, tmp_path: Path):
    lake_path, truth, master_version = world
    lake = open_lake(str(lake_path))
    assert needs_training(lake).train is True

    out = _train(tmp_path, lake_path, _cfg(lake_path, truth))

    tuned = out["tuned"]
    assert tuned.master_version == master_version
    assert set(json.loads(tuned.hyperparameters)) >= set(TINY_SPACE)
    assert 1 <= tuned.epochs <= 3
    assert (out["tuner_dir"] / "tuning.json").exists() and (out["tuner_dir"] / "roi" / "oracle.json").exists()
    assert 1 <= out["tune_metrics"].metadata["trials"] <= 2

    gates = json.loads(out["validated"].decision)
    assert out["validated"].passed is gates["passed"]
    evaluation = json.loads((out["evaluation_dir"] / "evaluation.json").read_text())
    assert len(evaluation["folds"]) >= 3
    assert {"candidate", "seasonal_naive", "poisson_glm", "hist_gbm"} <= set(evaluation["metrics"])
    assert "roi_mae" in evaluation["metrics"]["candidate"]  # the truth was scored against
    assert out["validate_metrics"].metadata["wape"] == evaluation["metrics"]["candidate"]["wape"]
    assert "| seasonal_naive |" in out["gate"] and ("Gates passed" in out["gate"]) is gates["passed"]

    reg = out["registered"]
    mv = get_version(lake, reg.version)
    assert reg.status == mv.status == ("pending_approval" if gates["passed"] else "rejected_by_gate")
    assert mv.master_version == master_version
    assert mv.digest == out["digest"] and verify_digest(lake, reg.version).ok
    assert out["report"] == (lake_path / "models" / "roi" / reg.version / "report.html").read_text()
    assert reg.version in out["report"] and "<svg" in out["report"]
    assert "http://" not in out["report"] and "https://" not in out["report"]  # opens with no network
    # every program that ran in the model's cells, beside the truth
    assert "Programs that ran" in out["report"] and "Program-level ROI MAE against the truth" in out["report"]

    assert out["channels"] == "log"
    assert f"autoroi approve {reg.version} --by <name>" in out["notice"]
    assert needs_training(lake).train is False  # this master version has its model now


def test_a_failed_gate_registers_rejected_by_gate_with_reasons(world, tmp_path: Path):
    lake_path, _, _ = world
    cfg = _cfg(lake_path, None, gates={"wape_max": 0.001})

    out = _train(tmp_path, lake_path, cfg)

    assert out["validated"].passed is False
    mv = get_version(open_lake(str(lake_path)), out["registered"].version)
    assert mv.status == "rejected_by_gate"
    assert any("0.001" in r for r in mv.gate["reasons"])
    assert "Gates failed" in out["gate"]
    assert "--override" in out["notice"] and "0.001" in out["notice"]
    assert "roi_mae" not in mv.metrics  # no truth configured: no ROI metrics invented
    assert len(list_versions(open_lake(str(lake_path)))) >= 1


def test_tune_refuses_a_master_version_that_does_not_exist(world, tmp_path: Path):
    lake_path, truth, _ = world
    cfg = _cfg(lake_path, truth)
    with pytest.raises(Exception, match="master version nope does not exist"):
        build_tune(IMAGE).python_func(
            lake_uri=str(lake_path),
            config_json=cfg.model_dump_json(),
            master_version="nope",
            tuner=_art(Artifact, tmp_path, "tuner"),
            metrics=_art(Metrics, tmp_path, "m"),
        )


def test_tune_runs_a_distributed_search_when_asked(world, tmp_path: Path):
    """``training.tuner_workers: 2``: the step's search is a chief and two
    worker processes; the step's tuning.json has every trial, each from a
    worker."""
    lake_path, truth, version = world
    space = {**TINY_SPACE, "units": [8, 16, 32]}  # TINY_SPACE alone is one point: one trial
    cfg = _cfg(lake_path, truth, tuner_workers=2, max_trials=3, search_space=space)
    tuner = _art(Artifact, tmp_path, "tuner")
    build_tune(IMAGE).python_func(
        lake_uri=str(lake_path),
        config_json=cfg.model_dump_json(),
        master_version=version,
        tuner=tuner,
        metrics=_art(Metrics, tmp_path, "m"),
    )
    doc = json.loads((Path(tuner.path) / "tuning.json").read_text())
    assert len(doc["trials"]) == 3 and doc["stopped_by"] == "max_trials"
    assert {t["tuner"] for t in doc["trials"]} <= {"tuner0", "tuner1"}
    assert all(t["val_loss"] is not None for t in doc["trials"])
    assert any("distributed" in line for line in doc["log"])
