"""Error metrics of units and of ROI."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr


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


def roi_metrics(true_roi: npt.ArrayLike, predicted_roi: npt.ArrayLike) -> dict[str, float]:
    """ROI MAE, Spearman rank correlation and sign agreement (does the program
    pay back, ROI > 0, or not) over cells where both are defined."""
    t = np.asarray(true_roi, dtype=np.float64)
    p = np.asarray(predicted_roi, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if len(t) == 0:
        return {
            "roi_mae": math.nan,
            "roi_spearman": math.nan,
            "roi_sign_agreement": math.nan,
            "roi_cells": 0.0,
        }
    # a constant prediction ranks nothing: no correlation
    rho = float(spearmanr(t, p).statistic) if np.ptp(t) > 0 and np.ptp(p) > 0 else math.nan
    return {
        "roi_mae": float(np.abs(p - t).mean()),
        "roi_spearman": rho,
        "roi_sign_agreement": float(((p > 0) == (t > 0)).mean()),
        "roi_cells": float(len(t)),
    }
