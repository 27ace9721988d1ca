"""Keras Tuner's distributed mode: a chief (the oracle, over gRPC on
loopback) and two worker processes search the same project; every trial runs
once, in one of the workers, and the best trial is the one the oracle holds."""

from __future__ import annotations

import json
from pathlib import Path

import keras_tuner as kt
import pytest

from autoroi.evaluation.folds import holdout_split
from autoroi.model import features as F
from autoroi.model.distributed import INPUTS_DIR, tune_distributed
from autoroi.model.tuning import read_trial_logs, trial_log_path, tune_hyperparameters
from tests.model_tables import simulated_master

SPACE = {"units": [8, 16, 32], "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "layers": [1]}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split():
    master, _ = simulated_master()
    return holdout_split(F.training_frame(master), 8)


def test_a_chief_and_two_workers_run_every_trial_once(split, tmp_path: Path):
    train, val = split
    r = tune_distributed(train, val, SPACE, 4, 240, 3, tmp_path, True, workers=2, epochs=2, patience=2)
    assert r.stopped_by == "max_trials" and len(r.trials) == 4
    ids = [t["trial_id"] for t in r.trials]
    assert len(set(ids)) == 4 and all(t["val_loss"] is not None for t in r.trials)
    # each trial in exactly one worker's log (which worker gets how many is a
    # race between the two processes' start-up, so it is not asserted)
    paths = sorted((tmp_path / "roi").glob("autoroi_trials*.json"))
    logs = {p: json.loads(p.read_text()) for p in paths}
    assert 1 <= len(logs) <= 2
    ran = [tid for doc in logs.values() for tid in doc]
    assert sorted(ran) == sorted(ids)
    assert {t["tuner"] for t in r.trials} <= {"tuner0", "tuner1"}
    for path, doc in logs.items():  # each worker writes its own file only
        assert {trial_log_path(tmp_path / "roi", rec["tuner"]) for rec in doc.values()} == {path}
    assert read_trial_logs(tmp_path / "roi").keys() == set(ids)
    # the best trial is the oracle's own
    oracle = kt.oracles.BayesianOptimizationOracle(objective=kt.Objective("val_loss", "min"), max_trials=4)
    oracle._set_project_dir(str(tmp_path), "roi")
    oracle.reload()
    best = oracle.get_best_trials(1)[0]
    chosen = min(r.trials, key=lambda t: t["val_loss"])
    assert chosen["trial_id"] == best.trial_id and r.best_score == pytest.approx(best.score)
    assert r.best_hyperparameters["units"] == best.hyperparameters.values["units"]
    # the inputs handed to the processes are gone; their logs stay
    assert not list((tmp_path / INPUTS_DIR).glob("*.parquet"))
    assert (tmp_path / INPUTS_DIR / "chief.log").exists()


def test_a_trial_scores_the_same_whichever_process_runs_it(split, tmp_path: Path):
    """Seeds are reset per trial: the in-process search's first (random)
    trials and the distributed one's have the same hyperparameters and loss."""
    train, val = split
    single = tune_hyperparameters(train, val, SPACE, 2, 240, 5, tmp_path / "s", overwrite=True, epochs=2)
    dist = tune_distributed(train, val, SPACE, 2, 240, 5, tmp_path / "d", True, workers=1, epochs=2)
    by_hp = {json.dumps(t["hyperparameters"], sort_keys=True): t["val_loss"] for t in single.trials}
    for t in dist.trials:
        key = json.dumps(t["hyperparameters"], sort_keys=True)
        assert key in by_hp and t["val_loss"] == pytest.approx(by_hp[key], rel=1e-4)


def test_bad_distributed_arguments_are_refused(split, tmp_path: Path):
    train, val = split
    with pytest.raises(ValueError, match="workers"):
        tune_distributed(train, val, SPACE, 2, 10, 0, tmp_path, True, workers=0)
    with pytest.raises(ValueError, match="spec"):
        tune_distributed(train, val, SPACE, 2, 10, 0, tmp_path, True, workers=1, spec=F.DEFAULT_SPEC)
    with pytest.raises(ValueError, match="tune_worker"):
        tune_hyperparameters(train, val, SPACE, 2, 10, 0, tmp_path, overwrite=True, role="worker")
