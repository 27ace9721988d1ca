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

A model trained with the ended-program features also passes ``pull_forward``,
the share of an incentive's extra units that it borrows from the weeks after
it (``features.estimate_pull_forward``): ``incremental_units`` are then net of
it, ``(predicted_units - baseline_units) x (1 - pull_forward)``, as DESIGN.md
defines the ROI, while the cost still counts every buyer the incentive
brought in (the pulled-forward ones took it too).

ROI is undefined where the cost is zero (no incentive, a zero amount, zero
predicted units): ``roi`` is NaN there, and ``None`` in JSON
(:func:`roi_records`). The ground truth of the simulator writes
``incremental_profit`` *before* the cost (``incremental_units x unit_margin``)
and ``roi = (incremental_profit - incentive_cost) / incentive_cost``; the ROI is
the same number, only the column called profit differs (here it is net of the
cost, so that ``roi = incremental_profit / incentive_cost`` reads directly).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
# the ROI's 90 % interval and P(ROI > 0), from the ensemble's members (roi_interval)
INTERVAL_COLUMNS = ("roi_lower", "roi_upper", "prob_pays_back")
INTERVAL_LEVEL = 0.90


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
    pull_forward: ArrayLike | None = None,
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
    up = regular = None
    if uptake is not None:
        up = _f64(uptake, n)
        regular = base if regular_units is None else _f64(regular_units, n)
        if not (len(up) == len(regular) == n):
            raise ValueError("roi_frame: inputs must have the same length (or be scalars)")
    pf = None if pull_forward is None else _f64(pull_forward, n)
    # the same arithmetic as every ensemble member's: one member
    profit, cost, roi = _member_roi(
        pred[:, None], base[:, None], amt, margin, rate, up, None if regular is None else regular[:, None], pf
    )
    return {
        "predicted_units": pred,
        "baseline_units": base,
        "incremental_units": (pred - base) * (1.0 if pf is None else 1.0 - pf),
        "incentive_cost": cost[:, 0],
        "incremental_profit": profit[:, 0],
        "roi": roi[:, 0],
    }


def roi_frame(
    predicted_units: ArrayLike,
    baseline_units: ArrayLike,
    amount: ArrayLike,
    unit_margin: ArrayLike,
    take_rate: ArrayLike = 1.0,
    uptake: ArrayLike | None = None,
    regular_units: ArrayLike | None = None,
    pull_forward: ArrayLike | None = None,
) -> pd.DataFrame:
    """Counterfactual ROI, element-wise; scalars broadcast. Returns the columns
    of :data:`ROI_COLUMNS` (float64), ``roi`` NaN where the cost is zero."""
    return pd.DataFrame(
        roi_columns(
            predicted_units,
            baseline_units,
            amount,
            unit_margin,
            take_rate,
            uptake,
            regular_units,
            pull_forward,
        )
    )


def roi_interval(
    roi: ArrayLike, member_roi: ArrayLike, level: float = INTERVAL_LEVEL
) -> dict[str, np.ndarray]:
    """The ROI's interval and the probability that it pays back, from the
    ROI of each ensemble member (``(rows, members)``) around the point
    estimate ``roi`` (the ROI of the members' mean units).

    The members are networks fitted on Bayesian-bootstrap reweightings of the
    cells (``train.train_model``): their spread is the model's own
    uncertainty about the cell's ROI. With few members the spread is itself
    uncertain, so the interval is Student's t prediction interval,
    ``roi +- t(K-1) x sd x sqrt(1 + 1/K)``, and ``prob_pays_back`` is the t
    distribution's mass above 0. NaN where the ROI is undefined or there is
    one member (nothing to measure a spread from)."""
    from scipy.special import stdtr  # the t distribution's CDF as a ufunc: no per-call overhead

    point = _f64(roi)
    m = np.asarray(member_roi, dtype=np.float64).reshape(len(point), -1)
    k = m.shape[1]
    if k < 2:
        nan = np.full(len(point), np.nan)
        return {"roi_lower": nan, "roi_upper": nan.copy(), "prob_pays_back": nan.copy()}
    with np.errstate(invalid="ignore"):
        scale = np.std(m, axis=1, ddof=1) * math.sqrt(1 + 1 / k)
    scale = np.where(np.isfinite(point), np.maximum(scale, 1e-9), np.nan)
    t = _t_quantile(level, k - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = stdtr(k - 1, point / scale)
    return {"roi_lower": point - t * scale, "roi_upper": point + t * scale, "prob_pays_back": prob}


def roi_of_sums(
    profit: ArrayLike, cost: ArrayLike, member_profit: np.ndarray, member_cost: np.ndarray
) -> dict[str, np.ndarray]:
    """The ROI of summed rows (a program, a plan) with its interval from each
    member's own sums (``(sums, members)``): :func:`roi_interval` of the
    members' ROIs around the ROI of the point sums; NaN where nothing was spent."""
    profit, cost = _f64(profit), _f64(cost)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = np.where(cost > 0, profit / np.where(cost > 0, cost, 1.0), np.nan)
        member_roi = np.where(
            member_cost > 0, member_profit / np.where(member_cost > 0, member_cost, 1.0), np.nan
        )
    return {"roi": point, **roi_interval(point, member_roi)}


@functools.lru_cache(maxsize=64)
def _t_quantile(level: float, df: int) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + level / 2))


def _member_roi(
    predicted: np.ndarray,
    baseline: np.ndarray,
    amount: np.ndarray,
    unit_margin: np.ndarray,
    take_rate: np.ndarray,
    uptake: np.ndarray | None,
    regular: np.ndarray | None,
    pull_forward: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The formula of the module docstring for every member at once: profit,
    cost and ROI, ``(rows, members)`` (units ``(rows, members)``, the rest
    per row). :func:`roi_columns` is its one-member case."""
    amt, margin = amount[:, None], unit_margin[:, None]
    incremental = predicted - baseline
    if uptake is None:
        cost = amt * predicted * take_rate[:, None]
    else:
        reg = baseline if regular is None else regular
        cost = amt * (np.clip(incremental, 0.0, None) + uptake[:, None] * reg) * (predicted > 0)
    if pull_forward is not None:  # net of the buyers borrowed from the weeks after
        incremental = incremental * (1.0 - pull_forward[:, None])
    profit = incremental * margin - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost != 0, profit / np.where(cost != 0, cost, 1.0), np.nan)
    return profit, cost, roi


@dataclass
class MemberUnits:
    """Units of served feature rows per ensemble member, ``(rows, members)``:
    with the scenario, without it, and the regular buyers free to take it
    (None without uptakes); the columns of :func:`member_roi_columns`."""

    predicted: np.ndarray
    baseline: np.ndarray
    regular: np.ndarray | None
    amount: np.ndarray
    unit_margin: np.ndarray
    take_rate: np.ndarray
    uptake: np.ndarray | None
    pull_forward: np.ndarray | None = None

    def columns(self) -> dict[str, np.ndarray]:
        return member_roi_columns(
            self.predicted,
            self.baseline,
            self.amount,
            self.unit_margin,
            self.take_rate,
            self.uptake,
            self.regular,
            self.pull_forward,
        )

    def money(self) -> tuple[np.ndarray, np.ndarray]:
        """Each member's incremental profit and incentive cost, ``(rows, members)``:
        what a sum over many rows (a program) needs for its own interval."""
        profit, cost, _ = _member_roi(
            self.predicted,
            self.baseline,
            self.amount,
            self.unit_margin,
            self.take_rate,
            self.uptake,
            self.regular,
            self.pull_forward,
        )
        return profit, cost


def member_units(
    predict_fn: Callable[[pd.DataFrame], Any],
    feats: pd.DataFrame,
    take_rates: Mapping[str, float],
    uptake: Mapping[str, float] | None = None,
    pull_forward: Mapping[str, float] | None = None,
) -> MemberUnits:
    """Served feature rows (``features.scenario_features``) through the
    network: units with the scenario, without it (the programs that ran beside
    it still on) and, for the regular buyers, without any incentive
    (``features.scenario_units``), in one call; an answer from a coarser cell
    scaled by the asked cell's share of it. ``predict_fn`` gives units per row,
    or per row and ensemble member (``RoiModel.predict_members``)."""
    kind = feats[F.INCENTIVE_TYPE]
    n = len(feats)
    scale = feats[F.CELL_SCALE].to_numpy(np.float64) if F.CELL_SCALE in feats.columns else np.ones(n)
    frames = [feats, F.without_scenario(feats)] + ([F.without_incentive(feats)] if uptake else [])
    stacked = pd.concat(frames, ignore_index=True)
    units = np.asarray(predict_fn(stacked), dtype=np.float64).reshape(len(stacked), -1)
    units = units * np.tile(scale, len(frames))[:, None]
    regular = units[2 * n :] * F.crowding(feats, uptake)[:, None] if uptake else None
    return MemberUnits(
        predicted=units[:n],
        baseline=units[n : 2 * n],
        regular=regular,
        amount=feats[F.INCENTIVE_AMOUNT].to_numpy(np.float64),
        unit_margin=feats[F.UNIT_MARGIN].to_numpy(np.float64),
        take_rate=F.take_rate_of(kind, take_rates),
        uptake=F.uptake_of(kind, uptake) if uptake else None,
        pull_forward=F.pull_forward_of(kind, pull_forward) if pull_forward else None,
    )


def score_features(
    predict_fn: Callable[[pd.DataFrame], Any],
    feats: pd.DataFrame,
    take_rates: Mapping[str, float],
    uptake: Mapping[str, float] | None = None,
    pull_forward: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The ROI columns and the interval of served feature rows
    (:func:`member_units`): the point estimate is the ROI of the members' mean
    units, the interval comes from each member's own ROI
    (:func:`roi_interval`). The one place the reference path, the backtest and
    the reports turn feature rows into ROI."""
    return pd.DataFrame(member_units(predict_fn, feats, take_rates, uptake, pull_forward).columns())


def member_roi_columns(
    predicted: np.ndarray,
    baseline: np.ndarray,
    amount: ArrayLike,
    unit_margin: ArrayLike,
    take_rate: ArrayLike,
    uptake: ArrayLike | None = None,
    regular: np.ndarray | None = None,
    pull_forward: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """:func:`roi_columns` of the members' mean units plus :func:`roi_interval`
    from each member's ROI (units ``(rows, members)``): the served columns."""
    mean_regular = None if regular is None else regular.mean(axis=1)
    out = roi_columns(
        predicted.mean(axis=1),
        baseline.mean(axis=1),
        amount,
        unit_margin,
        take_rate,
        uptake,
        mean_regular,
        pull_forward,
    )
    n = len(out["roi"])
    if predicted.shape[1] > 1:
        _, _, each = _member_roi(
            predicted,
            baseline,
            _f64(amount, n),
            _f64(unit_margin, n),
            _f64(take_rate, n),
            None if uptake is None else _f64(uptake, n),
            regular,
            None if pull_forward is None else _f64(pull_forward, n),
        )
    else:
        each = out["roi"][:, None]
    out.update(roi_interval(out["roi"], each))
    return out


def roi_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN (undefined ROI) becomes ``None``."""
    out: list[dict[str, Any]] = []
    for rec in frame.to_dict(orient="records"):
        out.append({str(k): (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})
    return out
