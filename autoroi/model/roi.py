"""The one ROI formula: training reports, validation, serving and the dashboard
all call :func:`roi_frame` (or :func:`roi_columns`, the same on arrays).

For one incentive scenario in one cell (region x vehicle model x week)::

    incremental_units  = predicted_units - baseline_units
    incentive_cost     = amount x predicted_units x take_rate
    incremental_profit = incremental_units x unit_margin - incentive_cost
    roi                = incremental_profit / incentive_cost

``predicted_units`` are the expected units with the incentive, ``baseline_units``
the same cell and week without it (the counterfactual). The incentive is paid on
every unit sold under it, including the buyers who would have bought anyway;
``take_rate`` is the share of the cell's units that are sold under the program.
With ``take_rate=1`` (the default) the cost is ``amount x predicted_units``, as
the issue states it; a trained model passes the take rate per incentive type it
measured in the master table (``features.estimate_take_rates``), which is what
the source's ground truth counts (``units_under_incentive``); a model trained
since issue 12 passes ``uptake`` instead: every buyer the incentive brings in
takes it, plus a share of those who would have bought anyway, so that the
units under it are ``incremental_units + uptake x baseline_units``.

ROI is undefined where the cost is zero (no incentive, a zero amount, zero
predicted units): ``roi`` is NaN there, and ``None`` in JSON
(:func:`roi_records`). The ground truth of the simulator writes
``incremental_profit`` *before* the cost (``incremental_units x unit_margin``)
and ``roi = (incremental_profit - incentive_cost) / incentive_cost``; the ROI is
the same number, only the column called profit differs (here it is net of the
cost, so that ``roi = incremental_profit / incentive_cost`` reads directly).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from autoroi.model import features as F

ArrayLike = npt.ArrayLike

ROI_COLUMNS = (
    "predicted_units",
    "baseline_units",
    "incremental_units",
    "incentive_cost",
    "incremental_profit",
    "roi",
)


def _f64(x: ArrayLike, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0 and n is not None:
        a = np.full(n, float(a))
    return a.reshape(-1) if a.ndim else a.reshape(1)


def roi_columns(
    predicted_units: ArrayLike,
    baseline_units: ArrayLike,
    amount: ArrayLike,
    unit_margin: ArrayLike,
    take_rate: ArrayLike = 1.0,
    uptake: ArrayLike | None = None,
    regular_units: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """The formula of the module docstring, element-wise on arrays (scalars
    broadcast): the columns of :data:`ROI_COLUMNS` as float64 arrays, ``roi``
    NaN where the cost is zero. :func:`roi_frame` is the same as a frame; the
    model server's fast path calls this directly (no frame per request).

    With ``uptake`` (per row, ``features.estimate_uptake``), the units sold
    under the incentive are the incremental ones plus that share of the
    regular buyers, ``incremental + uptake x regular_units``, instead of
    ``take_rate x predicted``; ``regular_units`` default to the baseline
    (:func:`score_features` passes those that no richer program beside the
    scenario took first)."""
    pred = _f64(predicted_units)
    n = len(pred)
    base = _f64(baseline_units, n)
    amt = _f64(amount, n)
    margin = _f64(unit_margin, n)
    rate = _f64(take_rate, n)
    if not (len(base) == len(amt) == len(margin) == len(rate) == n):
        raise ValueError("roi_frame: inputs must have the same length (or be scalars)")
    incremental = pred - base
    if uptake is None:
        cost = amt * pred * rate
    else:
        up = _f64(uptake, n)
        regular = base if regular_units is None else _f64(regular_units, n)
        if not (len(up) == len(regular) == n):
            raise ValueError("roi_frame: inputs must have the same length (or be scalars)")
        cost = amt * (np.clip(incremental, 0.0, None) + up * regular) * (pred > 0)
    profit = incremental * margin - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost != 0, profit / np.where(cost != 0, cost, 1.0), np.nan)
    return {
        "predicted_units": pred,
        "baseline_units": base,
        "incremental_units": incremental,
        "incentive_cost": cost,
        "incremental_profit": profit,
        "roi": roi,
    }


def roi_frame(
    predicted_units: ArrayLike,
    baseline_units: ArrayLike,
    amount: ArrayLike,
    unit_margin: ArrayLike,
    take_rate: ArrayLike = 1.0,
    uptake: ArrayLike | None = None,
    regular_units: ArrayLike | None = None,
) -> pd.DataFrame:
    """Counterfactual ROI, element-wise; scalars broadcast. Returns the columns
    of :data:`ROI_COLUMNS` (float64), ``roi`` NaN where the cost is zero."""
    return pd.DataFrame(
        roi_columns(predicted_units, baseline_units, amount, unit_margin, take_rate, uptake, regular_units)
    )


def score_features(
    predict_fn: Callable[[pd.DataFrame], Any],
    feats: pd.DataFrame,
    take_rates: Mapping[str, float],
    uptake: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The ROI columns of served feature rows (``features.scenario_features``):
    units with the scenario, without it (the programs that ran beside it still
    on) and, for the regular buyers, without any incentive
    (``features.scenario_units``). The one place the reference path, the
    backtest and the reports turn feature rows into ROI."""
    kind = feats[F.INCENTIVE_TYPE]
    if not uptake:
        pred, base = F.counterfactual_units(predict_fn, feats)
        return roi_frame(
            pred, base, feats[F.INCENTIVE_AMOUNT], feats[F.UNIT_MARGIN], F.take_rate_of(kind, take_rates)
        )
    pred, base, bare = F.scenario_units(predict_fn, feats)
    return roi_frame(
        pred,
        base,
        feats[F.INCENTIVE_AMOUNT],
        feats[F.UNIT_MARGIN],
        F.take_rate_of(kind, take_rates),
        F.uptake_of(kind, uptake),
        bare * F.crowding(feats, uptake),
    )


def roi_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN (undefined ROI) becomes ``None``."""
    out: list[dict[str, Any]] = []
    for rec in frame.to_dict(orient="records"):
        out.append({str(k): (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})
    return out
