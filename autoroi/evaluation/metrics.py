"""Error metrics of units and of ROI."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import rankdata, spearmanr


def units_metrics(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """WAPE (sum |error| / sum actual), MAE and RMSE of weekly units."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if a.shape != p.shape:
        raise ValueError("actual and predicted differ in length")
    err = p - a
    total = float(np.abs(a).sum())
    return {
        "wape": float(np.abs(err).sum() / total) if total > 0 else math.nan,
        "mae": float(np.abs(err).mean()) if len(a) else math.nan,
        "rmse": float(np.sqrt((err**2).mean())) if len(a) else math.nan,
        "rows": float(len(a)),
    }


def lift_calibration(
    actual: npt.ArrayLike, predicted: npt.ArrayLike, baseline: npt.ArrayLike, treated: npt.ArrayLike
) -> dict[str, float]:
    """Realized over predicted incremental units of the treated rows, with
    no ground truth: realized = actual less the predicted baseline, both on
    the level of the untreated rows (``level``: their actual over predicted
    units), so a model whose level is off but whose lift is right scores 1.
    Below 1: the model promises lifts that do not come; above: its lifts are
    too small. The backtest's value is each model's yardstick for the monitor."""
    a, p, b = (np.asarray(x, dtype=np.float64) for x in (actual, predicted, baseline))
    t = np.asarray(treated, dtype=bool)
    pu = float(p[~t].sum())
    level = float(a[~t].sum()) / pu if pu > 0 and a[~t].sum() > 0 else 1.0
    predicted_inc = level * float((p[t] - b[t]).sum())
    realized_inc = float(a[t].sum()) - level * float(b[t].sum())
    return {
        "lift_ratio": realized_inc / predicted_inc if predicted_inc > 0 else math.nan,
        "level": level,
        "predicted_incremental": predicted_inc,
        "realized_incremental": realized_inc,
    }


def roi_metrics(true_roi: npt.ArrayLike, predicted_roi: npt.ArrayLike) -> dict[str, float]:
    """ROI quality over cells where both are defined: MAE, mean bias
    (predicted - true), Spearman rank correlation, and the decision "does it
    pay back" (ROI > 0) as balanced accuracy and AUC.

    Why not the share of agreeing signs: where most cells lose money, the
    constant "never pays back" scores as high as it gets. Balanced accuracy
    (the mean of the hit rates on paying and on losing cells) scores any
    constant 0.5, and AUC asks whether paying cells rank above losing ones;
    both are NaN when the cells are all of one kind. ``roi_sign_agreement``
    stays in the numbers for the versions that reported it."""
    t = np.asarray(true_roi, dtype=np.float64)
    p = np.asarray(predicted_roi, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if len(t) == 0:
        return dict.fromkeys(
            ("roi_mae", "roi_bias", "roi_spearman", "roi_balanced_accuracy", "roi_auc", "roi_sign_agreement"),
            math.nan,
        ) | {"roi_cells": 0.0}
    # a constant prediction ranks nothing: no correlation
    rho = float(spearmanr(t, p).statistic) if np.ptp(t) > 0 and np.ptp(p) > 0 else math.nan
    pays = t > 0
    return {
        "roi_mae": float(np.abs(p - t).mean()),
        "roi_bias": float((p - t).mean()),
        "roi_spearman": rho,
        "roi_balanced_accuracy": balanced_accuracy(pays, p > 0),
        "roi_auc": auc(pays, p),
        "roi_sign_agreement": float(((p > 0) == pays).mean()),
        "roi_cells": float(len(t)),
    }


def balanced_accuracy(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Mean of the hit rates on the positive and on the negative cases; NaN
    without both."""
    a = np.asarray(actual, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    if a.all() or not a.any():
        return math.nan
    return float(((p[a]).mean() + (~p[~a]).mean()) / 2)


def auc(actual: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve: the probability that a positive case scores
    above a negative one (ties count half), from the rank sum (Mann-Whitney U);
    NaN without both kinds of case."""
    a = np.asarray(actual, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(a.sum()), int((~a).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    u = ranks[a].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def program_steps(frame: pd.DataFrame, predicted: str) -> dict[str, float]:
    """How well a model predicts the weeks where a program starts or ends,
    without any ground truth: over consecutive weeks of the same cell (both
    in ``frame``, one with an incentive and the other without), the predicted
    jump in units against the actual one, ``sum(predicted jump) / sum(actual
    jump)`` with ends counted as drops. 1: the model moves with the programs
    as much as sales did; below 1: its lift is too small (a model blind to
    incentives, such as last year's weeks, scores about 0); above: too large.
    ``frame``: rows with ``region``, ``vehicle_model``, ``week_start``,
    ``incentive_type`` (``"none"`` without), ``units`` and the column
    ``predicted``; ``step_pairs`` counts the pairs it used, ``step_predicted``
    and ``step_actual`` are the two sums (to pool several frames)."""
    cols = ["region", "vehicle_model", "week_start", "incentive_type", "units", predicted]
    f = frame[cols].copy()
    f["week_start"] = pd.to_datetime(f["week_start"])
    prev = f.assign(week_start=f["week_start"] + pd.Timedelta(weeks=1))
    j = f.merge(prev, on=["region", "vehicle_model", "week_start"], suffixes=("", "_prev"))
    on, was = j["incentive_type"] != "none", j["incentive_type_prev"] != "none"
    sign = np.where(on & ~was, 1.0, np.where(was & ~on, -1.0, 0.0))
    used = sign != 0
    actual = (sign * (j["units"] - j["units_prev"]).to_numpy(np.float64))[used].sum()
    pred = (sign * (j[predicted] - j[f"{predicted}_prev"]).to_numpy(np.float64))[used].sum()
    return {
        "step_ratio": float(pred / actual) if used.any() and actual > 0 else math.nan,
        "step_pairs": float(used.sum()),
        "step_predicted": float(pred),
        "step_actual": float(actual),
    }
