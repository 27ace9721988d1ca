"""The budget allocator (autoroi.planning) against brute force on small
cases: the budget holds, at most one option per group, the profit within the
stated guarantee of the optimum (and equal on concave curves), eligibility,
the roi objective, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autoroi.planning import allocate, plan_grid


def brute_force(group: np.ndarray, cost: np.ndarray, value: np.ndarray, budget: float) -> float:
    best = 0.0
    groups = np.unique(group)
    options = [[-1, *np.flatnonzero(group == g)] for g in groups]
    for pick in itertools.product(*options):
        chosen = [i for i in pick if i >= 0]
        c, v = cost[chosen].sum(), value[chosen].sum()
        if c <= budget + 1e-9 and v > best:
            best = v
    return float(best)


def random_case(rng: np.random.Generator, groups: int, per: int, concave: bool):
    group = np.repeat(np.arange(groups), per)
    amounts = np.tile(np.arange(1, per + 1, dtype=float), groups)
    if concave:  # profit = a x (1 - exp(-k x amount)) - amount-ish, concave in cost
        k = rng.uniform(0.2, 1.0, groups).repeat(per)
        scale = rng.uniform(5, 20, groups).repeat(per)
        value = scale * (1 - np.exp(-k * amounts)) - 0.5 * amounts
        cost = amounts * rng.uniform(0.8, 1.2, groups).repeat(per)
    else:
        value = rng.normal(3, 4, groups * per)
        cost = rng.uniform(0.5, 6, groups * per)
    return group, cost, value


@pytest.mark.parametrize("seed", range(12))
def test_the_greedy_is_within_its_guarantee_of_the_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    group, cost, value = random_case(rng, groups=4, per=4, concave=seed % 2 == 0)
    budget = float(rng.uniform(2, 20))
    plan = allocate(group, cost, value, budget)
    chosen = plan.choice[plan.choice >= 0]
    assert cost[chosen].sum() == pytest.approx(plan.cost) and plan.cost <= budget + 1e-9
    assert len(set(group[chosen])) == len(chosen)  # one option per group at most
    assert (value[chosen] > 0).all()
    optimum = brute_force(group, cost, value, budget)
    assert plan.value <= optimum + 1e-9
    assert plan.value >= optimum - max(value.max(), 0) - 1e-9  # the stated guarantee


def test_on_concave_curves_with_the_budget_on_a_hull_step_it_is_optimal() -> None:
    group = np.repeat([0, 1, 2], 3)
    cost = np.array([1.0, 2, 3] * 3)
    value = np.array([3.0, 5, 6, 2, 3.5, 4.5, 4, 6, 7])  # concave in each group
    for budget in (1, 2, 3, 4, 6, 9):
        plan = allocate(group, cost, value, budget)
        assert plan.value == pytest.approx(brute_force(group, cost, value, budget)), budget


def test_the_budget_holds_and_nothing_unprofitable_is_chosen() -> None:
    group = np.array([0, 0, 1, 1])
    cost = np.array([5.0, 10, 5, 10])
    value = np.array([-1.0, -2, 4, 6])
    plan = allocate(group, cost, value, budget=7)
    assert list(plan.choice) == [-1, 2] and plan.cost == 5 and plan.value == 4
    assert allocate(group, cost, value, budget=0).cost == 0
    plan = allocate(group, cost, value, budget=100)
    assert list(plan.choice) == [-1, 3]


def test_eligibility_masks_options() -> None:
    group = np.array([0, 0])
    cost = np.array([1.0, 2.0])
    value = np.array([1.0, 5.0])
    plan = allocate(group, cost, value, 10, eligible=np.array([True, False]))
    assert list(plan.choice) == [0]


def test_the_roi_objective_takes_the_best_returns_first() -> None:
    group = np.array([0, 0, 1, 2])
    cost = np.array([1.0, 4.0, 2.0, 3.0])
    value = np.array([1.0, 6.0, 5.0, 3.3])  # returns 1.0, 1.5, 2.5, 1.1
    plan = allocate(group, cost, value, budget=6, objective="roi")
    assert list(plan.choice) == [1, 2, -1]  # 2.5 then 1.5 (cost 6); 1.1 does not fit
    with pytest.raises(ValueError, match="objective"):
        allocate(group, cost, value, 6, objective="units")  # type: ignore[arg-type]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one entry per option"):
        allocate(np.array([0]), np.array([1.0, 2.0]), np.array([1.0]), 1)
    with pytest.raises(ValueError, match="budget"):
        allocate(np.array([0]), np.array([1.0]), np.array([1.0]), -5)


def test_the_grid_numbers_cell_weeks() -> None:
    grid = plan_grid([("A", "x"), ("B", "y")], ["2026-01-05", "2026-01-12"], ["cash_rebate"], [500.0, 1000.0])
    assert len(grid) == 8 and grid["group"].nunique() == 4
    assert set(grid.groupby("group")[["region", "week_start"]].nunique().max()) == {1}


def test_a_plan_request_too_large_to_score_is_refused_by_name() -> None:
    from autoroi.planning import MAX_OPTIONS, PlanRequestError, plan_request

    options = {
        "pairs": [[f"R{i}", f"M{j}"] for i in range(10) for j in range(20)],
        "incentive_types": ["a", "b"],
    }
    body = {"budget": 1e6, "from": "2026-01-05", "to": "2026-12-28", "amounts": "100:5000:100"}
    with pytest.raises(PlanRequestError) as e:  # 200 cells x 52 weeks x 2 types x 50 amounts
        plan_request(body, options)
    assert (
        e.value.field == "amounts" and f"{MAX_OPTIONS:,}" in e.value.reason and "1,040,000" in e.value.reason
    )
    assert len(plan_request({**body, "amounts": "100:2500:100"}, options).amounts) == 25  # 520,000: fine
