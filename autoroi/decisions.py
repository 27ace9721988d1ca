"""From ROI to amounts: for one cell, week and incentive type, answered at a
grid of amounts by the served model, the break-even amount (ROI = 0), the
amount that maximizes expected incremental profit, and the largest amount
whose chance of paying back is at least a chosen level, each with the expected
profit and ROI there, or "none pays back".

Pure functions of the served answers (the server's own fields), so every
caller (``autoroi predict --amounts``, a planner, the dashboard) decides on the
numbers a client gets. Why a grid and not a root finder: the response curve
can bend both ways (a richer program beside the scenario takes its buyers
first; pull-forward grows with depth), so a search that assumes monotone ROI
can miss a crossing; a dense grid finds every one and costs one batch request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from autoroi.errors import AutoroiError

DEFAULT_POINTS = 40
DEFAULT_MIN_PROB = 0.8


class AmountGridError(AutoroiError, ValueError):
    """A grid of amounts that cannot be searched; the message says why."""


def parse_amount_grid(spec: str) -> list[float]:
    """``"LO:HI:STEP"`` (both ends included) or ``"A,B,C"``: positive dollars
    per unit, at least two, in increasing order."""
    text = spec.strip()
    try:
        if ":" in text:
            lo, hi, step = (float(p) for p in text.split(":"))
            if not (step > 0 and hi > lo):
                raise AmountGridError(f"amount grid {spec!r}: expected LO:HI:STEP with HI > LO and STEP > 0")
            n = int(math.floor((hi - lo) / step + 1e-9)) + 1
            if n > 10_000:
                raise AmountGridError(f"amount grid {spec!r}: {n} amounts, at most 10,000")
            amounts = [round(lo + i * step, 6) for i in range(n)]
        else:
            amounts = [float(p) for p in text.split(",") if p.strip()]
    except ValueError as e:
        if isinstance(e, AmountGridError):
            raise
        raise AmountGridError(f"amount grid {spec!r}: not numbers ({e})") from e
    if len(amounts) < 2:
        raise AmountGridError(f"amount grid {spec!r}: at least two amounts")
    if any(not math.isfinite(a) or a <= 0 for a in amounts):
        raise AmountGridError(f"amount grid {spec!r}: amounts are positive dollars per unit")
    if any(b <= a for a, b in pairwise(amounts)):
        raise AmountGridError(f"amount grid {spec!r}: amounts must increase")
    return amounts


def default_amounts(
    amount: float | None, msrp: float | None = None, points: int = DEFAULT_POINTS
) -> list[float]:
    """The dashboard's what-if range: up to twice the asked amount, a tenth
    of the vehicle's price, or $1,000, whichever is largest, rounded up."""
    upper = max(2 * (amount or 0.0), 0.1 * (msrp or 0.0), 1000.0)
    magnitude = 10 ** math.floor(math.log10(upper))
    upper = math.ceil(upper / (magnitude / 2)) * (magnitude / 2)
    return [round(upper * i / points, 2) for i in range(1, points + 1)]


def _value(answer: Mapping[str, Any], name: str) -> float | None:
    v = answer.get(name)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _at(answer: Mapping[str, Any], amount: float) -> dict[str, Any]:
    return {
        "amount": amount,
        "incremental_profit": _value(answer, "incremental_profit"),
        "roi": _value(answer, "roi"),
        "roi_lower": _value(answer, "roi_lower"),
        "roi_upper": _value(answer, "roi_upper"),
        "prob_pays_back": _value(answer, "prob_pays_back"),
        "incentive_cost": _value(answer, "incentive_cost"),
    }


def amount_decisions(
    amounts: Sequence[float], answers: Sequence[Mapping[str, Any]], min_prob: float = DEFAULT_MIN_PROB
) -> dict[str, Any]:
    """The three amounts of the module docstring from the served answers at
    ``amounts`` (increasing). An answer without a ROI (no incentive cost) is
    left out. Keys:

    ``pays_back``      whether any amount of the grid pays back (ROI > 0)
    ``break_even``     ``{"amount", "kind"}``: the amount above which the
                       incentive no longer pays back (ROI crosses 0 going up,
                       interpolated between grid points; the last crossing
                       when the curve crosses more than once), kind
                       ``crossing``; ``above_grid`` (amount None) when it still
                       pays back at the largest amount; ``none`` when it pays
                       back nowhere
    ``best_profit``    the grid point of the largest expected incremental
                       profit, with its ROI and interval; None when no amount
                       makes a profit
    ``safe``           the largest amount with ``prob_pays_back >= min_prob``,
                       with its profit and ROI; None when none qualifies
    """
    if len(amounts) != len(answers):
        raise ValueError(f"{len(amounts)} amounts but {len(answers)} answers")
    if not 0 < min_prob < 1:
        raise ValueError(f"min_prob must be in (0, 1), got {min_prob}")
    rows = [_at(a, float(x)) for x, a in zip(amounts, answers, strict=True)]
    rows = [r for r in rows if r["roi"] is not None]
    if any(b["amount"] <= a["amount"] for a, b in pairwise(rows)):
        raise ValueError("amounts must increase")
    out: dict[str, Any] = {"min_prob_pays_back": min_prob, "points": len(rows)}
    paying = [r for r in rows if r["roi"] > 0]
    out["pays_back"] = bool(paying)

    if not paying:
        out["break_even"] = {"amount": None, "kind": "none"}
    elif rows[-1]["roi"] > 0:
        out["break_even"] = {"amount": None, "kind": "above_grid"}
    else:
        # the last step from ROI > 0 to ROI <= 0
        i = max(k for k in range(len(rows) - 1) if rows[k]["roi"] > 0 and rows[k + 1]["roi"] <= 0)
        a, b = rows[i], rows[i + 1]
        t = a["roi"] / (a["roi"] - b["roi"])
        out["break_even"] = {
            "amount": round(a["amount"] + t * (b["amount"] - a["amount"]), 2),
            "kind": "crossing",
        }

    profits = [r for r in rows if r["incremental_profit"] is not None]
    best = max(profits, key=lambda r: r["incremental_profit"], default=None)
    out["best_profit"] = best if best is not None and best["incremental_profit"] > 0 else None

    safe = [r for r in rows if r["prob_pays_back"] is not None and r["prob_pays_back"] >= min_prob]
    out["safe"] = safe[-1] if safe else None
    return out
