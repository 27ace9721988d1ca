"""Data validation of the master table: each check can fail, and says so."""

import datetime as dt

import pytest

from autoroi.config import ValidationConfig
from autoroi.errors import ValidationFailed
from autoroi.validation import validate_master
from tests.master_tables import MONDAY, master_table, replace_column

CFG = ValidationConfig()


def _failed(report) -> set[str]:
    return {c.name for c in report.failed}


def test_a_good_table_passes():
    report = validate_master(master_table(), CFG, k=5, previous=master_table(), newest_sale_date=MONDAY)
    assert report.ok, report.to_dict()
    assert {c.name for c in report.checks} >= {
        "schema",
        "finite_numbers",
        "not_empty",
        "row_count_change",
        "mean_units_change",
        "covers_newest_sales",
    }
    report.raise_if_failed()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("units", -1, "greater_than_or_equal_to(0)"),
        ("dealer_count", 4, "greater_than_or_equal_to(5)"),
        ("cell_level", "dealer", "isin"),
        ("region", None, "not_nullable"),
    ],
)
def test_schema_range_and_null_failures_name_column_and_check(column, value, reason):
    t = master_table()
    values = t.column(column).to_pylist()
    values[3] = value
    report = validate_master(replace_column(t, column, values), CFG, k=5)
    assert _failed(report) == {"schema"}
    detail = report.failed[0].detail
    assert column in detail and reason in detail
    with pytest.raises(ValidationFailed, match=f"schema: .*{column}"):
        report.raise_if_failed()


def test_duplicate_cell_keys_fail():
    t = master_table()
    weeks = t.column("week_start").to_pylist()
    weeks[1] = weeks[0]
    report = validate_master(replace_column(t, "week_start", weeks), CFG, k=5)
    assert "schema" in _failed(report)
    assert "uniqueness" in report.failed[0].detail


def test_week_start_must_be_a_monday():
    t = master_table(start=MONDAY + dt.timedelta(days=1))
    report = validate_master(t, CFG, k=5)
    assert "week_start_is_monday" in report.failed[0].detail


def test_missing_column_fails():
    t = master_table().drop_columns(["dealer_count"])
    report = validate_master(t, CFG, k=5)
    assert "dealer_count" in report.failed[0].detail


def test_non_finite_feature_fails():
    t = master_table()
    values = t.column("incentive_depth").to_pylist()
    values[2] = float("inf")
    report = validate_master(replace_column(t, "incentive_depth", values), CFG, k=5)
    assert _failed(report) == {"finite_numbers"}
    assert "incentive_depth x1" in report.failed[0].detail


def test_row_count_change_beyond_bound_fails():
    previous = master_table(weeks=8)
    report = validate_master(master_table(weeks=3), CFG, k=5, previous=previous)
    assert _failed(report) == {"row_count_change"}
    assert "24 -> 9 rows" in report.failed[0].detail
    ok = validate_master(master_table(weeks=10), CFG, k=5, previous=previous)
    assert ok.ok


def test_distribution_shift_beyond_bound_fails():
    report = validate_master(master_table(units=100), CFG, k=5, previous=master_table(units=10))
    assert _failed(report) == {"mean_units_change"}


def test_master_must_cover_the_newest_sales():
    t = master_table(weeks=4)
    newest_week = MONDAY + dt.timedelta(weeks=3)
    assert validate_master(t, CFG, k=5, newest_sale_date=newest_week + dt.timedelta(days=6)).ok
    late = validate_master(t, CFG, k=5, newest_sale_date=newest_week + dt.timedelta(days=7))
    assert _failed(late) == {"covers_newest_sales"}


def test_freshness_against_the_clock_when_configured():
    t = master_table(weeks=4)
    cfg = ValidationConfig(max_staleness_days=14)
    newest = MONDAY + dt.timedelta(weeks=3)
    assert validate_master(t, cfg, k=5, now=dt.datetime.combine(newest, dt.time()) + dt.timedelta(days=10)).ok
    stale = validate_master(t, cfg, k=5, now=dt.datetime.combine(newest, dt.time()) + dt.timedelta(days=30))
    assert _failed(stale) == {"freshness"}
    assert "30 days old" in stale.failed[0].detail


def test_empty_table_fails():
    report = validate_master(master_table().slice(0, 0), CFG, k=5)
    assert "not_empty" in _failed(report)


def test_counts_may_be_any_integer_width_but_not_floats():
    import pyarrow as pa

    t = master_table()
    i = t.schema.get_field_index("dealer_count")
    narrow = t.set_column(i, pa.field("dealer_count", pa.int32()), t.column("dealer_count").cast(pa.int32()))
    assert validate_master(narrow, CFG, k=5).ok
    j = t.schema.get_field_index("units")
    floats = t.set_column(j, pa.field("units", pa.float64()), t.column("units").cast(pa.float64()))
    report = validate_master(floats, CFG, k=5)
    assert "units integer_dtype" in report.failed[0].detail
