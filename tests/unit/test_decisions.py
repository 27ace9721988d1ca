"""The amount search (autoroi.decisions) on curves with a known answer:
monotone, bending both ways, never paying back, paying back throughout; the
profit maximum inside and at the edge; the confidence rule; bad grids."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autoroi.decisions import AmountGridError, amount_decisions, default_amounts, parse_amount_grid


def answers(amounts: list[float], roi: Any, prob: Any = None, units: float = 10.0) -> list[dict[str, Any]]:
    """Answers whose ROI is roi(a); cost = units x a, profit = ROI x cost."""
    out = []
    for a in amounts:
        r = roi(a)
        cost = units * a
        out.append(
            {
                "roi": r,
                "roi_lower": r - 0.2,
                "roi_upper": r + 0.2,
                "prob_pays_back": prob(a) if prob else (1.0 if r > 0 else 0.0),
                "incentive_cost": cost,
                "incremental_profit": r * cost,
            }
        )
    return out


GRID = [100.0 * i for i in range(1, 41)]  # 100 .. 4000


def test_a_falling_roi_breaks_even_where_it_crosses_zero() -> None:
    d = amount_decisions(GRID, answers(GRID, lambda a: 1.0 - a / 2000.0))  # ROI 0 at 2000
    assert d["pays_back"] is True
    assert d["break_even"] == {"amount": pytest.approx(2000.0), "kind": "crossing"}
    # profit (1 - a/2000) x 10a is largest at a = 1000
    assert d["best_profit"]["amount"] == 1000.0
    assert d["best_profit"]["incremental_profit"] == pytest.approx(5000.0)
    assert d["best_profit"]["roi"] == pytest.approx(0.5)
    assert d["safe"]["amount"] == 1900.0  # the last amount with ROI > 0 (P = 1 there)


def test_the_crossing_is_interpolated_between_grid_points() -> None:
    d = amount_decisions(GRID, answers(GRID, lambda a: 1.0 - a / 2050.0))
    assert d["break_even"]["amount"] == pytest.approx(2050.0, abs=0.5)


def test_a_curve_that_bends_both_ways_gives_its_last_crossing() -> None:
    # loses at small amounts, pays back in the middle, loses again above 3000
    roi = lambda a: -0.3 if a < 800 else (0.4 if a < 3000 else -0.2)  # noqa: E731
    d = amount_decisions(GRID, answers(GRID, roi))
    assert d["pays_back"] is True
    assert d["break_even"]["kind"] == "crossing"
    assert 2900.0 < d["break_even"]["amount"] < 3000.0
    assert d["best_profit"]["amount"] == 2900.0  # 0.4 x 10 x 2900 is the largest profit
    assert d["safe"]["amount"] == 2900.0


def test_none_pays_back() -> None:
    d = amount_decisions(GRID, answers(GRID, lambda a: -0.1 - a / 10_000))
    assert d["pays_back"] is False
    assert d["break_even"] == {"amount": None, "kind": "none"}
    assert d["best_profit"] is None and d["safe"] is None


def test_paying_back_throughout_says_the_break_even_is_above_the_grid() -> None:
    d = amount_decisions(GRID, answers(GRID, lambda a: 2.0 - a / 10_000))
    assert d["break_even"] == {"amount": None, "kind": "above_grid"}
    assert d["best_profit"]["amount"] == 4000.0  # the edge: profit still grows
    assert d["safe"]["amount"] == 4000.0


def test_the_safe_amount_needs_the_chosen_confidence() -> None:
    prob = lambda a: 1.0 - a / 4000.0  # noqa: E731  (P falls from ~1 to 0)
    d = amount_decisions(GRID, answers(GRID, lambda a: 1.0, prob), min_prob=0.8)
    assert d["safe"]["amount"] == 800.0  # P(800) = 0.8, P(900) = 0.775
    assert (
        amount_decisions(GRID, answers(GRID, lambda a: 1.0, prob), min_prob=0.97)["safe"]["amount"] == 100.0
    )
    assert amount_decisions(GRID, answers(GRID, lambda a: 1.0, lambda a: 0.5), min_prob=0.8)["safe"] is None


def test_answers_without_a_roi_are_left_out_and_bad_input_is_refused() -> None:
    ans = answers(GRID, lambda a: 1.0 - a / 2000.0)
    ans[0] = {**ans[0], "roi": None}
    assert amount_decisions(GRID, ans)["points"] == 39
    with pytest.raises(ValueError, match="40 amounts but 39 answers"):
        amount_decisions(GRID, ans[1:])
    with pytest.raises(ValueError, match="min_prob"):
        amount_decisions(GRID, ans, min_prob=1.0)
    with pytest.raises(ValueError, match="increase"):
        amount_decisions(list(reversed(GRID)), ans)


def test_grids_parse_and_refuse() -> None:
    assert parse_amount_grid("500:1500:250") == [500.0, 750.0, 1000.0, 1250.0, 1500.0]
    assert parse_amount_grid("750, 1000,2000") == [750.0, 1000.0, 2000.0]
    for bad, why in (
        ("1000", "at least two"),
        ("1000:500:100", "HI > LO"),
        ("0,500", "positive"),
        ("500,400", "increase"),
        ("a:b:c", "not numbers"),
        ("1:100000:1", "at most 10,000"),
    ):
        with pytest.raises(AmountGridError, match=why):
            parse_amount_grid(bad)


def test_the_default_range_is_the_dashboards() -> None:
    grid = default_amounts(1500)
    assert len(grid) == 40 and grid[-1] == 3000.0 and grid[0] == 75.0
    assert default_amounts(None, msrp=42_000)[-1] == 4500.0  # a tenth of the price, rounded up
    assert default_amounts(None)[-1] == 1000.0
    assert all(math.isfinite(a) and a > 0 for a in grid)
