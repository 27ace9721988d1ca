"""The world after the generated weeks (``autoroi.source.continuation``):
its expectation agrees with the truth scorer, and each shock changes it as
documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoroi.errors import ConfigError
from autoroi.source import continuation as C
from autoroi.source import simulator as S
from autoroi.source.truth import score_scenarios, truth_world

SEED, ROWS = 5, 40_000
WEEK = S.N_WEEKS + 4  # a week after the simulated ones


@pytest.fixture(scope="module")
def tw():
    return truth_world(SEED, sales_rows=ROWS)


def _models(extra: bool = False) -> pd.DataFrame:
    tw_msrp = truth_world(SEED, sales_rows=ROWS).world.msrp
    rows = [{"model_id": i + 1, "segment": m[1], "msrp": float(tw_msrp[i])} for i, m in enumerate(S.MODELS)]
    if extra:
        rows.append({"model_id": len(S.MODELS) + 1, "segment": C.NEW_MODEL[1], "msrp": C.NEW_MODEL[2]})
    return pd.DataFrame(rows)


def _dealers(tw) -> dict[int, int]:
    return {i + 1: int(r) for i, r in enumerate(tw.world.dealer_region)}


def _offer(tw, ptype: str, amount: float) -> pd.DataFrame:
    start = S.START_DAY + 7 * (WEEK - 1)
    return pd.DataFrame(
        [
            {
                "program_id": 1,
                "ptype": S.INCENTIVE_TYPES.index(ptype),
                "amount": amount,
                "start": start,
                "end": start + 7 * 3 - 1,
                "region": 2,
                "model_id": 4,
            }
        ]
    )


def _expected(tw, offers, shocks=(), extra=False, seed=0) -> C.NewSales:
    days = S.START_DAY + 7 * WEEK + np.arange(7)
    return C.draw_sales(np.random.default_rng(seed), tw, shocks, days, _models(extra), _dealers(tw), offers)


NONE = pd.DataFrame(columns=["program_id", "ptype", "amount", "start", "end", "region", "model_id"])


def test_a_lone_program_adds_what_the_truth_scorer_says(tw):
    base = _expected(tw, NONE).expected
    with_program = _expected(tw, _offer(tw, "cash_rebate", 1500.0)).expected
    week = S.START_DATE + pd.Timedelta(weeks=WEEK)
    truth = score_scenarios(
        tw,
        pd.DataFrame(
            [
                {
                    "region": S.REGIONS[2][0],
                    "vehicle_model": S.MODELS[3][0],
                    "week_start": week.isoformat(),
                    "incentive_type": "cash_rebate",
                    "incentive_amount": 1500.0,
                }
            ]
        ),
    ).iloc[0]
    assert truth["units_with"] > truth["units_without"]
    assert with_program - base == pytest.approx(truth["units_with"] - truth["units_without"], rel=1e-9)
    # the base of the whole world in that week: the scorer's continuation
    assert base == pytest.approx(tw.base(WEEK + 1)[:, :, WEEK].sum(), rel=1e-9)


def test_sales_are_drawn_around_the_expectation_and_take_the_program(tw):
    new = _expected(tw, _offer(tw, "cash_rebate", 1500.0))
    assert abs(len(new.day) - new.expected) < 5 * np.sqrt(new.expected)
    under = new.program_id == 1
    assert under.any()
    assert set(new.model_id[under]) == {4}
    assert np.all(np.isnan(new.amount[~under])) and np.all(new.amount[under] == 1500.0)


def test_demand_drop_lowers_one_region_by_its_share(tw):
    days0 = S.START_DAY + 7 * WEEK
    region = S.REGIONS[1][0]
    before = _expected(tw, NONE).expected
    shocked = _expected(tw, NONE, (C.Shock("demand_drop", days0, region=region),)).expected
    share = tw.base(WEEK + 1)[1, :, WEEK].sum() / tw.base(WEEK + 1)[:, :, WEEK].sum()
    assert before - shocked == pytest.approx(before * share * (1 - C.DEMAND_DROP), rel=1e-9)
    later = _expected(tw, NONE, (C.Shock("demand_drop", days0 + 7, region=region),)).expected
    assert later == pytest.approx(before)  # not before its first day


def test_lift_change_doubles_the_type_lift(tw):
    days0 = S.START_DAY + 7 * WEEK
    offers = _offer(tw, "apr_subsidy", 2000.0)
    base = _expected(tw, NONE).expected
    lift = _expected(tw, offers).expected - base
    shock = C.Shock("lift_change", days0, incentive_type="apr_subsidy")
    assert _expected(tw, offers, (shock,)).expected - base == pytest.approx(C.LIFT_CHANGE * lift, rel=1e-9)
    other = C.Shock("lift_change", days0, incentive_type="loyalty")
    assert _expected(tw, offers, (other,)).expected - base == pytest.approx(lift, rel=1e-9)


def test_a_new_model_sells_like_its_segment(tw):
    new = _expected(tw, NONE, extra=True)
    new_id = len(S.MODELS) + 1
    sold = int((new.model_id == new_id).sum())
    peers = [i for i, m in enumerate(S.MODELS) if m[1] == C.NEW_MODEL[1]]
    expected_new = tw.base(WEEK + 1)[:, peers, WEEK].sum(axis=0).mean()
    assert new.expected - _expected(tw, NONE).expected == pytest.approx(expected_new, rel=1e-9)
    assert abs(sold - expected_new) < 5 * np.sqrt(expected_new) + 2


def test_choose_shock_names_what_it_hits_and_refuses_unknown_kinds():
    rng = np.random.default_rng(1)
    assert C.choose_shock("demand_drop", rng, 100).region in {r[0] for r in S.REGIONS}
    assert C.choose_shock("lift_change", rng, 100, ("conquest",)).incentive_type == "conquest"
    assert C.choose_shock("new_model", rng, 100).vehicle_model == C.NEW_MODEL[0]
    assert "falls 30%" in C.Shock("demand_drop", 100, region="Pacific").describe()
    with pytest.raises(ConfigError, match="unknown 'meteor'"):
        C.choose_shock("meteor", rng, 100)
