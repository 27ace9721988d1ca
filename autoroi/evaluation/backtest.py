"""Rolling-origin backtest of units and of ROI, for the candidate and the
baselines on the same folds.

Units: every master row of a fold's test weeks is predicted as the scenario that
happened (its dominant incentive and amount) and compared with its actual units
(WAPE, MAE, RMSE), pooled over the folds.

ROI (when a ground truth is given, as the simulator writes it): each truth row
(program x region x vehicle model x week) in a test week becomes the scenario
``{region, vehicle_model, week_start, incentive_type, incentive_amount}`` of
that program; the model predicts units with it and without any incentive, and
``roi_frame`` turns them into ROI with the take rates measured in the fold's
training rows. Predicted ROI is compared with the true ROI (MAE, Spearman rank
correlation, sign agreement). Known differences from the truth's definition:
the truth's baseline keeps other overlapping programs, and its incremental
units are net of the pull-forward from later weeks, which a one-week scenario
cannot see.

Oracle: the truth's expected units (``units_with``, one per cell-week) against
actual units on the program cell-weeks of the test folds: the noise floor of
units WAPE. Every model's WAPE on the same rows is ``wape_truth_cells``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from autoroi.evaluation.baselines import Trainer, UnitsModel
from autoroi.evaluation.folds import Fold
from autoroi.evaluation.metrics import lift_calibration, program_steps, roi_metrics, units_metrics
from autoroi.model import features as F
from autoroi.model.features import counterfactual_units
from autoroi.model.roi import score_features

log = logging.getLogger(__name__)

PredictFn = Callable[[pd.DataFrame], np.ndarray]
TRUTH_ROI = "true_roi"


def truth_scenarios(truth: pd.DataFrame, context: pd.DataFrame) -> pd.DataFrame:
    """Truth rows whose cell the master has at the finest level, as scenarios
    (with ``true_roi`` and the truth's columns kept)."""
    t = truth.copy()
    t[F.WEEK] = F.to_week(t[F.WEEK]).to_numpy()
    cells = context.loc[
        context[F.CELL_LEVEL] == F.FINEST_LEVEL, [F.REGION, F.VEHICLE_MODEL]
    ].drop_duplicates()
    t = t.merge(cells, on=[F.REGION, F.VEHICLE_MODEL], how="inner")
    t = t.rename(columns={"roi": TRUTH_ROI})
    keep = [*F.SCENARIO_FIELDS, TRUTH_ROI]
    extra = [c for c in ("program_id", "units_with", "units_without", "incremental_units") if c in t.columns]
    out = t[keep + extra].rename(columns={c: f"true_{c}" for c in extra if c != "program_id"})
    return out.reset_index(drop=True)


@dataclass
class RoiEvaluation:
    metrics: dict[str, float]
    rows: pd.DataFrame  # one per truth row: scenario, true and predicted ROI and units


def evaluate_roi(
    predict_fn: PredictFn,
    master: pd.DataFrame | None,
    truth: pd.DataFrame,
    *,
    take_rates: Mapping[str, float] | None = None,
    uptake: Mapping[str, float] | None = None,
    context: pd.DataFrame | None = None,
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
    pull_forward: Mapping[str, float] | None = None,
) -> RoiEvaluation:
    """Predicted against true ROI on the truth rows (see the module docstring).
    ``context`` (``features.build_context(master)``) may be passed instead of
    ``master`` to build it once; ``take_rates`` default to those of ``master``;
    with ``uptake`` the cost follows each scenario's lift (``roi.roi_columns``)."""
    if context is None:
        if master is None:
            raise ValueError("evaluate_roi needs master or context")
        context = F.build_context(master, spec)
    if take_rates is None:
        take_rates = F.estimate_take_rates(F.training_frame(master, spec)) if master is not None else {}
    scen = truth_scenarios(truth, context)
    if scen.empty:
        return RoiEvaluation(roi_metrics([], []), scen)
    feats = F.scenario_features(scen, context, spec)
    roi = score_features(predict_fn, feats, take_rates, uptake, pull_forward)
    rows = pd.concat(
        [feats[[*F.SCENARIO_FIELDS, F.SEGMENT, F.INCENTIVE_DEPTH, TRUTH_ROI]].reset_index(drop=True), roi],
        axis=1,
    )
    for c in ("true_units_with", "true_units_without", "true_incremental_units"):
        if c in feats.columns:
            rows[c] = feats[c].to_numpy()
    return RoiEvaluation(roi_metrics(rows[TRUTH_ROI], rows["roi"]), rows)


def oracle_units(truth: pd.DataFrame) -> pd.DataFrame:
    """The truth's expected units per (region, vehicle model, week)."""
    t = truth[[F.REGION, F.VEHICLE_MODEL, F.WEEK, "units_with"]].copy()
    t[F.WEEK] = F.to_week(t[F.WEEK]).to_numpy()
    return t.drop_duplicates([F.REGION, F.VEHICLE_MODEL, F.WEEK]).rename(
        columns={"units_with": "oracle_units"}
    )


@dataclass
class BacktestResult:
    folds: list[Fold]
    metrics: dict[str, dict[str, float]]  # model -> pooled metrics over the folds
    fold_metrics: list[dict[str, Any]]  # one per (fold, model)
    predictions: pd.DataFrame  # test rows: fold, cell, week, actual, one column per model
    roi: pd.DataFrame  # truth rows with predicted ROI per model (long: a "model" column)
    oracle: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def clean(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

        return {
            "folds": [f.to_dict() for f in self.folds],
            "metrics": {m: clean(v) for m, v in self.metrics.items()},
            "fold_metrics": [clean(r) for r in self.fold_metrics],
            "oracle": clean(self.oracle),
            "seconds": self.seconds,
        }


def backtest(
    master: pd.DataFrame,
    folds: Sequence[Fold],
    trainers: Mapping[str, Trainer],
    *,
    truth: pd.DataFrame | None = None,
    spec: F.FeatureSpec = F.DEFAULT_SPEC,
) -> BacktestResult:
    """Fit every trainer on each fold's training rows, predict its test rows
    (and the truth rows of its test weeks), and pool the metrics."""
    frame = F.training_frame(master, spec)
    context = F.build_context(master, spec)
    oracle = oracle_units(truth) if truth is not None else None
    pred_parts, roi_parts, fold_rows = [], [], []
    seconds: dict[str, float] = dict.fromkeys(trainers, 0.0)
    for fold in folds:
        train, test = fold.split(frame)
        if train.empty or test.empty:
            raise ValueError(f"fold {fold.index} has no training or no test rows")
        rates = F.estimate_take_rates(train)
        part = test[
            [F.REGION, F.VEHICLE_MODEL, F.SEGMENT, F.CELL_LEVEL, F.WEEK, F.INCENTIVE_TYPE, F.UNITS]
        ].copy()
        part.insert(0, "fold", fold.index)
        fold_truth = None
        if truth is not None:
            tw = F.to_week(truth[F.WEEK]).to_numpy()
            in_fold = (tw >= fold.test_start.to_datetime64()) & (tw <= fold.test_end.to_datetime64())
            fold_truth = truth[in_fold]
        for name, trainer in trainers.items():
            t0 = time.monotonic()
            model: UnitsModel = trainer(train)
            part[name] = model.predict_features(test)
            part[name + BASELINE_SUFFIX] = model.predict_features(F.without_incentive(test))
            row: dict[str, Any] = {
                "fold": fold.index,
                "model": name,
                **units_metrics(test[F.UNITS], part[name]),
            }
            if fold_truth is not None and len(fold_truth):
                uptake = F.estimate_uptake(train, *counterfactual_units(model.predict_features, train))
                ev = evaluate_roi(
                    model.predict_features,
                    None,
                    fold_truth,
                    take_rates=rates,
                    uptake=uptake,
                    context=context,
                    spec=spec,
                    pull_forward=F.estimate_pull_forward(model.predict_features, train, spec),
                )
                row.update(ev.metrics)
                roi_parts.append(ev.rows.assign(fold=fold.index, model=name))
            seconds[name] += time.monotonic() - t0
            fold_rows.append(row)
            log.info("fold %d %s: wape %.3f", fold.index, name, row["wape"])
        pred_parts.append(part)
    predictions = pd.concat(pred_parts, ignore_index=True)
    roi_rows = pd.concat(roi_parts, ignore_index=True) if roi_parts else pd.DataFrame()
    metrics: dict[str, dict[str, float]] = {}
    oracle_metrics: dict[str, float] = {}
    if oracle is not None:
        joined = predictions.merge(oracle, on=[F.REGION, F.VEHICLE_MODEL, F.WEEK], how="inner")
        if len(joined):
            oracle_metrics = {
                "wape": units_metrics(joined[F.UNITS], joined["oracle_units"])["wape"],
                "rows": float(len(joined)),
            }
    for name in trainers:
        m = units_metrics(predictions[F.UNITS], predictions[name])
        # truth-free: the weeks where programs start or end, within each fold's test weeks
        m.update(program_steps_pooled(predictions, name))
        m.update(lift_ratios(predictions, name))
        if not roi_rows.empty:
            r = roi_rows[roi_rows["model"] == name]
            m.update(roi_metrics(r[TRUTH_ROI], r["roi"]))
        if oracle is not None and oracle_metrics:
            m["wape_truth_cells"] = units_metrics(joined[F.UNITS], joined[name])["wape"]
        metrics[name] = m
    return BacktestResult(list(folds), metrics, fold_rows, predictions, roi_rows, oracle_metrics, seconds)


BASELINE_SUFFIX = "_baseline"  # a model's units of the same test rows without any incentive


def lift_ratios(predictions: pd.DataFrame, name: str) -> dict[str, float]:
    """``lift_ratio`` (every treated test row) and ``lift_ratio_<type>`` (the
    rows a type dominated), each against the untreated rows' level: the
    monitor reads a deployed model's realized lifts against these."""
    kind = predictions[F.INCENTIVE_TYPE].astype(str)
    treated = kind != F.NO_INCENTIVE
    cols = (predictions[F.UNITS], predictions[name], predictions[name + BASELINE_SUFFIX])
    out = {"lift_ratio": lift_calibration(*cols, treated)["lift_ratio"]}
    for t in sorted(set(kind[treated])):
        part = predictions[(kind == t) | ~treated]
        ratio = lift_calibration(
            part[F.UNITS], part[name], part[name + BASELINE_SUFFIX], part[F.INCENTIVE_TYPE].astype(str) == t
        )["lift_ratio"]
        if math.isfinite(ratio):
            out[f"lift_ratio_{t}"] = ratio
    return out


def program_steps_pooled(predictions: pd.DataFrame, name: str) -> dict[str, float]:
    """``metrics.program_steps`` pooled over the folds (a pair never spans two)."""
    parts = [program_steps(part, name) for _, part in predictions.groupby("fold")]
    pred = sum(x["step_predicted"] for x in parts)
    actual = sum(x["step_actual"] for x in parts)
    return {
        "step_ratio": float(pred / actual) if actual > 0 else math.nan,
        "step_pairs": float(sum(x["step_pairs"] for x in parts)),
    }


def network_trainer(
    hp: Mapping[str, Any], *, epochs: int, seed: int, spec: F.FeatureSpec = F.DEFAULT_SPEC
) -> Trainer:
    """The candidate: the network with fixed hyperparameters and epochs."""

    def fit(train: pd.DataFrame) -> UnitsModel:
        from autoroi.model.train import fit_units_model  # TensorFlow only when needed

        return fit_units_model(train, hp, epochs=epochs, seed=seed, spec=spec)

    return fit


def fixed_model_trainer(model: UnitsModel) -> Trainer:
    """An already trained model (the production one), not refitted per fold.
    Its training data may overlap the test weeks, which flatters it: a gate
    against it is conservative."""
    return lambda train: model


def summary_table(result: BacktestResult) -> pd.DataFrame:
    """Models as rows, the headline metrics as columns (and the oracle)."""
    cols = [
        "wape",
        "mae",
        "rmse",
        "roi_mae",
        "roi_bias",
        "roi_spearman",
        "roi_balanced_accuracy",
        "roi_auc",
        "wape_truth_cells",
    ]
    rows = {name: {c: m.get(c, math.nan) for c in cols} for name, m in result.metrics.items()}
    if result.oracle:
        rows["oracle"] = {c: math.nan for c in cols} | {"wape_truth_cells": result.oracle["wape"]}
    return pd.DataFrame.from_dict(rows, orient="index")
