"""The truth of any scenario (autoroi/source/truth.py): it reproduces the truth
file where a program ran alone, continues the base demand past the simulated
weeks as the inventory process expects, caps its pull-forward as the simulator
caps dips, and refuses bad scenarios by field."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from autoroi.errors import ConfigError
from autoroi.source import simulator as S
from autoroi.source.truth import (
    MAX_WEEKS_AHEAD,
    SCENARIO_FIELDS,
    TRUTH_FIELDS,
    _expected_inventory,
    score_scenarios,
    truth_world,
)

SEED, SALES = 5, 40_000


@functools.lru_cache(maxsize=1)
def _world_and_truth():
    return truth_world(SEED, sales_rows=SALES), S.simulate(SEED, sales_rows=SALES).truth.to_pandas()


def scenario(**kw) -> pd.DataFrame:
    row = {"region": "Northeast", "vehicle_model": "Pico", "week_start": "2026-11-23",
           "incentive_type": "apr_subsidy", "incentive_amount": 1500.0}  # fmt: skip
    row.update(kw)
    return pd.DataFrame([row])


def test_a_program_that_ran_alone_gets_its_truth_file_numbers():
    tw, truth = _world_and_truth()
    got = score_scenarios(tw, truth[list(SCENARIO_FIELDS)])
    assert list(got.columns) == list(TRUTH_FIELDS) and len(got) == len(truth)
    # alone in its cell-week, no other program's dip in it, its own dips under the cap
    alone = truth.groupby(["region", "vehicle_model", "week_start"])["program_id"].transform("size") == 1
    alone &= np.isclose(truth["units_without"], got["units_without"], rtol=1e-12)
    phi = truth["incentive_type"].map({t: s.pull_forward for t, s in S.INCENTIVES.items()})
    alone &= np.isclose(truth["pull_forward_units"], phi * (truth["units_with"] - truth["units_without"]))
    assert alone.sum() > 500
    for col in ("units_with", "units_without", "pull_forward_units", "incremental_units",
                "units_under_incentive", "incentive_cost", "incremental_profit", "roi"):  # fmt: skip
        np.testing.assert_allclose(got.loc[alone, col], truth.loc[alone, col], rtol=1e-9, err_msg=col)
    # and where programs overlapped, the isolated scenario is a different question
    assert not np.allclose(got.loc[~alone, "units_without"], truth.loc[~alone, "units_without"])


def test_the_base_demand_continues_past_the_simulated_weeks():
    tw, _ = _world_and_truth()
    base = tw.base(S.N_WEEKS + 30)
    np.testing.assert_array_equal(base[:, :, : S.N_WEEKS], tw.world.base * tw.factor)
    # no jump at the horizon beyond the season's own week-to-week moves
    step = base[:, :, S.N_WEEKS] / base[:, :, S.N_WEEKS - 1]
    assert step.min() > 0.8 and step.max() < 1.25
    assert np.all(base > 0)


def test_the_expected_inventory_is_the_mean_of_the_ar1_run_forward():
    rng = np.random.default_rng(0)
    x0 = np.array([[-0.5, 0.0, 0.3, 0.45]])
    steps = np.array([1, 3, 10, 40])
    want = _expected_inventory(x0, steps)[0]
    x = np.repeat(x0[0][None, :], 200_000, axis=0)
    got = np.empty((4, 4))
    for h in range(1, 41):
        x = S.INVENTORY_RHO * x + rng.normal(0, S.INVENTORY_SIGMA, x.shape)
        if h in steps:
            got[list(steps).index(h)] = np.clip(np.exp(x), *S.INVENTORY_CLIP).mean(axis=0)
    np.testing.assert_allclose(got.T, want, rtol=2e-3)  # want: starts x steps
    # far ahead every start forgets itself
    far = _expected_inventory(x0, np.array([400]))[0, :, 0]
    assert np.ptp(far) < 1e-6


def test_returns_diminish_and_the_pull_forward_is_capped(monkeypatch):
    tw, _ = _world_and_truth()
    amounts = [250.0, 1000.0, 2000.0, 4000.0, 8000.0]
    got = score_scenarios(tw, pd.concat([scenario(incentive_amount=a) for a in amounts], ignore_index=True))
    inc = got["incremental_units"].to_numpy()
    assert np.all(np.diff(inc) > 0) and np.all(np.diff(np.diff(inc) / np.diff(amounts)) < 0)
    np.testing.assert_allclose(got["incremental_units"], got["units_with"] - got["units_without"]
                               - got["pull_forward_units"])  # fmt: skip
    np.testing.assert_allclose(
        got["roi"], (got["incremental_profit"] - got["incentive_cost"]) / got["incentive_cost"]
    )
    # one scenario's dips stay under half a week's base with the simulator's
    # specs; with a lower cap they reach it, and the pull-forward stops there
    monkeypatch.setattr(S, "DIP_CAP", 0.05)
    capped = score_scenarios(tw, scenario(incentive_amount=4000.0))
    w = (pd.Timestamp("2026-11-23").date() - S.START_DATE).days // 7
    r, m = [x[0] for x in S.REGIONS].index("Northeast"), [x[0] for x in S.MODELS].index("Pico")
    cap = 0.05 * tw.base(w + 8)[r, m, w + 1 : w + 1 + S.PULL_FORWARD_WEEKS]
    lost = 0.25 * (capped["units_with"] - capped["units_without"]).iloc[0] * S.PULL_FORWARD_KERNEL
    assert (lost > cap).any() and (lost < cap).any(), "the case must reach the cap in some weeks only"
    assert capped["pull_forward_units"].iloc[0] == pytest.approx(np.minimum(lost, cap).sum())
    assert capped["pull_forward_units"].iloc[0] < got["pull_forward_units"].iloc[3]  # the same 4000


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "Atlantis"}, "region"),
        ({"vehicle_model": "Model T"}, "vehicle_model"),
        ({"incentive_type": "none"}, "incentive_type"),
        ({"week_start": "2026-11-24"}, "week_start"),
        ({"week_start": "2023-11-20"}, "week_start"),
        ({"week_start": "not a date"}, "week_start"),
        (
            {
                "week_start": str(
                    S.START_DATE + pd.Timedelta(weeks=S.N_WEEKS + MAX_WEEKS_AHEAD).to_pytimedelta()
                )
            },
            "week_start",
        ),
        ({"incentive_amount": 0.0}, "incentive_amount"),
        ({"incentive_amount": float("nan")}, "incentive_amount"),
    ],
)
def test_a_bad_scenario_is_refused_by_field(change, field):
    tw, _ = _world_and_truth()
    with pytest.raises(ConfigError, match=field):
        score_scenarios(tw, scenario(**change))


def test_a_missing_column_is_named():
    tw, _ = _world_and_truth()
    with pytest.raises(ConfigError, match="incentive_amount"):
        score_scenarios(tw, scenario().drop(columns="incentive_amount"))
