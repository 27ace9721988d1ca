"""A budget planner: for each cell (region x vehicle model) and week, at most one
incentive (type, amount), so that the expected incentive cost stays within a
budget and the expected incremental profit (or the return per dollar) is as
large as it can be.

This is a multiple-choice knapsack: one choice per (cell, week) group. The
allocator is the classic greedy on the groups' convex hulls (Sinha and
Zoltners, 1979): in each group, drop the options that another option or a mix
of two beats (more profit for less cost); walk each group's hull from "no
incentive" up, one step at a time, and take the steps of all groups in order
of their marginal return (extra profit per extra dollar) while they fit the
budget and return more than they cost. Concave response curves make the hull
hold most options. Guarantee: the linear relaxation's optimum is the greedy's
path up to one fractional step, so the plan's profit is at least the optimum's
minus the largest single option's profit (and equal to it when the budget
ends on a hull step); ``tests/unit/test_planning.py`` checks it against brute
force. With objective ``roi`` each group offers its best-returning option,
taken in order of return while the budget lasts.

Pure functions of arrays (the model's answers come in from the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Objective = Literal["profit", "roi"]
# scenarios one plan may score: the demo's whole world at 20 amounts is 212,160;
# a request for far more would hold the server's memory and a core for minutes
MAX_OPTIONS = 1_000_000


@dataclass(frozen=True)
class Allocation:
    """Chosen option row per group (-1: none), and the totals."""

    choice: np.ndarray  # (groups,) index into the options, or -1
    cost: float
    value: float


def plan_grid(
    pairs: Sequence[tuple[str, str]], weeks: Sequence[str], types: Sequence[str], amounts: Sequence[float]
) -> pd.DataFrame:
    """Every scenario the planner may choose: pairs x weeks x types x amounts,
    with ``group`` numbering the (cell, week)."""
    p = np.asarray(pairs, dtype=object).reshape(-1, 2)
    n_p, n_w, n_t, n_a = len(p), len(weeks), len(types), len(amounts)
    i_p, i_w, i_t, i_a = (
        a.ravel()
        for a in np.meshgrid(np.arange(n_p), np.arange(n_w), np.arange(n_t), np.arange(n_a), indexing="ij")
    )
    return pd.DataFrame(
        {
            "region": p[i_p, 0],
            "vehicle_model": p[i_p, 1],
            "week_start": np.asarray(weeks, dtype=object)[i_w],
            "incentive_type": np.asarray(types, dtype=object)[i_t],
            "incentive_amount": np.asarray(amounts, dtype=np.float64)[i_a],
            "group": i_p * n_w + i_w,
        }
    )


def _hull(cost: np.ndarray, value: np.ndarray, idx: np.ndarray) -> list[int]:
    """Indices (into the options) of one group's upper convex hull from the
    origin, by increasing cost, with increasing value and decreasing slope."""
    order = idx[np.lexsort((-value[idx], cost[idx]))]
    hull: list[int] = []
    best = 0.0
    for i in order:  # drop what costs more and earns no more
        if value[i] <= best or cost[i] <= 0:
            continue
        best = value[i]
        # pop while the last point lies on or below the line from the one before to i
        while hull:
            c0, v0 = (cost[hull[-2]], value[hull[-2]]) if len(hull) > 1 else (0.0, 0.0)
            c1, v1 = cost[hull[-1]], value[hull[-1]]
            if (v1 - v0) * (cost[i] - c0) <= (value[i] - v0) * (c1 - c0):
                hull.pop()
            else:
                break
        hull.append(int(i))
    return hull


def allocate(
    group: np.ndarray,
    cost: np.ndarray,
    value: np.ndarray,
    budget: float,
    objective: Objective = "profit",
    eligible: np.ndarray | None = None,
) -> Allocation:
    """At most one option per group (module docstring). ``value`` is the
    expected incremental profit, ``cost`` the expected incentive cost;
    ``eligible`` masks options that may be chosen (for example P(ROI > 0) high
    enough). Options with no cost or no profit are never chosen."""
    group = np.asarray(group)
    cost = np.asarray(cost, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    if not (len(group) == len(cost) == len(value)):
        raise ValueError("group, cost and value must have one entry per option")
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be a finite amount >= 0, got {budget}")
    ok = np.isfinite(cost) & np.isfinite(value) & (cost > 0) & (value > 0)
    if eligible is not None:
        ok &= np.asarray(eligible, dtype=bool)
    groups, inverse = np.unique(group, return_inverse=True)
    choice = np.full(len(groups), -1)
    candidates = np.flatnonzero(ok)
    cand_group = inverse[candidates]
    order = np.argsort(cand_group, kind="stable")
    candidates, cand_group = candidates[order], cand_group[order]
    cuts = np.flatnonzero(np.diff(cand_group)) + 1
    by_group: list[tuple[int, np.ndarray]] = (
        list(zip(cand_group[np.r_[0, cuts]].tolist(), np.split(candidates, cuts), strict=True))
        if len(candidates)
        else []
    )
    steps: list[tuple[float, int, int, int, float]] = []  # (-slope, group, position, option, extra cost)
    if objective == "profit":
        for g, idx in by_group:
            prev_c = prev_v = 0.0
            for pos, i in enumerate(_hull(cost, value, idx)):
                dc, dv = cost[i] - prev_c, value[i] - prev_v
                steps.append((-dv / dc, g, pos, i, dc))
                prev_c, prev_v = cost[i], value[i]
    elif objective == "roi":
        for g, idx in by_group:
            i = idx[np.argmax(value[idx] / cost[idx])]
            steps.append((-value[i] / cost[i], g, 0, int(i), cost[i]))
    else:
        raise ValueError(f"objective must be profit or roi, got {objective!r}")
    steps.sort()
    left = float(budget)
    blocked: set[int] = set()
    at: dict[int, int] = {}  # group -> hull position reached
    for _neg, g, pos, i, dc in steps:
        if g in blocked or at.get(g, -1) != pos - 1:
            continue
        if dc > left + 1e-9:
            blocked.add(g)  # later steps of this group build on this one
            continue
        left -= dc
        at[g] = pos
        choice[g] = i
    chosen = choice[choice >= 0]
    return Allocation(choice, float(cost[chosen].sum()), float(value[chosen].sum()))


# --------------------------------------------------------------------------- a plan request


class PlanRequestError(ValueError):
    """A plan request the planner cannot run; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class PlanRequest:
    pairs: list[tuple[str, str]]
    types: list[str]
    weeks: list[str]
    amounts: list[float]
    budget: float
    objective: Objective
    min_prob_pays_back: float | None


def plan_weeks(first: str, last: str) -> list[str]:
    """The Mondays from ``first`` to ``last`` (both Mondays, at most 104 weeks)."""
    import datetime as dt

    try:
        a = dt.date.fromisoformat(str(first))
    except ValueError as e:
        raise PlanRequestError("from", f"not a date (YYYY-MM-DD): {first!r}") from e
    try:
        b = dt.date.fromisoformat(str(last))
    except ValueError as e:
        raise PlanRequestError("to", f"not a date (YYYY-MM-DD): {last!r}") from e
    for name, d in (("from", a), ("to", b)):
        if d.weekday() != 0:
            raise PlanRequestError(name, f"{d} is not a Monday (weeks start on Mondays)")
    if b < a:
        raise PlanRequestError("to", f"{b} is before from ({a})")
    n = (b - a).days // 7 + 1
    if n > 104:
        raise PlanRequestError("to", f"{n} weeks from {a}: at most 104")
    return [(a + dt.timedelta(weeks=i)).isoformat() for i in range(n)]


def pick(known: Sequence[str], wanted: Sequence[str] | None, field: str) -> list[str]:
    """``wanted`` (all of ``known`` when empty), refusing names the model does not serve."""
    if not wanted:
        return list(known)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise PlanRequestError(field, f"unknown {', '.join(map(str, unknown))}; served: {', '.join(known)}")
    return list(wanted)


def plan_request(body: Any, options: dict[str, Any]) -> PlanRequest:
    """A JSON plan request (the server's ``POST /v2/models/roi/plan``) checked
    against what the model serves (``autoroi.serving.options``)."""
    from autoroi.decisions import AmountGridError, parse_amount_grid

    if not isinstance(body, dict):
        raise PlanRequestError("body", "expected a JSON object")
    budget = body.get("budget")
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not np.isfinite(budget)
        or budget <= 0
    ):
        raise PlanRequestError("budget", "a positive number of dollars is required")
    weeks = plan_weeks(body.get("from", ""), body.get("to", ""))
    lists = {}
    for field in ("regions", "models", "types"):
        v = body.get(field)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise PlanRequestError(field, "a list of names")
        lists[field] = v
    pairs = [(str(p[0]), str(p[1])) for p in options["pairs"]]
    regions = set(pick(sorted({p[0] for p in pairs}), lists["regions"], "regions"))
    models = set(pick(sorted({p[1] for p in pairs}), lists["models"], "models"))
    pairs = [p for p in pairs if p[0] in regions and p[1] in models]
    if not pairs:
        raise PlanRequestError("models", "no (region, vehicle model) cell is left by regions and models")
    types = pick(list(options["incentive_types"]), lists["types"], "types")
    try:
        amounts = parse_amount_grid(str(body.get("amounts", "500:3000:500")))
    except AmountGridError as e:
        raise PlanRequestError("amounts", str(e)) from e
    n = len(pairs) * len(weeks) * len(types) * len(amounts)
    if n > MAX_OPTIONS:
        raise PlanRequestError(
            "amounts",
            f"{len(pairs)} cells x {len(weeks)} weeks x {len(types)} types x {len(amounts)} amounts"
            f" = {n:,} scenarios, at most {MAX_OPTIONS:,}: fewer weeks, cells, types or amounts",
        )
    objective = body.get("objective", "profit")
    if objective not in ("profit", "roi"):
        raise PlanRequestError("objective", f"profit or roi, not {objective!r}")
    p = body.get("min_prob_pays_back")
    if p is not None and (isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1):
        raise PlanRequestError("min_prob_pays_back", "a probability in [0, 1)")
    return PlanRequest(
        pairs, types, weeks, amounts, float(budget), objective, None if p is None else float(p)
    )
