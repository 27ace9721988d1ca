"""The master table's transforms on small hand-made curated tables (a local Spark).

The scenario (k = 3): regions North and South (super-region East), Coast
(West); vehicle models Alpha and Beta (suv), Gamma (ev); dealers d1-d3 in
North, d4-d5 in South, d6 in Coast. One week per k-anonymity outcome:

====  ==========================================  =====================================
week  fine cells (dealers)                        published as
====  ==========================================  =====================================
A     North/Alpha {1,2,3}; North/Beta {1},        North/Alpha (region_model);
      South/Beta {4,5}                            East/Beta (super_region_model)
B     North/Alpha {1}; North/Beta {2,3}           North/suv (region_segment)
C     North/Alpha {1,2}; South/Beta {4}           East/suv (super_region_segment)
D     North/Alpha {1,2}; North/Beta {1,2};        suppressed: 4 dealer-cells, 2 distinct;
      Coast/Gamma {6}                             suppressed
F     North/Alpha {1,2,3}                         North/Alpha (region_model)
====  ==========================================  =====================================
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from autoroi.errors import MasterTableError
from autoroi.master import COLUMNS, build_master_table
from autoroi.master.calendar import HOLIDAY_RULES, add_calendar_features, us_holidays
from autoroi.master.transforms import (
    FINE_KEYS,
    add_lag_features,
    attach_dimensions,
    dealer_index,
    dealer_words,
    fine_cells,
    incentive_features,
    join_sales,
    k_anonymize,
    week_start,
    weekly_cells,
)
from autoroi.source.schema import INCENTIVE_TYPES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B, C, D, F = (date(2024, 1, 1) + timedelta(weeks=i) for i in range(5))  # Mondays
K = 3


def _d(x: str) -> Decimal:
    return Decimal(x)


def _sales() -> list[tuple]:
    rows = []
    # week A: North/Alpha d1 x2 (one under program 10), d2 (program 11, amount missing), d3
    rows += [("d1", 1, A, 10, _d("1500.00")), ("d1", 1, A + timedelta(1), None, None)]
    rows += [("d2", 1, A + timedelta(2), 11, None), ("d3", 1, A + timedelta(6), None, None)]
    rows += [("d1", 2, A, None, None), ("d4", 2, A, None, None), ("d5", 2, A, None, None)]
    rows += [("d1", 1, B, None, None), ("d2", 2, B, None, None), ("d3", 2, B, None, None)]
    rows += [("d1", 1, C, None, None), ("d2", 1, C, None, None), ("d4", 2, C, None, None)]
    rows += [("d1", 1, D, None, None), ("d2", 1, D, None, None), ("d1", 2, D, None, None)]
    rows += [("d2", 2, D, None, None), ("d6", 3, D + timedelta(2), None, None)]
    rows += [("d1", 1, F, None, None), ("d2", 1, F, None, None), ("d3", 1, F, None, None)]
    rows += [("d1", 1, F + timedelta(6), None, None)]  # Sunday: still week F
    rows += [("zz", 1, A, None, None)]  # an unknown dealer: no region, dropped
    return [(i + 1, *r) for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def curated(spark):
    return {
        "regions": spark.createDataFrame(
            [(1, "North", "East"), (2, "South", "East"), (3, "Coast", "West")],
            "region_id int, name string, super_region string",
        ),
        "dealers": spark.createDataFrame(
            [("d1", 1), ("d2", 1), ("d3", 1), ("d4", 2), ("d5", 2), ("d6", 3)],
            "dealer_id string, region_id int",
        ),
        "vehicle_models": spark.createDataFrame(
            [
                (1, "Alpha", "suv", _d("30000.00"), _d("3000.00")),
                (2, "Beta", "suv", _d("40000.00"), _d("5000.00")),
                (3, "Gamma", "ev", _d("50000.00"), _d("4000.00")),
            ],
            "model_id int, name string, segment string, msrp decimal(10,2), unit_margin decimal(10,2)",
        ),
        "incentive_programs": spark.createDataFrame(
            [
                (10, "cash_rebate", _d("1500.00"), A, date(2024, 1, 14)),
                (11, "apr_subsidy", _d("1000.00"), date(2024, 1, 3), date(2024, 1, 10)),
                (12, "cash_rebate", _d("2000.00"), B, date(2024, 1, 21)),
            ],
            "program_id int, incentive_type string, amount decimal(10,2), start_date date, end_date date",
        ),
        "program_eligibility": spark.createDataFrame(
            [(10, 1, 1), (10, 2, 2), (11, 1, 1), (12, 1, 1)],
            "program_id int, region_id int, model_id int",
        ),
        "sales": spark.createDataFrame(
            _sales(),
            "sale_id long, dealer_id string, model_id int, sale_date date, program_id int,"
            " incentive_amount decimal(10,2)",
        ),
    }


def _words(curated):
    return dealer_words(join_sales(curated["sales"], curated["dealers"], curated["incentive_programs"]))


@pytest.fixture(scope="module")
def fine(curated):
    cells = fine_cells(_words(curated))
    return attach_dimensions(cells, curated["regions"], curated["vehicle_models"]).cache()


@pytest.fixture(scope="module")
def master(spark, curated):
    table, report = build_master_table(spark, curated, K)
    return table.toArrow().to_pylist(), report


def _by(rows, *keys):
    return {tuple(r[k] for k in keys): r for r in rows}


# --------------------------------------------------------------------------- sales to fine cells


def test_week_start_is_the_monday_of_the_iso_week(spark):
    days = [date(2024, 12, 29) + timedelta(i) for i in range(9)]  # Sun 29 Dec .. Mon 6 Jan
    df = spark.createDataFrame([(d,) for d in days], "d date").select("d", week_start("d").alias("w"))
    got = {r["d"]: r["w"] for r in df.collect()}
    for d in days:
        assert got[d] == d - timedelta(d.weekday())
        assert got[d].weekday() == 0


def test_dealer_index_is_dense_per_region(curated):
    index = dealer_index(curated["dealers"]).collect()
    assert sorted((r["region_id"], r["dealer_key"]) for r in index) == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 3),
        (2, 4),
        (3, 5),
    ]
    assert len({r["dealer_hash"] for r in index}) == 6


def test_join_sales_region_week_and_incentive(curated):
    rows = join_sales(curated["sales"], curated["dealers"], curated["incentive_programs"]).collect()
    assert len(rows) == len(_sales()) - 1  # the unknown dealer's sale is dropped
    first = next(r for r in rows if r["program_id"] == 10)
    assert (first["incentive_cents"], first["incentive_type"], first["week_start"]) == (
        150_000,
        "cash_rebate",
        A,
    )
    assert (first["region_id"], first["dealer_key"]) == (1, 0)  # d1, North
    fallback = next(r for r in rows if r["program_id"] == 11)  # no amount on the sale: the program's
    assert (fallback["incentive_cents"], fallback["incentive_type"]) == (100_000, "apr_subsidy")
    assert all(
        r["incentive_cents"] is None and r["incentive_type"] is None for r in rows if r["program_id"] is None
    )
    assert {r["week_start"] for r in rows if r["sale_date"] == F + timedelta(6)} == {F}  # Sunday
    assert {(r["region_id"], r["dealer_key"]) for r in rows if r["model_id"] == 3} == {(3, 5)}


def test_dealer_words_and_fine_cells(curated, fine):
    words = _by(_words(curated).collect(), *FINE_KEYS, "word")
    na_a = words[(1, 1, A, 0)]  # dealers 0, 1, 2 in word 0
    assert (na_a["units"], na_a["incentive_units"], na_a["incentive_cents"]) == (4, 2, 250_000)
    assert na_a["dealer_bits"] == 0b111
    assert words[(2, 2, A, 0)]["dealer_bits"] == 0b11000  # d4, d5
    cells = _by(fine.collect(), "region", "vehicle_model", "week_start")
    assert len(cells) == 11
    na = cells[("North", "Alpha", A)]
    assert (na["units"], na["incentive_units"], na["incentive_cents"]) == (4, 2, 250_000)
    assert (na["dealers"], na["dealer_count"]) == ([0, 1, 2], 3)
    assert cells[("North", "Alpha", F)]["dealers"] == [0, 1, 2]
    assert cells[("North", "Alpha", F)]["units"] == 4
    assert (na["super_region"], na["segment"], na["msrp_cents"], na["margin_cents"]) == (
        "East",
        "suv",
        3_000_000,
        300_000,
    )
    # with k, only the cells below k carry their dealer set: only those can be merged
    with_k = _by(fine_cells(_words(curated), K).collect(), *FINE_KEYS)
    assert with_k[(1, 1, A)]["dealers"] is None and with_k[(1, 1, A)]["dealer_count"] == 3
    assert with_k[(1, 2, D)]["dealers"] == [0, 1]


def test_dealer_sets_beyond_one_word(spark):
    rows = [(1, 1, A, key, None, None) for key in (3, 64, 130, 130)]
    df = spark.createDataFrame(
        rows,
        "region_id int, model_id int, week_start date, dealer_key int, program_id int, incentive_cents long",
    )
    (cell,) = fine_cells(dealer_words(df)).collect()
    assert (cell["units"], cell["dealer_count"], cell["dealers"]) == (4, 3, [3, 64, 130])


def test_weekly_cells_one_row_per_region_model_week(fine):
    rows = weekly_cells(fine).collect()
    cells = _by(rows, "region", "vehicle_model", "week_start")
    assert len(cells) == len(rows) == 11
    na = cells[("North", "Alpha", A)]
    assert (na["cell_level"], na["units"], na["dealer_count"], na["fine_cells"]) == ("region_model", 4, 3, 1)
    assert na["msrp"] == 30_000.0 and na["unit_margin"] == 3_000.0
    assert na["incentive_share"] == 0.5
    assert na["incentive_amount"] == 1_250.0
    assert na["incentive_depth"] == pytest.approx(1_250 / 30_000)
    nb = cells[("North", "Beta", A)]
    assert (nb["incentive_units"], nb["incentive_amount"], nb["incentive_depth"]) == (0, 0.0, 0.0)


# --------------------------------------------------------------------------- features


def test_incentive_features_from_eligibility_and_dates(curated, fine):
    feats = _by(
        incentive_features(fine, curated["incentive_programs"], curated["program_eligibility"]).collect(),
        *FINE_KEYS,
    )
    na_a = feats[(1, 1, A)]  # programs 10 (from Monday) and 11 (from Wednesday) active
    assert na_a["active_programs"] == [10, 11] and na_a["active_program_count"] == 2
    assert (na_a["active_cash_rebate"], na_a["active_apr_subsidy"], na_a["active_loyalty"]) == (1, 1, 0)
    assert (na_a["offer_cash_rebate"], na_a["offer_apr_subsidy"]) == (1500.0, 1000.0)
    assert (na_a["days_into_program"], na_a["days_since_program_end"]) == (0, None)
    na_b = feats[(1, 1, B)]  # 10, 11 (ends Wednesday) and 12 (starts Monday): the highest cash offer
    assert na_b["active_programs"] == [10, 11, 12]
    assert (na_b["offer_cash_rebate"], na_b["days_into_program"]) == (2000.0, 7)
    na_f = feats[(1, 1, F)]  # all ended: 12 most recently, on Sunday 21 January
    assert (na_f["active_program_count"], na_f["days_into_program"]) == (0, None)
    assert na_f["days_since_program_end"] == 8
    assert all(na_f[f"active_{t}"] == 0 and na_f[f"offer_{t}"] == 0.0 for t in INCENTIVE_TYPES)
    assert feats[(1, 2, A)]["active_program_count"] == 0  # North/Beta: not eligible
    assert feats[(2, 2, A)]["active_cash_rebate"] == 1  # South/Beta: eligible for 10
    assert feats[(3, 3, D)]["days_since_program_end"] is None  # Coast: never eligible


def test_us_holiday_rules():
    assert us_holidays(2024) == [
        date(2024, 1, 1),
        date(2024, 1, 15),
        date(2024, 2, 19),
        date(2024, 5, 27),
        date(2024, 6, 19),
        date(2024, 7, 4),
        date(2024, 9, 2),
        date(2024, 10, 14),
        date(2024, 11, 11),
        date(2024, 11, 28),
        date(2024, 12, 25),
    ]
    assert {r.on(2025) for r in HOLIDAY_RULES} >= {date(2025, 5, 26), date(2025, 11, 27), date(2025, 1, 20)}


def test_calendar_features(spark):
    mondays = [date(2022, 12, 26) + timedelta(weeks=i) for i in range(262)]  # 2023 .. 2027
    df = add_calendar_features(spark.createDataFrame([(m,) for m in mondays], "week_start date"))
    got = {r["week_start"]: r for r in df.collect()}
    holidays = {h for y in range(2022, 2029) for h in us_holidays(y)}
    for m in mondays:
        days = [m + timedelta(i) for i in range(7)]
        r = got[m]
        assert r["holiday_week"] == int(any(d in holidays for d in days)), m
        assert r["month_end_week"] == int(any((d + timedelta(1)).day == 1 for d in days)), m
        quarter_end = any((d + timedelta(1)).day == 1 and d.month in (3, 6, 9, 12) for d in days)
        assert r["quarter_end_week"] == int(quarter_end), m
        assert r["week_of_year"] == m.isocalendar().week
        assert r["month"] == m.month
    assert got[date(2024, 11, 25)]["holiday_week"] == 1  # Thanksgiving
    assert got[date(2024, 3, 25)]["quarter_end_week"] == 1  # Sunday 31 March
    assert got[date(2024, 12, 30)]["week_of_year"] == 1


def test_lags_are_calendar_based_and_never_see_the_current_week(spark):
    weeks = [A + timedelta(weeks=i) for i in (0, 1, 2, 4, 52, 53)]
    rows = [("region_model", "North", "Alpha", w, 10 * (i + 1)) for i, w in enumerate(weeks)]
    rows += [("region_model", "South", "Alpha", A + timedelta(weeks=3), 999)]  # another series
    df = spark.createDataFrame(
        rows, "cell_level string, region string, vehicle_model string, week_start date, units long"
    )
    got = _by(add_lag_features(df).collect(), "region", "week_start")
    w4 = got[("North", A + timedelta(weeks=4))]
    assert w4["units_lag_1"] is None  # week 3 has no row: a gap, not the previous row
    assert (w4["units_lag_2"], w4["units_lag_3"], w4["units_lag_4"]) == (30, 20, 10)
    assert w4["units_mean_4"] == pytest.approx((10 + 20 + 30) / 3)  # weeks 0..3; 3 has no row
    assert w4["units_mean_13"] == pytest.approx((10 + 20 + 30) / 3)
    assert got[("North", A)]["units_lag_1"] is None and got[("North", A)]["units_mean_4"] is None
    w52 = got[("North", A + timedelta(weeks=52))]
    assert w52["units_lag_52"] == 10 and w52["units_lag_1"] is None
    assert w52["units_mean_4"] is None and w52["units_mean_13"] is None
    w53 = got[("North", A + timedelta(weeks=53))]
    assert (w53["units_lag_1"], w53["units_mean_4"], w53["units_mean_13"]) == (50, 50.0, 50.0)
    assert got[("South", A + timedelta(weeks=3))]["units_lag_1"] is None  # series do not mix


# --------------------------------------------------------------------------- k-anonymity


def test_k_anonymize_tags_each_fine_cell(fine):
    tagged = _by(k_anonymize(fine, K).collect(), "region", "vehicle_model", "week_start")
    expect = {
        ("North", "Alpha", A): ("region_model", "North", "Alpha", 3),
        ("North", "Beta", A): ("super_region_model", "East", "Beta", 3),
        ("South", "Beta", A): ("super_region_model", "East", "Beta", 3),
        ("North", "Alpha", B): ("region_segment", "North", "suv", 3),
        ("North", "Beta", B): ("region_segment", "North", "suv", 3),
        ("North", "Alpha", C): ("super_region_segment", "East", "suv", 3),
        ("South", "Beta", C): ("super_region_segment", "East", "suv", 3),
        ("North", "Alpha", D): (None, None, None, None),  # 2 + 2 dealer-cells, but 2 distinct dealers
        ("North", "Beta", D): (None, None, None, None),
        ("Coast", "Gamma", D): (None, None, None, None),
        ("North", "Alpha", F): ("region_model", "North", "Alpha", 3),
    }
    got = {
        key: (r["cell_level"], r["cell_region"], r["cell_model"], r["cell_dealers"])
        for key, r in tagged.items()
    }
    assert got == expect


def test_master_table_k_anonymous_with_coarse_cells(master):
    rows, _ = master
    assert list(rows[0]) == list(COLUMNS)
    assert all(r["dealer_count"] >= K for r in rows)
    cells = _by(rows, "cell_level", "region", "vehicle_model", "week_start")
    assert set(cells) == {
        ("region_model", "North", "Alpha", A),
        ("super_region_model", "East", "Beta", A),
        ("region_segment", "North", "suv", B),
        ("super_region_segment", "East", "suv", C),
        ("region_model", "North", "Alpha", F),
    }
    eb = cells[("super_region_model", "East", "Beta", A)]
    assert (eb["super_region"], eb["segment"], eb["units"], eb["dealer_count"], eb["fine_cells"]) == (
        "East",
        "suv",
        3,
        3,
        2,
    )
    assert (eb["msrp"], eb["active_cash_rebate"], eb["offer_cash_rebate"]) == (40_000.0, 1, 1500.0)
    ns = cells[("region_segment", "North", "suv", B)]  # 1 Alpha + 2 Beta: unit-weighted
    assert ns["msrp"] == pytest.approx((30_000 + 2 * 40_000) / 3)
    assert ns["unit_margin"] == pytest.approx((3_000 + 2 * 5_000) / 3)
    assert (ns["active_program_count"], ns["offer_cash_rebate"], ns["days_into_program"]) == (3, 2000.0, 7)
    es = cells[("super_region_segment", "East", "suv", C)]
    assert (es["units"], es["dealer_count"], es["fine_cells"]) == (3, 3, 2)
    # the order: cell keys, then week
    keys = [(r["cell_level"], r["region"], r["vehicle_model"], r["week_start"]) for r in rows]
    assert keys == sorted(keys)


def test_lags_only_from_published_cells(master):
    rows, _ = master
    f = _by(rows, "cell_level", "region", "vehicle_model", "week_start")[
        ("region_model", "North", "Alpha", F)
    ]
    # weeks B, C, D of North/Alpha were merged or suppressed: their units must not leak
    assert (f["units_lag_1"], f["units_lag_2"], f["units_lag_3"]) == (None, None, None)
    assert f["units_lag_4"] == 4  # week A, published
    assert f["units_mean_4"] == f["units_mean_13"] == 4.0  # of weeks A..D, only A is published
    assert (f["holiday_week"], f["month_end_week"], f["days_since_program_end"]) == (0, 1, 8)


def test_report_counts_merged_and_suppressed(master):
    rows, report = master
    assert report.k == K
    assert report.rows == len(rows) == 5
    assert report.fine_cells == 11
    assert {name: (c.rows, c.fine_cells, c.units) for name, c in report.levels.items()} == {
        "region_model": (2, 2, 8),
        "super_region_model": (1, 2, 3),
        "region_segment": (1, 2, 3),
        "super_region_segment": (1, 2, 3),
    }
    assert (report.merged_rows, report.merged_fine_cells, report.merged_units) == (3, 6, 9)
    assert (report.suppressed_fine_cells, report.suppressed_units) == (3, 5)
    assert report.units == sum(r["units"] for r in rows) == 17
    assert report.sales == 22  # every sale with a known dealer: published or suppressed
    assert (report.first_week, report.last_week) == (A.isoformat(), F.isoformat())


def test_k_bounds(spark, curated):
    everything, rep1 = build_master_table(spark, curated, 1)
    assert rep1.rows == rep1.fine_cells == 11 and rep1.suppressed_fine_cells == 0
    assert {r["cell_level"] for r in everything.collect()} == {"region_model"}
    nothing, rep100 = build_master_table(spark, curated, 100)
    assert nothing.count() == 0 and rep100.rows == 0
    assert (rep100.suppressed_fine_cells, rep100.suppressed_units, rep100.first_week) == (11, 22, None)


def test_missing_input_is_named(spark, curated):
    with pytest.raises(MasterTableError, match="program_eligibility"):
        build_master_table(spark, {k: v for k, v in curated.items() if k != "program_eligibility"}, K)
    broken = {**curated, "sales": curated["sales"].drop("sale_date")}
    with pytest.raises(MasterTableError, match="'sales' lacks column.*sale_date"):
        build_master_table(spark, broken, K)
    with pytest.raises(MasterTableError, match="k must be at least 1"):
        build_master_table(spark, curated, 0)
