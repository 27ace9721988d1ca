"""Fitting the units model: on feature rows (backtest, tuning) and from a master
table to a servable :class:`~autoroi.model.artifact.RoiModel` (final fit)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.artifact import RoiModel, predict_rates
from autoroi.model.network import build_network, decay_steps_for, hyperparameters
from autoroi.model.preprocess import Preprocessor

log = logging.getLogger(__name__)


class DeadlineCallback(keras.callbacks.Callback):
    """Stops training at a wall-clock deadline (``time.monotonic()`` seconds),
    checked after every batch; ``hit`` says whether it did."""

    def __init__(self, deadline: float | None):
        super().__init__()
        self.deadline = deadline
        self.hit = False

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.hit = True
            self.model.stop_training = True


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(int(seed))


def init_log_rate(frame: pd.DataFrame) -> float:
    return math.log(max(float(frame[F.UNITS].mean()), 1e-3))


@dataclass
class FittedNetwork:
    """A network with its preprocessing, as fitted on feature rows."""

    network: keras.Model
    preprocessor: Preprocessor
    hyperparameters: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by_deadline: bool = False

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_rates(self.network, self.preprocessor.transform(frame))

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def fit_units_model(
    train: pd.DataFrame,
    hp: Mapping[str, Any] | None = None,
    *,
    epochs: int,
    seed: int,
    val: pd.DataFrame | None = None,
    patience: int = 3,
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
    deadline: float | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
    sample_weight: np.ndarray | None = None,
    preprocessor: Preprocessor | None = None,
) -> FittedNetwork:
    """Fit on feature rows (``features.training_frame``). With ``val``, early
    stopping on the validation loss restores the best epoch's weights;
    ``sample_weight`` weighs the rows' loss (an ensemble member's bootstrap);
    ``preprocessor`` reuses one fitted before (the members share theirs)."""
    p = hyperparameters(hp)
    seed_everything(seed)
    prep = preprocessor or Preprocessor.fit(train, spec)
    net = build_network(
        prep.vocab_sizes,
        prep.n_numeric,
        prep.n_treatments,
        p,
        init_log_rate=init_log_rate(train),
        decay_steps=decay_steps_for(len(train), p["batch_size"], epochs),
        n_dip=prep.n_ended,
    )
    stop = DeadlineCallback(deadline)
    cbs: list[keras.callbacks.Callback] = [stop, *callbacks]
    val_data = None
    if val is not None and len(val):
        val_data = (prep.transform(val), val[F.UNITS].to_numpy(np.float32))
        cbs.append(keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    t0 = time.monotonic()
    hist = net.fit(
        prep.transform(train),
        train[F.UNITS].to_numpy(np.float32),
        sample_weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32),
        batch_size=p["batch_size"],
        epochs=epochs,
        validation_data=val_data,
        shuffle=True,
        callbacks=cbs,
        verbose=verbose,
    )
    return FittedNetwork(
        network=net,
        preprocessor=prep,
        hyperparameters=p,
        history={k: [float(x) for x in v] for k, v in hist.history.items()},
        seconds=time.monotonic() - t0,
        stopped_by_deadline=stop.hit,
    )


def cell_bootstrap_weights(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Bayesian-bootstrap row weights: one Exp(1) draw per cell (region x
    vehicle model), shared by its weeks, normalized to mean 1. Why cells: a
    cell's weeks are one correlated series, so resampling weeks would
    understate how much the fit depends on which cells it saw; why Bayesian
    (continuous weights, none zero): every cell keeps some say, so no member
    meets a cell it never saw."""
    keys = pd.MultiIndex.from_frame(frame[[F.REGION, F.VEHICLE_MODEL]].astype(str))
    codes, uniques = pd.factorize(keys)
    w = np.random.default_rng(seed).exponential(1.0, len(uniques))[codes]
    return w / w.mean()


def train_model(
    master: pd.DataFrame,
    hp: Mapping[str, Any] | None = None,
    *,
    epochs: int,
    seed: int,
    version: str | None = None,
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
    metadata: Mapping[str, Any] | None = None,
    verbose: int = 0,
    members: int = 1,
) -> RoiModel:
    """Final fit on every row of ``master`` for a fixed number of epochs (the
    tuned ones), with the context table and take rates serving needs.

    ``members > 1`` fits a deep ensemble: that many networks, each with its
    own seed on its own Bayesian-bootstrap reweighting of the cells
    (:func:`cell_bootstrap_weights`), saved as one network whose output is
    every member's units. The served ROI is that of their mean units; its
    interval comes from their spread (``roi.roi_interval``)."""
    from autoroi.model.network import build_ensemble

    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    frame = F.training_frame(master, spec)
    fits: list[FittedNetwork] = []
    prep = None
    for k in range(members):
        weights = None if members == 1 else cell_bootstrap_weights(frame, seed * 1000 + k)
        fitted = fit_units_model(
            frame,
            hp,
            epochs=epochs,
            seed=seed + k,
            spec=spec,
            verbose=verbose,
            sample_weight=weights,
            preprocessor=prep,
        )
        prep = fitted.preprocessor
        fits.append(fitted)
        log.info(
            "fitted member %d/%d: %d rows in %.1f s (%d epochs)",
            k + 1,
            members,
            len(frame),
            fitted.seconds,
            fitted.epochs_run,
        )
    network = build_ensemble([f.network for f in fits])
    mean_units = lambda f: predict_rates(network, fits[0].preprocessor.transform(f))  # noqa: E731
    pred, base = F.counterfactual_units(mean_units, frame)
    return RoiModel(
        network=network,
        preprocessor=fits[0].preprocessor,
        context=F.build_context(master, spec),
        take_rates=F.estimate_take_rates(frame),
        uptake=F.estimate_uptake(frame, pred, base),
        pull_forward=F.estimate_pull_forward(mean_units, frame, spec),
        hyperparameters=fits[0].hyperparameters,
        version=version,
        metadata={
            "epochs": epochs,
            "seed": seed,
            "rows": len(frame),
            "members": members,
            "fit_seconds": round(sum(f.seconds for f in fits), 2),
            "incentive_types_seen": [t for t in spec.treatments if frame[F.TREAT[t]].sum() > 0],
            "weeks": [str(frame[F.WEEK].min().date()), str(frame[F.WEEK].max().date())],
            **dict(metadata or {}),
        },
    )
