"""The planner's options through the model, as the server scores them: the
served columns of every scenario (``roi``, its interval, ``prob_pays_back``,
units, cost, profit) and each ensemble member's profit and cost, which a sum
over the chosen scenarios needs for its own interval (as program-level ROI
does, ``autoroi.model.programs``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.roi import member_units, roi_of_sums


def score_options(model: Any, scenarios: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``scenarios`` with the served columns, and each member's profit and
    cost, ``(rows, members)``. ``model`` is a ``RoiModel``."""
    feats = model.features(scenarios[list(F.SCENARIO_FIELDS)])
    mu = member_units(model.predict_members, feats, model.take_rates, model.uptake, model.pull_forward)
    profit, cost = mu.money()
    served = pd.DataFrame(mu.columns(), index=scenarios.index)
    if F.CELL_LEVEL in feats.columns:
        served[F.CELL_LEVEL] = feats[F.CELL_LEVEL].to_numpy()
    return pd.concat([scenarios, served], axis=1), profit, cost


def portfolio(
    chosen: pd.DataFrame, member_profit: np.ndarray | None, member_cost: np.ndarray | None
) -> dict[str, Any]:
    """Totals of the chosen scenarios: cost, incremental units and profit, and
    the portfolio's ROI with its interval from each member's own sums (none
    without members: a plan made through an endpoint has only served fields)."""
    cost = float(chosen["incentive_cost"].sum())
    profit = float(chosen["incremental_profit"].sum())
    roi = profit / cost if cost > 0 else float("nan")
    out: dict[str, Any] = {
        "scenarios": len(chosen),
        "incentive_cost": cost,
        "incremental_units": float(chosen["incremental_units"].sum()),
        "incremental_profit": profit,
        "roi": roi,
        "roi_lower": None,
        "roi_upper": None,
        "prob_pays_back": None,
    }
    if member_profit is not None and member_cost is not None and member_profit.shape[1] > 1 and cost > 0:
        sums = roi_of_sums(
            [profit], [cost], member_profit.sum(axis=0)[None, :], member_cost.sum(axis=0)[None, :]
        )
        out.update({k: float(v[0]) for k, v in sums.items() if k != "roi"})
    return out


def make_plan(
    pairs: list[tuple[str, str]],
    types: list[str],
    weeks: list[str],
    amounts: list[float],
    score: Any,
    budget: float,
    objective: str = "profit",
    min_prob_pays_back: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The chosen scenarios (every serving field) and the totals of a plan
    (``autoroi.planning``) over pairs x weeks x types x amounts. ``score``
    maps the scenario grid to ``(frame, member_profit, member_cost)``
    (:func:`score_options` on a model; members None through an endpoint).
    The one planning path of ``autoroi plan`` and the server's plan route."""
    from autoroi.planning import allocate, plan_grid

    scenarios = plan_grid(pairs, weeks, types, amounts)
    frame, m_profit, m_cost = score(scenarios)
    eligible = None
    if min_prob_pays_back is not None:
        eligible = frame["prob_pays_back"].fillna(0).to_numpy() >= min_prob_pays_back
    alloc = allocate(
        frame["group"].to_numpy(),
        frame["incentive_cost"].fillna(0).to_numpy(),
        frame["incremental_profit"].fillna(0).to_numpy(),
        budget,
        objective,  # type: ignore[arg-type]
        eligible,
    )
    rows = alloc.choice[alloc.choice >= 0]
    chosen = frame.iloc[rows].drop(columns=["group"]).reset_index(drop=True)
    totals = portfolio(
        chosen,
        None if m_profit is None else m_profit[rows],
        None if m_cost is None else m_cost[rows],
    )
    totals.update(budget=budget, objective=objective, weeks=len(weeks), cells=len(pairs), options=len(frame))
    return chosen, totals
