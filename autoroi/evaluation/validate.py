"""``validate_model``: the backtest of the candidate, the baselines and the
production model on the same folds, and the gate decision (what the
``validate`` step of the ``train`` pipeline runs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autoroi.config import TrainingConfig
from autoroi.evaluation.backtest import BacktestResult, backtest, fixed_model_trainer, network_trainer
from autoroi.evaluation.baselines import BASELINES, Trainer, UnitsModel, baseline_trainers
from autoroi.evaluation.folds import rolling_origin_folds
from autoroi.evaluation.gates import GateDecision, decide_gates
from autoroi.model import features as F

CANDIDATE = "candidate"
PRODUCTION = "production"


@dataclass
class Validation:
    backtest: BacktestResult
    decision: GateDecision

    def to_dict(self) -> dict[str, Any]:
        return {**self.backtest.to_dict(), "gates": self.decision.to_dict()}


def validate_model(
    master: pd.DataFrame,
    hyperparameters: Mapping[str, Any],
    epochs: int,
    cfg: TrainingConfig,
    *,
    truth: pd.DataFrame | None = None,
    production: UnitsModel | None = None,
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
) -> Validation:
    """Rolling-origin backtest (``cfg.folds`` folds of ``cfg.fold_weeks`` weeks
    after at least ``cfg.min_train_weeks``) of the network with
    ``hyperparameters`` trained for ``epochs`` per fold, every baseline, and the
    production model (as it is, see ``fixed_model_trainer``); then the gates of
    ``cfg.gates``. ROI metrics need ``truth``."""
    folds = rolling_origin_folds(master[F.WEEK], cfg.folds, cfg.fold_weeks, cfg.min_train_weeks)
    trainers: dict[str, Trainer] = {
        CANDIDATE: network_trainer(hyperparameters, epochs=epochs, seed=cfg.seed, spec=spec),
        **baseline_trainers(cfg.seed, spec, cfg.gbm_iterations),
    }
    if production is not None:
        trainers[PRODUCTION] = fixed_model_trainer(production)
    result = backtest(master, folds, trainers, truth=truth, spec=spec)
    decision = decide_gates(
        result.metrics[CANDIDATE],
        {b: result.metrics[b] for b in BASELINES},
        result.metrics.get(PRODUCTION),
        cfg.gates,
    )
    return Validation(result, decision)
