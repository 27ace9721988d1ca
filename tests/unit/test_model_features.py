import datetime as dt

import numpy as np
import pandas as pd
import pytest

from autoroi.model import features as F
from autoroi.model.preprocess import OOV_INDEX, Preprocessor
from tests.model_tables import simulated_master

MONDAY = dt.date(2024, 1, 1)


def tiny_master(weeks: int = 60) -> pd.DataFrame:
    rows = []
    for cell, (region, model, units0) in enumerate((("North", "Alpha", 10), ("South", "Beta", 20))):
        for w in range(weeks):
            row = {
                F.WEEK: MONDAY + dt.timedelta(weeks=w),
                F.CELL_LEVEL: F.FINEST_LEVEL,
                F.REGION: region,
                F.VEHICLE_MODEL: model,
                F.SEGMENT: "suv",
                F.SUPER_REGION: "All",
                F.UNITS: units0 + w,
                F.DEALER_COUNT: 5 + cell,
                F.MSRP: 40_000.0,
                F.UNIT_MARGIN: 3_000.0,
                F.MASTER_AMOUNT: 0.0,
            }
            for t in F.INDICATORS.values():
                row[t] = 0
            if w in (10, 11):
                row[F.INDICATORS["cash_rebate"]] = 1
                row[F.INDICATORS["loyalty"]] = 1
                row[F.MASTER_AMOUNT] = 2_000.0
            rows.append(row)
    return pd.DataFrame(rows)


def scenario(**kw):
    base = {
        F.REGION: "North",
        F.VEHICLE_MODEL: "Alpha",
        F.WEEK: "2024-03-04",
        F.INCENTIVE_TYPE: "cash_rebate",
        F.INCENTIVE_AMOUNT: 1500,
    }
    return pd.DataFrame([{**base, **kw}])


def test_history_features_look_backwards_only():
    m = tiny_master()
    ctx = F.build_context(m)
    north = ctx[ctx[F.REGION] == "North"].reset_index(drop=True)
    # units are 10 + w: lag k at week w is 10 + w - k
    w = 20
    assert north.loc[w, "units_lag_1"] == 10 + w - 1
    assert north.loc[w, "units_lag_4"] == 10 + w - 4
    assert north.loc[w, "units_mean_4"] == pytest.approx(np.mean([10 + w - k for k in range(1, 5)]))
    assert north.loc[w, F.HAS_LAG_52] == 0.0 and north.loc[55, F.HAS_LAG_52] == 1.0
    assert north.loc[55, "units_lag_52"] == 10 + 3
    # changing a week's units changes no feature of that week or before
    m2 = m.copy()
    m2.loc[(m2[F.REGION] == "North") & (m2[F.WEEK] == MONDAY + dt.timedelta(weeks=w)), F.UNITS] = 999
    ctx2 = F.build_context(m2)
    hist = list(F.DEFAULT_SPEC.history)
    pd.testing.assert_frame_equal(
        ctx.loc[ctx[F.WEEK_INDEX] <= ctx[F.WEEK_INDEX].min() + w, hist],
        ctx2.loc[ctx2[F.WEEK_INDEX] <= ctx2[F.WEEK_INDEX].min() + w, hist],
    )
    # the week after the last is in the context, its lag 1 the last observed week
    last = north.iloc[-1]
    assert last[F.WEEK] == pd.Timestamp(MONDAY + dt.timedelta(weeks=60))
    assert last["units_lag_1"] == 10 + 59


def test_gaps_are_missing_not_zero():
    m = tiny_master()
    m = m[~((m[F.REGION] == "North") & (m[F.WEEK] == MONDAY + dt.timedelta(weeks=30)))]
    ctx = F.build_context(m)
    north = ctx[ctx[F.REGION] == "North"].reset_index(drop=True)
    assert len(north) == 61  # the grid is complete again
    # lag 1 of week 31 falls back to the mean of the earlier weeks, not to 0
    assert north.loc[31, "units_lag_1"] == pytest.approx(np.mean([10 + k for k in range(30)]))
    assert north.loc[31, "units_mean_4"] == pytest.approx(np.mean([10 + 27, 10 + 28, 10 + 29]))


def test_calendar_features_from_the_date():
    weeks = pd.Series(pd.to_datetime(["2024-05-27", "2024-03-25", "2024-04-08", "2024-11-25", "2024-12-23"]))
    cal = F.calendar_features(weeks)
    # Memorial Day, -, -, Black Friday, 26 December
    assert cal["holiday_week"].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert cal["quarter_end_week"].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert cal["month_end_week"].tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert np.allclose(cal["week_sin"] ** 2 + cal["week_cos"] ** 2, 1.0)


def test_scenario_gets_the_context_of_its_cell_and_week():
    m = tiny_master()
    ctx = F.build_context(m)
    train = F.training_frame(m)
    row = train[(train[F.REGION] == "North") & (train[F.WEEK] == pd.Timestamp("2024-03-04"))].iloc[0]
    feats = F.scenario_features(F.check_scenarios(scenario()), ctx)
    for c in (*F.DEFAULT_SPEC.numeric, F.SEGMENT):
        assert feats[c].iloc[0] == row[c], c
    assert feats[F.INCENTIVE_DEPTH].iloc[0] == pytest.approx(1500 / 40_000)
    assert feats[F.TREAT["cash_rebate"]].iloc[0] == 1.0 and feats[F.DEPTH["cash_rebate"]].iloc[0] > 0
    assert feats[F.TREAT["loyalty"]].iloc[0] == 0.0
    # later than the master: the freshest context; earlier: the first week's
    late = F.scenario_features(F.check_scenarios(scenario(week_start="2030-01-07")), ctx)
    assert late["units_lag_1"].iloc[0] == 10 + 59
    assert late["trend_years"].iloc[0] > row["trend_years"]  # calendar from the scenario's own date
    early = F.scenario_features(F.check_scenarios(scenario(week_start="2020-01-06")), ctx)
    assert early["units_lag_1"].iloc[0] == 0.0


def test_training_rows_keep_every_active_type_and_the_dominant_one():
    train = F.training_frame(tiny_master())
    week10 = train[
        (train[F.REGION] == "North") & (train[F.WEEK] == pd.Timestamp(MONDAY + dt.timedelta(weeks=10)))
    ]
    r = week10.iloc[0]
    assert r[F.INCENTIVE_TYPE] == "cash_rebate"  # first in DOMINANCE_ORDER
    assert r[F.TREAT["cash_rebate"]] == 1.0 and r[F.TREAT["loyalty"]] == 1.0
    assert r[F.DEPTH["loyalty"]] == pytest.approx(2000 / 40_000)
    none = train[train[F.INCENTIVE_TYPE] == F.NO_INCENTIVE]
    assert (none[F.INCENTIVE_AMOUNT] == 0).all() and (none[list(F.TREAT.values())] == 0).all().all()


def test_baseline_is_the_same_row_without_incentive():
    feats = F.training_frame(tiny_master())
    base = F.without_incentive(feats)
    assert (base[F.INCENTIVE_TYPE] == F.NO_INCENTIVE).all()
    assert (base[[*F.TREAT.values(), *F.DEPTH.values(), F.INCENTIVE_AMOUNT]] == 0).all().all()
    same = [c for c in F.DEFAULT_SPEC.numeric]
    pd.testing.assert_frame_equal(base[same], feats[same])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({F.INCENTIVE_AMOUNT: -5}, F.INCENTIVE_AMOUNT),
        ({F.INCENTIVE_AMOUNT: float("nan")}, F.INCENTIVE_AMOUNT),
        ({F.INCENTIVE_AMOUNT: float("inf")}, F.INCENTIVE_AMOUNT),
        ({F.INCENTIVE_AMOUNT: "1500"}, F.INCENTIVE_AMOUNT),
        ({F.INCENTIVE_AMOUNT: True}, F.INCENTIVE_AMOUNT),
        ({F.INCENTIVE_TYPE: "free_lunch"}, F.INCENTIVE_TYPE),
        ({F.INCENTIVE_TYPE: "none"}, F.INCENTIVE_AMOUNT),  # none with an amount
        ({F.WEEK: "2024-03-05"}, F.WEEK),  # a Tuesday
        ({F.WEEK: "next week"}, F.WEEK),
        ({F.REGION: ""}, F.REGION),
        ({F.VEHICLE_MODEL: 7}, F.VEHICLE_MODEL),
    ],
)
def test_bad_scenarios_name_the_field(change, field):
    with pytest.raises(F.ScenarioError) as e:
        F.check_scenarios(scenario(**change))
    assert e.value.field == field


def test_missing_field_and_extra_fields():
    with pytest.raises(F.ScenarioError) as e:
        F.check_scenarios(scenario().drop(columns=[F.WEEK]))
    assert e.value.field == F.WEEK
    checked = F.check_scenarios(scenario().assign(units_lag_1=1e9, incentive_loyalty=1))
    assert list(checked.columns) == list(F.SCENARIO_FIELDS)  # nothing else gets through


def test_unknown_cells_name_the_field():
    ctx = F.build_context(tiny_master())
    with pytest.raises(F.ScenarioError) as e:
        F.scenario_features(F.check_scenarios(scenario(region="Atlantis")), ctx)
    assert e.value.field == F.REGION
    with pytest.raises(F.ScenarioError) as e:
        F.scenario_features(F.check_scenarios(scenario(vehicle_model="Zeppelin")), ctx)
    assert e.value.field == F.VEHICLE_MODEL


def test_cells_merged_by_k_anonymity_fall_back_to_the_coarser_cell():
    m = tiny_master()
    coarse = m[m[F.REGION] == "South"].copy()
    coarse[F.CELL_LEVEL] = "super_region_model"
    coarse[F.REGION] = "All"  # the super region
    coarse[F.VEHICLE_MODEL] = "Alpha"
    fine = m[m[F.REGION] == "North"].copy()
    fine[F.SUPER_REGION] = "All"
    # "East" region known only through a region_segment row
    seg = m[m[F.REGION] == "South"].copy()
    seg[F.CELL_LEVEL], seg[F.REGION], seg[F.VEHICLE_MODEL], seg[F.SUPER_REGION] = (
        "region_segment",
        "East",
        "suv",
        "All",
    )
    ctx = F.build_context(pd.concat([fine, coarse, seg]))
    feats = F.scenario_features(F.check_scenarios(scenario(region="North")), ctx)
    assert feats["context_region"].iloc[0] == "North" and feats[F.CELL_LEVEL].iloc[0] == F.FINEST_LEVEL
    feats = F.scenario_features(F.check_scenarios(scenario(region="East")), ctx)
    assert (feats["context_region"].iloc[0], feats["context_vehicle_model"].iloc[0]) == ("All", "Alpha")
    assert feats[F.CELL_LEVEL].iloc[0] == "super_region_model"


def test_out_of_vocabulary_values_map_to_the_oov_bucket():
    train = F.training_frame(tiny_master())
    prep = Preprocessor.fit(train, F.DEFAULT_SPEC)
    assert prep.vocab_sizes[F.REGION] == 3  # North, South + OOV
    codes = prep.encode(F.REGION, pd.Series(["North", "Atlantis", "South"]))
    assert codes[1] == OOV_INDEX and codes[0] != OOV_INDEX and codes[2] != OOV_INDEX
    x = prep.transform(train.head(5))
    assert x["numeric"].shape == (5, len(F.DEFAULT_SPEC.numeric)) and x["numeric"].dtype == np.float32
    assert x["treat"].shape == (5, len(F.DEFAULT_SPEC.treatments))
    assert Preprocessor.from_dict(prep.to_dict()).to_dict() == prep.to_dict()


def test_take_rates_from_the_simulated_master():
    master, truth = simulated_master()
    frame = F.training_frame(master)
    rates = F.estimate_take_rates(frame)
    assert set(rates) == set(F.INCENTIVE_TYPES)
    t = truth.assign(rate=truth["units_under_incentive"] / truth["units_with"])
    true = t.groupby("incentive_type")["rate"].mean()
    for k, v in rates.items():
        assert 0 < v <= 1
        assert abs(v - true[k]) < 0.2, (k, v, true[k])
    assert F.take_rate_of(pd.Series(["loyalty", "none"]), {"loyalty": 0.25})[0] == 0.25
    assert F.estimate_take_rates(frame.drop(columns=[F.MASTER_SHARE])) == {}


def test_incentive_history_of_the_weeks_before():
    # tiny_master: cash rebate and loyalty at 2,000 on a 40,000 MSRP in weeks 10 and 11
    # (no offer columns: each type at the mean amount, depth 0.05; 0.1 summed)
    ctx = F.build_context(tiny_master())
    north = ctx[ctx[F.REGION] == "North"].reset_index(drop=True)
    assert north.loc[10, "incentive_lag_1"] == 0.0  # the week itself is not history
    assert north.loc[11, "incentive_lag_1"] == pytest.approx(0.1)
    assert north.loc[12, "incentive_lag_1"] == pytest.approx(0.1) and north.loc[13, "incentive_lag_1"] == 0.0
    assert north.loc[12, "incentive_mean_4"] == pytest.approx(0.05)  # weeks 8..11
    assert north.loc[16, "incentive_mean_4"] == 0.0
    since = north["weeks_since_incentive"]
    assert since[5] == since[10] == F.WEEKS_SINCE_CAP  # none before: the cap
    assert (since[11], since[12], since[13]) == (1.0, 1.0, 2.0)
    assert since[40] == F.WEEKS_SINCE_CAP  # long ago: the cap
    # changing a week's incentives changes no feature of that week or before
    m = tiny_master()
    week30 = (m[F.REGION] == "North") & (m[F.WEEK] == MONDAY + dt.timedelta(weeks=30))
    m.loc[week30, [F.INDICATORS["apr_subsidy"], F.MASTER_AMOUNT]] = [1, 1_000.0]
    ctx2 = F.build_context(m)
    cols = list(F.INCENTIVE_HISTORY)
    upto = ctx[F.WEEK_INDEX] <= ctx[F.WEEK_INDEX].min() + 30
    pd.testing.assert_frame_equal(ctx.loc[upto, cols], ctx2.loc[upto, cols])
    week31 = ctx2.loc[~upto & (ctx2[F.REGION] == "North")].iloc[0]
    assert week31["weeks_since_incentive"] == 1.0 and week31["incentive_lag_1"] == pytest.approx(
        1_000 / 40_000
    )


def test_last_year_windows():
    ctx = F.build_context(tiny_master())
    north = ctx[ctx[F.REGION] == "North"].reset_index(drop=True)  # units 10 + w
    assert north.loc[56, "units_ly_5"] == pytest.approx(np.mean([10 + k for k in range(2, 7)]))  # w-54..w-50
    assert north.loc[59, "units_mean_13_ly"] == pytest.approx(
        np.mean([10 + k for k in range(0, 7)])
    )  # w-65..w-53
    # no last year yet: the mean of the cell's earlier weeks, as for a missing lag
    assert north.loc[20, "units_ly_5"] == pytest.approx(np.mean([10 + k for k in range(20)]))
    assert (
        {"units_ly_5", "units_mean_13_ly"} <= set(F.DEFAULT_SPEC.history) <= set(F.DEFAULT_SPEC.log_columns)
    )


def test_harmonics_and_the_calendar_columns():
    cal = F.calendar_features(pd.Series(pd.to_datetime(["2024-01-01", "2024-07-01"])))
    for k in range(2, F.MAX_HARMONICS + 1):
        s, c = F.HARMONICS[k]
        assert np.allclose(cal[s] ** 2 + cal[c] ** 2, 1.0)
    angle = np.arctan2(cal["week_sin"], cal["week_cos"])
    assert np.allclose(cal["week_sin_3"], np.sin(3 * angle)) and np.allclose(
        cal["week_cos_2"], np.cos(2 * angle)
    )
    assert F.FeatureSpec(harmonics=1).calendar == F.CALENDAR
    assert F.DEFAULT_SPEC.calendar == (*F.CALENDAR, "week_sin_2", "week_cos_2", "week_sin_3", "week_cos_3")
    assert set(F.DEFAULT_SPEC.calendar) <= set(F.DEFAULT_SPEC.numeric)
    with pytest.raises(ValueError, match="harmonics"):
        F.FeatureSpec(harmonics=F.MAX_HARMONICS + 1)


def test_specs_saved_before_the_new_features_load_as_they_were():
    old = {
        "lags": [1, 2, 3, 4, 52],
        "windows": [4, 13],
        "categorical": [F.REGION, F.VEHICLE_MODEL, F.SEGMENT],
        "cell_numeric": [F.MSRP, F.UNIT_MARGIN],
        "treatments": list(F.INCENTIVE_TYPES),
        "extra": {},
    }
    spec = F.FeatureSpec.from_dict(old)
    assert (spec.harmonics, spec.incentive_history, spec.last_year) == (1, False, False)
    assert spec.numeric == (
        F.MSRP,
        F.UNIT_MARGIN,
        *F.CALENDAR,
        "units_lag_1",
        "units_lag_2",
        "units_lag_3",
        "units_lag_4",
        "units_lag_52",
        "units_mean_4",
        "units_mean_13",
        F.DEALERS_LAG,
        F.HAS_LAG_52,
    )
    assert F.FeatureSpec.from_dict(F.DEFAULT_SPEC.to_dict()) == F.DEFAULT_SPEC


def test_a_served_scenario_runs_on_top_of_the_programs_that_ran():
    # weeks 10 and 11 ran a cash rebate and a loyalty program at $2,000 (5 % of the MSRP)
    ctx = F.build_context(tiny_master())
    during = F.scenario_features(
        scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "apr_subsidy", F.INCENTIVE_AMOUNT: 1000}), ctx
    )
    assert during[F.WEEK].iloc[0] == pd.Timestamp("2024-03-11")  # week 10
    row = during.iloc[0]
    assert row[F.TREAT["apr_subsidy"]] == 1 and row[F.DEPTH["apr_subsidy"]] == pytest.approx(0.025)
    for t in ("cash_rebate", "loyalty"):  # the background
        assert row[F.TREAT[t]] == 1 and row[F.DEPTH[t]] == pytest.approx(0.05)
    assert row[F.TREAT["lease_subsidy"]] == 0
    # without the scenario, the background stays; without any incentive, nothing is on
    base = F.without_scenario(during).iloc[0]
    assert base[F.TREAT["apr_subsidy"]] == 0 and base[F.DEPTH["apr_subsidy"]] == 0
    assert base[F.TREAT["cash_rebate"]] == 1 and base[F.DEPTH["loyalty"]] == pytest.approx(0.05)
    assert (F.without_incentive(during)[[*F.TREAT.values(), *F.DEPTH.values()]] == 0).all().all()
    # a scenario of a type that ran replaces it at its own amount
    same = F.scenario_features(scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_AMOUNT: 400}), ctx).iloc[0]
    assert same[F.DEPTH["cash_rebate"]] == pytest.approx(0.01) and same[F.DEPTH["loyalty"]] > 0
    assert F.without_scenario(pd.DataFrame([same]))[F.TREAT["cash_rebate"]].iloc[0] == 0
    # a week without programs, and a model saved before backgrounds existed, get none
    quiet = F.scenario_features(scenario(), ctx).iloc[0]
    assert sum(quiet[F.TREAT[t]] for t in F.INCENTIVE_TYPES) == 1
    old = F.FeatureSpec(background=False)
    alone = F.scenario_features(scenario(**{F.WEEK: "2024-03-11"}), F.build_context(tiny_master(), old), old)
    assert sum(alone[F.TREAT[t]].iloc[0] for t in F.INCENTIVE_TYPES) == 1
    assert F.FeatureSpec.from_dict({}).background is False


def test_crowding_by_richer_programs_beside():
    ctx = F.build_context(tiny_master())
    feats = F.scenario_features(
        pd.concat(
            [
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "apr_subsidy", F.INCENTIVE_AMOUNT: 1000}),
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "apr_subsidy", F.INCENTIVE_AMOUNT: 3000}),
                scenario(**{F.INCENTIVE_TYPE: "apr_subsidy", F.INCENTIVE_AMOUNT: 1000}),
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "apr_subsidy", F.INCENTIVE_AMOUNT: 2000}),
            ]
        ),
        ctx,
    )
    got = F.crowding(feats, {"cash_rebate": 0.9, "loyalty": 0.25, "apr_subsidy": 0.4})
    # $1,000 under two $2,000 programs: 10 % x 75 % of the regular buyers are left to take it;
    # $3,000 pays more than both: all of them; a week where nothing else ran: all of them;
    # $2,000, a tie with both: either goes first with even odds
    np.testing.assert_allclose(got, [0.1 * 0.75, 1.0, 1.0, (1 - 0.45) * (1 - 0.125)])


def test_a_richer_program_of_the_same_type_goes_first():
    # week 10 (2024-03-11) ran a cash rebate and a loyalty program at 2,000 each
    ctx = F.build_context(tiny_master())
    feats = F.scenario_features(
        pd.concat(
            [
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "cash_rebate", F.INCENTIVE_AMOUNT: 1000}),
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "cash_rebate", F.INCENTIVE_AMOUNT: 2000}),
                scenario(**{F.WEEK: "2024-03-11", F.INCENTIVE_TYPE: "cash_rebate", F.INCENTIVE_AMOUNT: 2500}),
            ]
        ),
        ctx,
    )
    got = F.crowding(feats, {"cash_rebate": 0.9, "loyalty": 0.25})
    # $1,000 under the $2,000 cash rebate (90 % of the regular buyers) and the $2,000 loyalty (25 %);
    # at $2,000 the cash rebate that ran is the scenario itself: only the tie with loyalty
    np.testing.assert_allclose(got, [0.1 * 0.75, 1 - 0.125, 1.0])


def test_merged_weeks_filled_from_their_coarser_row():
    # North/Alpha's weeks 20-29 went into an "All"/"suv" row (super region x segment) with
    # South/Beta's: that row holds both cells' units; the cells' shares are their published means
    m = tiny_master()
    m[F.FINE_CELLS] = 1
    for t in F.INCENTIVE_TYPES:
        m[F.OFFERS[t]] = np.where(m[F.INDICATORS[t]] > 0, m[F.MASTER_AMOUNT], 0.0)
    merged = m[F.WEEK].isin([MONDAY + dt.timedelta(weeks=w) for w in range(20, 30)])
    coarse = (
        m[merged]
        .groupby(F.WEEK, as_index=False)
        .agg(**{F.UNITS: (F.UNITS, "sum"), F.MASTER_AMOUNT: (F.MASTER_AMOUNT, "max")})
        .assign(
            **{
                F.CELL_LEVEL: "super_region_segment",
                F.REGION: "All",
                F.VEHICLE_MODEL: "suv",
                F.SEGMENT: "suv",
                F.SUPER_REGION: "All",
                F.DEALER_COUNT: 11,
                F.MSRP: 40_000.0,
                F.UNIT_MARGIN: 3_000.0,
                F.FINE_CELLS: 2,
                **{c: 1 for c in F.INDICATORS.values()},  # some member had every type
            }
        )
    )
    published = pd.concat([m[~merged], coarse], ignore_index=True)
    # North/Alpha really ran an APR subsidy of 1,000 in week 25, nothing else
    week25 = pd.Timestamp(MONDAY + dt.timedelta(weeks=25))
    programs = pd.DataFrame(
        [("North", "Alpha", week25, "apr_subsidy", 1000.0)], columns=list(F.SCENARIO_FIELDS)
    )
    filled = F.fill_merged_weeks(published, F.program_activity(programs))
    new = filled[filled[F.FILLED_LEVEL] != ""]
    assert len(new) == 20 and set(new[F.CELL_LEVEL]) == {F.FINEST_LEVEL}
    assert set(zip(new[F.FILLED_REGION], new[F.FILLED_MODEL], strict=True)) == {("All", "suv")}
    # the filled weeks hold exactly the units the coarser rows published, split by the shares
    assert new[F.UNITS].sum() == pytest.approx(coarse[F.UNITS].sum())
    north = new[new[F.REGION] == "North"]
    south_mean = m[~merged & (m[F.REGION] == "South")][F.UNITS].mean()
    north_mean = m[~merged & (m[F.REGION] == "North")][F.UNITS].mean()
    share = north_mean / (north_mean + south_mean)
    np.testing.assert_allclose(north[F.UNITS], coarse[F.UNITS].to_numpy() * share)
    # the cell's own programs, not the coarser row's
    on = north[F.INDICATORS["apr_subsidy"]] > 0
    assert pd.to_datetime(north.loc[on, F.WEEK]).tolist() == [week25]
    assert north.loc[on, F.OFFERS["apr_subsidy"]].tolist() == [1000.0]
    assert (north[F.INDICATORS["cash_rebate"]] == 0).all()
    # the published rows are untouched, the coarser rows stay
    assert (filled[F.CELL_LEVEL] == "super_region_segment").sum() == len(coarse)
    assert len(filled) == len(published) + 20
    # served: a filled week answers from the cell's own row and names the row it came from
    feats = F.scenario_features(scenario(**{F.WEEK: week25.date().isoformat()}), F.build_context(filled))
    assert feats[F.CELL_LEVEL].iloc[0] == "super_region_segment"
    assert feats[F.CONTEXT_REGION].iloc[0] == "North"  # the network reads the cell's own embeddings
    region, model = F.reported_context(feats)
    assert (region[0], model[0]) == ("All", "suv")
    # without coarser rows there is nothing to fill
    plain = F.fill_merged_weeks(tiny_master().assign(**{F.FINE_CELLS: 1}), F.program_activity(programs))
    assert len(plain) == len(tiny_master()) and (plain[F.FILLED_LEVEL] == "").all()


def test_uptake_recovers_the_share_of_regular_buyers_who_take_it():
    # one type alone per row: units = base x (1 + lift); share = (extra + u x base) / units
    rng = np.random.default_rng(3)
    n = 400
    kind = np.where(np.arange(n) % 2 == 0, "cash_rebate", "conquest")
    base = rng.uniform(5, 50, n)
    lift = np.where(kind == "cash_rebate", 0.5, 0.1) * rng.uniform(0.5, 1.5, n)
    units = base * (1 + lift)
    true_u = {"cash_rebate": 0.9, "conquest": 0.14}
    u = np.array([true_u[k] for k in kind])
    frame = pd.DataFrame(
        {
            F.UNITS: units,
            F.MASTER_SHARE: (base * lift + u * base) / units,
            F.INCENTIVE_TYPE: kind,
            **{F.INDICATORS[t]: (kind == t).astype(float) for t in F.INCENTIVE_TYPES},
        }
    )
    got = F.estimate_uptake(frame, units, base)
    assert set(got) == {"cash_rebate", "conquest"}
    for t, v in true_u.items():
        assert got[t] == pytest.approx(v, abs=1e-9)
    # a model that sees no lift would charge every unit's share as uptake: the
    # estimate depends on the counterfactual, not only on the share
    naive = F.estimate_uptake(frame, units, units)
    assert naive["conquest"] > 0.2
    assert F.uptake_of(["conquest", "loyalty"], got)[1] == pytest.approx(np.mean(list(got.values())))
    assert F.estimate_uptake(frame.drop(columns=[F.MASTER_SHARE]), units, base) == {}


def test_ended_programs_carry_the_run_past_its_last_week():
    # tiny_master: cash rebate and loyalty at depth 0.05 in weeks 10 and 11 (a 2-week run: 0.1 summed)
    spec = F.FeatureSpec(ended=True)
    ctx = F.build_context(tiny_master(), spec)
    north = ctx[ctx[F.REGION] == "North"].reset_index(drop=True)
    near, far = F.ENDED["cash_rebate"]
    assert (north.loc[:11, [near, far]] == 0).all().all()  # nothing has ended during the run
    assert north.loc[12:14, near].tolist() == pytest.approx([0.1] * 3)  # 1-3 weeks after week 11
    assert north.loc[15:17, near].tolist() == [0.0] * 3
    assert north.loc[15:17, far].tolist() == pytest.approx([0.1] * 3)  # 4-6 weeks after
    assert (north.loc[18:, [near, far]] == 0).all().all()
    assert north[F.ENDED["loyalty"][0]].equals(north[near])
    assert (north[list(F.ENDED["apr_subsidy"])] == 0).all().all()  # a type that never ran
    # one cell's run never leaks into the next cell's first weeks
    m = tiny_master()
    last_north = (m[F.REGION] == "North") & (m[F.WEEK] == m[F.WEEK].max())
    m.loc[last_north, [F.INDICATORS["apr_subsidy"], F.MASTER_AMOUNT]] = [1, 2_000.0]
    south = F.build_context(m, spec).query(f"{F.REGION} == 'South'")
    assert (south[list(F.ENDED["apr_subsidy"])] == 0).all().all()
    # the features exist only when the spec asks; an older artifact's spec has none
    assert near not in F.build_context(tiny_master()).columns
    assert near in spec.numeric and near not in F.DEFAULT_SPEC.numeric
    assert F.FeatureSpec.from_dict({}).ended is False


def test_pull_forward_is_read_from_the_model():
    # a model whose ended columns take phi x the run's extra units from the weeks after:
    # the dip over the lift is phi, pooled over the types that ran
    spec = F.FeatureSpec(ended=True)
    frame = F.training_frame(tiny_master(), spec)
    lift, phi = 0.4, 0.25

    def predict(f: pd.DataFrame) -> np.ndarray:
        base = np.full(len(f), 20.0)
        units = base.copy()
        for t in ("cash_rebate", "loyalty"):
            units += base * lift * f[F.TREAT[t]].to_numpy()
            # each ended run of 2 weeks brought 2 x base x lift; its dip is spread over 6 weeks
            ended = f[list(F.ENDED[t])].to_numpy().sum(axis=1) / 0.1  # 1 per window the run is in
            units -= phi * 2 * base * lift * ended / 6
        return units

    got = F.estimate_pull_forward(predict, frame, spec)
    assert set(got) == {"cash_rebate", "loyalty"}
    assert got["cash_rebate"] == got["loyalty"] == pytest.approx(phi, rel=0.02)
    assert F.estimate_pull_forward(predict, frame, F.DEFAULT_SPEC) == {}  # no ended columns: nothing to read
    # the served incremental units are net of it; the cost still counts every buyer brought in
    net = F.pull_forward_of(["cash_rebate", "none"], got)
    assert net.tolist() == pytest.approx([phi, 0.0])
