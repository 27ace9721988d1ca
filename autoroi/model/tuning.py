"""Hyperparameter search with Keras Tuner, bounded by trials and wall-clock time.

**Bayesian optimization, not Hyperband.** The demo's budget is a handful of
trials on two cores. Bayesian optimization (a Gaussian process over the
hyperparameters) chooses each next trial from all previous results, so few
trials go far, and it obeys ``max_trials`` exactly. The first third of the
trials (at least 2) are random, the rest proposed by the Gaussian process
(:func:`initial_points_for`; Keras Tuner's own default, three random trials
per dimension, would make all of a 6-trial search random). Hyperband wins when many
cheap, partially trained trials fit in the budget: its bracket sizes follow
from ``max_epochs`` and ``factor``, not from a trial count, and with a budget of
6-10 trials its first bracket alone would use it up on models trained for one
or two epochs. Each trial here trains with early stopping anyway, which cuts
bad trials short as Hyperband would.

Budgets. ``max_trials`` is the oracle's trial limit. ``max_seconds`` is a
wall-clock deadline for the whole search: a Keras callback stops the running
trial after the batch in which time is up (the trial keeps the epochs it
completed, and its partial last epoch), and the oracle starts no trial after
the deadline. Seeds: the oracle's, and Keras' global seed before each trial's
model is built, so the same inputs give the same search.

Resuming. The tuner's project folder (``directory/project_name``) is the
record of the search. ``overwrite=True`` deletes it and searches from scratch.
``overwrite=False`` on an existing project *resumes* it: completed trials are
kept, and only the remaining ones run; if it already holds ``max_trials`` trials
nothing is searched and the stored results are returned. Either way it is
logged and reported (``TuningResult.resumed``, ``stopped_by``), never silent.
A project searched with a different space, seed, epochs or data is refused
(``ValueError``) rather than mixed with the new search.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd

from autoroi.lake.storage import write_json_local
from autoroi.model import features as F
from autoroi.model.network import DEFAULT_HYPERPARAMETERS, build_network, decay_steps_for, hyperparameters
from autoroi.model.preprocess import Preprocessor
from autoroi.model.train import DeadlineCallback, init_log_rate, seed_everything

log = logging.getLogger(__name__)

OBJECTIVE = "val_loss"
FINGERPRINT_FILE = "autoroi_search.json"
TRIAL_LOG_FILE = "autoroi_trials.json"
INT_PARAMS = frozenset({"layers", "units", "embedding_dim", "lift_units", "batch_size"})


@dataclass
class TuningResult:
    best_hyperparameters: dict[str, Any]
    best_epochs: int  # epochs of the best trial's best validation loss
    best_score: float  # its validation Poisson loss
    trials: list[dict[str, Any]]
    resumed: bool
    stopped_by: str  # "max_trials", "time_budget" or "already_complete"
    seconds: float
    directory: str
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_plain(spec: Any) -> Any:
    if hasattr(spec, "model_dump"):
        return spec.model_dump()
    if isinstance(spec, Mapping):
        return dict(spec)
    return list(spec)


def initial_points_for(max_trials: int) -> int:
    """Random trials before the Gaussian process proposes the next ones: a
    third of the trials, at least 2. (Keras Tuner's default is three per
    search dimension, 21 for the default space: more than the whole budget,
    so every trial would be random.)"""
    return max(2, math.ceil(max_trials / 3))


def declare(hp: kt.HyperParameters, name: str, spec: Any) -> Any:
    """One search dimension: a list is a ``Choice`` (ordered), a mapping with
    ``min``/``max`` (and ``sampling``, ``step``) an ``Int`` or ``Float`` range."""
    spec = _as_plain(spec)
    if isinstance(spec, list):
        values: list[Any] = [int(v) if name in INT_PARAMS else float(v) for v in spec]
        return hp.Choice(name, values, ordered=True)
    lo, hi = spec["min"], spec["max"]
    sampling = spec.get("sampling") or "linear"
    step = spec.get("step")
    if name in INT_PARAMS:
        return hp.Int(name, int(lo), int(hi), step=int(step or 1), sampling=sampling)
    return hp.Float(name, float(lo), float(hi), step=step, sampling=sampling)


class _UnitsHyperModel(kt.HyperModel):
    """Each trial's network, its learning rate decaying over the trial's
    ``epochs`` (as the backtest and the final fit decay it over theirs)."""

    def __init__(
        self, prep: Preprocessor, space: Mapping[str, Any], log_rate: float, seed: int, rows: int, epochs: int
    ):
        super().__init__(name="roi_units")
        self.prep = prep
        self.space = dict(space)
        self.log_rate = log_rate
        self.seed = seed
        self.rows = rows
        self.epochs = epochs

    def values(self, hp: kt.HyperParameters) -> dict[str, Any]:
        return hyperparameters({name: declare(hp, name, s) for name, s in self.space.items()})

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        seed_everything(self.seed)
        p = self.values(hp)
        return build_network(
            self.prep.vocab_sizes,
            self.prep.n_numeric,
            self.prep.n_treatments,
            p,
            init_log_rate=self.log_rate,
            decay_steps=decay_steps_for(self.rows, p["batch_size"], self.epochs),
            n_dip=self.prep.n_ended,
        )

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, batch_size=self.values(hp)["batch_size"], **kwargs)


class _DeadlineOracle(kt.oracles.BayesianOptimizationOracle):
    """Starts no trial once the search's deadline has passed."""

    deadline: float | None = None
    deadline_hit: bool = False

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline_hit = True
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        out: dict[str, Any] = super().populate_space(trial_id)
        return out


class _SharedDeadline(DeadlineCallback):
    """Keras Tuner deep-copies callbacks for every trial; this one is shared so
    that ``hit`` is seen after the search."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedDeadline:
        return self


def trial_log_path(project: Path, tuner_id: str) -> Path:
    """One trial log per tuner process: workers of a distributed search share
    the project folder, so one file would be written by several at once."""
    return project / (TRIAL_LOG_FILE if tuner_id == "tuner0" else f"autoroi_trials.{tuner_id}.json")


def read_trial_logs(project: Path) -> dict[str, dict[str, Any]]:
    """Every tuner's trial records, ``{trial_id: {..., "tuner": id}}``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(project.glob("autoroi_trials*.json")):
        out.update(json.loads(path.read_text()))
    return out


class _Tuner(kt.Tuner):
    """Records each trial's epochs run, seconds and tuner in its trial log
    (the oracle keeps only the best epoch's metrics)."""

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        histories = super().run_trial(trial, *args, **kwargs)
        path = trial_log_path(Path(self.project_dir), self.tuner_id)
        record = json.loads(path.read_text()) if path.exists() else {}
        record[trial.trial_id] = {
            "epochs_run": max((len(h.history.get("loss", [])) for h in histories), default=0),
            "seconds": round(time.monotonic() - t0, 3),
            "tuner": self.tuner_id,
        }
        write_json_local(path, record)
        return histories

    def _configure_tensorboard_dir(self, callbacks: list[Any], trial: Any, execution: int = 0) -> None:
        # Keras Tuner 1.4.8 imports tensorboard here on the TensorFlow backend
        # even without a TensorBoard callback; this search passes none, and
        # tensorboard is not a dependency.
        if any(type(c).__name__ == "TensorBoard" for c in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


def _fingerprint(
    train: pd.DataFrame, val: pd.DataFrame, space: Mapping[str, Any], seed: int, epochs: int, patience: int
) -> dict[str, Any]:
    h = hashlib.sha256()
    for frame in (train, val):
        cols = [F.REGION, F.VEHICLE_MODEL, F.WEEK, F.UNITS]
        h.update(pd.util.hash_pandas_object(frame[cols], index=False).to_numpy().tobytes())
    return {
        "space": {k: _as_plain(v) for k, v in sorted(space.items())},
        "seed": seed,
        "epochs": epochs,
        "patience": patience,
        "data": h.hexdigest()[:16],
    }


def _trial_summaries(oracle: kt.Oracle, project: Path) -> list[dict[str, Any]]:
    record = read_trial_logs(project)
    out = []
    for tid in sorted(oracle.trials):
        t = oracle.trials[tid]
        score = float(t.score) if t.score is not None and math.isfinite(t.score) else None
        best = int(t.best_step) + 1 if t.best_step is not None and score is not None else None
        out.append(
            {
                "trial_id": tid,
                "status": str(t.status),
                "hyperparameters": dict(t.hyperparameters.values),
                "val_loss": score,
                "best_epochs": best,
                "epochs_run": record.get(tid, {}).get("epochs_run"),
                "seconds": record.get(tid, {}).get("seconds"),
                "tuner": record.get(tid, {}).get("tuner"),
            }
        )
    return out


def _check_search(space: Mapping[str, Any], max_trials: int, max_seconds: float) -> None:
    if max_trials < 1 or max_seconds <= 0:
        raise ValueError("max_trials must be >= 1 and max_seconds > 0")
    unknown = set(space) - set(DEFAULT_HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"unknown hyperparameters in the search space: {sorted(unknown)}")


def _searcher(
    train: pd.DataFrame,
    space: Mapping[str, Any],
    max_trials: int,
    seed: int,
    directory: str | Path,
    overwrite: bool,
    epochs: int,
    project_name: str,
    spec: F.FeatureSpec,
    initial_points: int | None,
) -> tuple[Preprocessor, _DeadlineOracle, _Tuner]:
    """The preprocessor, oracle and tuner of a search (in a distributed
    search, Keras Tuner swaps a worker's oracle for a client of the chief's)."""
    seed_everything(seed)
    prep = Preprocessor.fit(train, spec)
    oracle = _DeadlineOracle(
        objective=kt.Objective(OBJECTIVE, "min"),
        max_trials=max_trials,
        num_initial_points=initial_points or initial_points_for(max_trials),
        seed=seed,
        max_consecutive_failed_trials=3,
    )
    tuner = _Tuner(
        oracle=oracle,
        hypermodel=_UnitsHyperModel(prep, space, init_log_rate(train), seed, len(train), epochs),
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
    )
    return prep, oracle, tuner


def _search(
    tuner: _Tuner,
    prep: Preprocessor,
    train: pd.DataFrame,
    val: pd.DataFrame,
    epochs: int,
    patience: int,
    stop: _SharedDeadline,
) -> None:
    tuner.search(
        prep.transform(train),
        train[F.UNITS].to_numpy(np.float32),
        validation_data=(prep.transform(val), val[F.UNITS].to_numpy(np.float32)),
        epochs=epochs,
        shuffle=True,
        callbacks=[keras.callbacks.EarlyStopping(monitor=OBJECTIVE, patience=patience), stop],
        verbose=0,
    )


def tune_worker(
    train: pd.DataFrame,
    val: pd.DataFrame,
    space: Mapping[str, Any],
    max_trials: int,
    max_seconds: float,
    seed: int,
    directory: str | Path,
    *,
    epochs: int = 20,
    patience: int = 3,
    project_name: str = "roi",
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
    initial_points: int | None = None,
) -> None:
    """One worker of a distributed search (``autoroi.model.distributed``, Keras
    Tuner's ``KERASTUNER_*`` variables set by the launcher): runs the trials
    the chief's oracle hands out, until it says stop. It never overwrites the
    project, which is the chief's."""
    _check_search(space, max_trials, max_seconds)
    deadline = time.monotonic() + max_seconds
    prep, _, tuner = _searcher(
        train, space, max_trials, seed, directory, False, epochs, project_name, spec, initial_points
    )
    _search(tuner, prep, train, val, epochs, patience, _SharedDeadline(deadline))


def tune_hyperparameters(
    train: pd.DataFrame,
    val: pd.DataFrame,
    space: Mapping[str, Any],
    max_trials: int,
    max_seconds: float,
    seed: int,
    directory: str | Path,
    overwrite: bool,
    *,
    epochs: int = 20,
    patience: int = 3,
    project_name: str = "roi",
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
    initial_points: int | None = None,
    role: str = "single",
) -> TuningResult:
    """Search ``space`` (name -> list of choices or range; hyperparameters not
    in it keep ``network.DEFAULT_HYPERPARAMETERS``) on feature rows ``train``,
    scored by the Poisson loss on ``val`` (``features.training_frame`` rows,
    split by ``evaluation.folds.holdout_split``).

    ``role``: ``single`` searches in this process; ``chief`` serves the oracle
    of a distributed search (Keras Tuner's ``KERASTUNER_*`` variables set by
    the launcher, ``autoroi.model.distributed``) and returns its result once
    the workers are done. A worker runs :func:`tune_worker`."""
    if role not in ("single", "chief"):
        raise ValueError(f"role must be single or chief, not {role!r}: a worker runs tune_worker")
    _check_search(space, max_trials, max_seconds)
    t0 = time.monotonic()
    notes: list[str] = []

    def note(msg: str, *args: Any) -> None:
        log.info(msg, *args)
        notes.append(msg % args)

    project = Path(directory) / project_name
    fp = _fingerprint(train, val, space, seed, epochs, patience)
    fp_path = project / FINGERPRINT_FILE
    existing = (project / "oracle.json").exists()
    resumed = existing and not overwrite
    if resumed:
        old = json.loads(fp_path.read_text()) if fp_path.exists() else None
        if old != fp:
            raise ValueError(
                f"tuner project {project} holds a different search (space, seed, epochs or data);"
                " pass overwrite=True to replace it"
            )
    elif existing:
        note("overwrite: deleting the previous tuner project %s", project)

    prep, oracle, tuner = _searcher(
        train, space, max_trials, seed, directory, overwrite, epochs, project_name, spec, initial_points
    )
    project.mkdir(parents=True, exist_ok=True)
    fp_path.write_text(json.dumps(fp, indent=2, sort_keys=True, default=str))
    done = len(oracle.trials)
    if resumed:
        if done >= max_trials:
            note(
                "tuner project %s already holds %d trials (max_trials %d): the search is complete;"
                " reusing its results (overwrite=True searches again)",
                project,
                done,
                max_trials,
            )
        else:
            note("resuming tuner project %s: %d trials done, up to %d more", project, done, max_trials - done)
    else:
        note("new search in %s: up to %d trials, %.0f s", project, max_trials, max_seconds)

    deadline = t0 + max_seconds
    oracle.deadline = deadline
    stop = _SharedDeadline(deadline)
    if done < max_trials:
        _search(tuner, prep, train, val, epochs, patience, stop)
    trials = _trial_summaries(oracle, project)
    scored = [t for t in trials if t["val_loss"] is not None]
    if not scored:
        raise RuntimeError(f"no tuning trial finished within {max_seconds:g} s and {max_trials} trials")
    best = min(scored, key=lambda t: t["val_loss"])
    if done >= max_trials and resumed:
        stopped_by = "already_complete"
    elif oracle.deadline_hit or stop.hit:
        stopped_by = "time_budget"
        note("time budget of %.0f s reached after %d trials", max_seconds, len(trials))
    else:
        stopped_by = "max_trials"
    seconds = time.monotonic() - t0
    note(
        "best trial %s: val_loss %.5f after %d epochs",
        best["trial_id"],
        best["val_loss"],
        best["best_epochs"],
    )
    return TuningResult(
        best_hyperparameters=hyperparameters(best["hyperparameters"]),
        best_epochs=int(best["best_epochs"]),
        best_score=float(best["val_loss"]),
        trials=trials,
        resumed=resumed,
        stopped_by=stopped_by,
        seconds=seconds,
        directory=str(project),
        log=notes,
    )
