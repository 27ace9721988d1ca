import logging
import time
from pathlib import Path

import pytest

from autoroi.evaluation.folds import holdout_split
from autoroi.model import features as F
from autoroi.model.tuning import initial_points_for, tune_hyperparameters
from tests.model_tables import simulated_master

SPACE = {"units": [8, 16], "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "layers": [1]}


@pytest.fixture(scope="module")
def split():
    master, _ = simulated_master()
    return holdout_split(F.training_frame(master), 8)


def test_max_trials_then_resume_is_explicit(split, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    train, val = split
    r = tune_hyperparameters(train, val, SPACE, 2, 120, 3, tmp_path, overwrite=True, epochs=2)
    assert len(r.trials) == 2 and r.stopped_by == "max_trials" and not r.resumed
    assert r.best_hyperparameters["units"] in (8, 16) and r.best_hyperparameters["layers"] == 1
    assert 1 <= r.best_epochs <= 2 and all(t["val_loss"] is not None for t in r.trials)
    assert all(t["epochs_run"] in (1, 2) and t["seconds"] > 0 for t in r.trials)
    # same directory, overwrite=False: nothing is searched again, and it says so
    with caplog.at_level(logging.INFO, logger="autoroi.model.tuning"):
        again = tune_hyperparameters(train, val, SPACE, 2, 120, 3, tmp_path, overwrite=False, epochs=2)
    assert again.resumed and again.stopped_by == "already_complete" and len(again.trials) == 2
    assert "already holds 2 trials" in caplog.text
    assert again.best_hyperparameters == r.best_hyperparameters
    # a different search in the same project is refused, not mixed in
    with pytest.raises(ValueError, match="overwrite=True"):
        tune_hyperparameters(train, val, {"units": [4]}, 2, 120, 3, tmp_path, overwrite=False, epochs=2)
    # overwrite=True starts over
    fresh = tune_hyperparameters(train, val, SPACE, 1, 120, 3, tmp_path, overwrite=True, epochs=1)
    assert not fresh.resumed and len(fresh.trials) == 1


def test_wall_clock_budget_stops_the_search(split, tmp_path: Path):
    train, val = split
    t0 = time.monotonic()
    r = tune_hyperparameters(
        train, val, SPACE, 50, 2.0, 3, tmp_path, overwrite=True, epochs=500, patience=500
    )
    elapsed = time.monotonic() - t0
    assert r.stopped_by == "time_budget"
    assert len(r.trials) < 50
    assert elapsed < 2.0 + 8.0  # the budget, plus set-up and the last trial's validation pass
    assert r.trials[0]["epochs_run"] < 500


def test_bad_arguments(split, tmp_path: Path):
    train, val = split
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        tune_hyperparameters(train, val, {"wisdom": [1]}, 1, 10, 0, tmp_path, overwrite=True)
    with pytest.raises(ValueError):
        tune_hyperparameters(train, val, SPACE, 0, 10, 0, tmp_path, overwrite=True)


def test_the_gaussian_process_gets_trials_to_propose():
    # Keras Tuner would make 3 x 7 = 21 trials random: all of a 6-trial search
    assert [initial_points_for(n) for n in (1, 2, 6, 10, 30)] == [2, 2, 2, 4, 10]
