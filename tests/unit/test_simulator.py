"""The simulator: determinism, exact sizes, schema fidelity, and a ground truth
that the drawn sales actually follow."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from autoroi.errors import ConfigError
from autoroi.source import schema
from autoroi.source.simulator import (
    N_WEEKS,
    START_DATE,
    TRUTH_SCHEMA,
    SourceData,
    arrow_schema,
    simulate,
)

SEED = 42


@pytest.fixture(scope="module")
def world() -> SourceData:
    return simulate(SEED)  # the default scale: 200,000 sales


@pytest.fixture(scope="module")
def tiny() -> SourceData:
    return simulate(SEED, sales_rows=20_000)


def _df(data: SourceData, name: str) -> pd.DataFrame:
    return data.tables[name].to_pandas()


def test_same_seed_gives_identical_tables_and_truth(tiny: SourceData) -> None:
    again = simulate(SEED, sales_rows=20_000)
    assert list(again.tables) == list(tiny.tables)
    for name, table in tiny.tables.items():
        assert again.tables[name].equals(table), name
    assert again.truth.equals(tiny.truth)


def test_different_seed_gives_a_different_world(tiny: SourceData) -> None:
    other = simulate(SEED + 1, sales_rows=20_000)
    assert not other.tables["sales"].equals(tiny.tables["sales"])
    assert not other.tables["customers"].equals(tiny.tables["customers"])
    assert not other.truth.equals(tiny.truth)


@pytest.mark.parametrize("n", [1, 137, 20_001])
def test_sales_rows_is_exact(n: int) -> None:
    data = simulate(7, sales_rows=n)
    assert data.rows["sales"] == n
    assert data.rows["customers"] == max(5_000, n // 4)


def test_default_scale_is_small(world: SourceData) -> None:
    assert world.rows["sales"] == 200_000
    assert world.rows["customers"] == 50_000
    assert 8 <= world.rows["regions"] <= 10
    assert 16 <= world.rows["vehicle_models"] <= 24


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": "huge"}, "unknown scale"),
        ({"sales_rows": 0}, "at least 1"),
        ({"sales_rows": -5}, "at least 1"),
        ({"sales_rows": 10**9}, "at most"),
    ],
)
def test_bad_parameters_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(1, **kwargs)  # type: ignore[arg-type]


def test_negative_seed_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="seed"):
        simulate(-1, sales_rows=10)


def test_tables_match_schema_exactly(tiny: SourceData) -> None:
    assert list(tiny.tables) == schema.TABLE_ORDER
    for name, table in tiny.tables.items():
        sa_table = schema.metadata.tables[name]
        assert table.column_names == [c.name for c in sa_table.columns]
        assert table.schema.equals(arrow_schema(sa_table)), name
        for col in sa_table.columns:
            if not col.nullable:
                assert table.column(col.name).null_count == 0, f"{name}.{col.name}"
    assert tiny.truth.schema.equals(TRUTH_SCHEMA)


def test_money_has_at_most_two_decimals(tiny: SourceData) -> None:
    sales = _df(tiny, "sales")
    for col in ("sale_price", "incentive_amount", "trade_in_value", "apr"):
        v = sales[col].dropna().to_numpy()
        assert np.allclose(v, np.round(v, 2)), col


def test_truth_columns_are_consistent(world: SourceData) -> None:
    t = world.truth.to_pandas()
    assert len(t) > 1_000
    assert (t["units_with"] >= t["units_without"]).all()
    assert (t["units_without"] > 0).all()
    assert (t["pull_forward_units"] >= 0).all()
    assert np.allclose(t["incremental_units"], t["units_with"] - t["units_without"] - t["pull_forward_units"])
    assert (t["incremental_units"] >= 0).all()
    assert np.allclose(t["incentive_cost"], t["incentive_amount"] * t["units_under_incentive"])
    assert np.allclose(t["incremental_profit"], t["incremental_units"] * t["unit_margin"])
    roi = (t["incremental_profit"] - t["incentive_cost"]) / t["incentive_cost"]
    assert np.allclose(t["roi"], roi)
    assert (t["units_under_incentive"] > 0).all()
    assert (t["units_under_incentive"] <= t["units_with"] + 1e-9).all()
    assert not t.duplicated(["program_id", "region_id", "model_id", "week_start"]).any()


def test_truth_rows_are_eligible_cells_in_active_weeks(world: SourceData) -> None:
    t = world.truth.to_pandas()
    progs = _df(world, "incentive_programs").set_index("program_id")
    elig = _df(world, "program_eligibility")
    week = pd.to_datetime(t["week_start"])
    start = pd.to_datetime(t["program_id"].map(progs["start_date"]))
    end = pd.to_datetime(t["program_id"].map(progs["end_date"]))
    assert ((week >= start) & (week + timedelta(days=6) <= end)).all()
    assert (week.dt.dayofweek == 0).all()
    pairs = set(zip(elig["program_id"], elig["region_id"], elig["model_id"], strict=True))
    assert set(zip(t["program_id"], t["region_id"], t["model_id"], strict=True)) == pairs
    assert (t["incentive_amount"] == t["program_id"].map(progs["amount"])).all()
    assert (t["incentive_type"] == t["program_id"].map(progs["incentive_type"])).all()


def test_a_mix_of_paying_and_losing_programs(world: SourceData) -> None:
    t = world.truth.to_pandas()
    positive = (t["roi"] > 0).mean()
    assert 0.15 <= positive <= 0.5
    by_program = t.groupby("program_id")[["incremental_profit", "incentive_cost"]].sum()
    program_roi = by_program["incremental_profit"] / by_program["incentive_cost"] - 1
    assert (program_roi > 0).any()
    assert (program_roi < 0).any()
    assert set(t["incentive_type"]) == set(schema.INCENTIVE_TYPES)


def _with_cells(data: SourceData) -> pd.DataFrame:
    sales = _df(data, "sales")
    dealers = _df(data, "dealers")[["dealer_id", "region_id"]]
    sales = sales.merge(dealers, on="dealer_id")
    days = (pd.to_datetime(sales["sale_date"]) - pd.Timestamp(START_DATE)).dt.days
    sales["week_start"] = [START_DATE + timedelta(weeks=int(w)) for w in days // 7]
    return sales


def test_sales_follow_the_truth(world: SourceData) -> None:
    t = world.truth.to_pandas()
    sales = _with_cells(world)
    cells = t.drop_duplicates(["region_id", "model_id", "week_start"])
    actual = sales.groupby(["region_id", "model_id", "week_start"]).size()
    key = pd.MultiIndex.from_frame(cells[["region_id", "model_id", "week_start"]])
    observed = actual.reindex(key, fill_value=0).sum()
    expected = cells["units_with"].sum()
    assert abs(observed / expected - 1) < 0.03, (observed, expected)

    # units sold under each program, as drawn, against the expected take-up
    under = t.groupby("program_id")["units_under_incentive"].sum()
    counted = sales["program_id"].value_counts()
    big = under[under >= 300]
    assert len(big) >= 10
    ratio = counted.reindex(big.index, fill_value=0) / big
    assert ratio.between(0.85, 1.15).all(), ratio[~ratio.between(0.85, 1.15)]


def test_incentives_lift_sales_against_the_counterfactual(world: SourceData) -> None:
    """The gap between units with and without is visible in the data: in program
    cells more is sold than the counterfactual says would have been."""
    t = world.truth.to_pandas()
    sales = _with_cells(world)
    lifted = t.groupby(["region_id", "model_id", "week_start"]).agg(
        with_=("units_with", "first"), without=("units_without", "min")
    )
    strong = lifted[lifted["with_"] > 1.3 * lifted["without"]]
    assert len(strong) > 100
    observed = (
        sales.groupby(["region_id", "model_id", "week_start"]).size().reindex(strong.index, fill_value=0)
    )
    assert observed.sum() > 1.15 * strong["without"].sum()


def test_foreign_keys_hold(world: SourceData) -> None:
    sales = _df(world, "sales")
    assert sales["dealer_id"].isin(_df(world, "dealers")["dealer_id"]).all()
    assert sales["customer_id"].isin(_df(world, "customers")["customer_id"]).all()
    assert sales["model_id"].isin(_df(world, "vehicle_models")["model_id"]).all()
    programs = _df(world, "incentive_programs")
    assert sales["program_id"].dropna().isin(programs["program_id"]).all()
    elig = _df(world, "program_eligibility")
    assert elig["program_id"].isin(programs["program_id"]).all()
    regions = _df(world, "regions")["region_id"]
    assert elig["region_id"].isin(regions).all()
    assert _df(world, "dealers")["region_id"].isin(regions).all()
    assert _df(world, "customers")["region_id"].isin(regions).all()
    for name, table in world.tables.items():
        pk = next(iter(schema.metadata.tables[name].primary_key.columns)).name
        assert table.column(pk).to_pandas().is_unique, name


def test_sales_use_programs_only_where_and_when_eligible(world: SourceData) -> None:
    sales = _with_cells(world)
    sales = sales[sales["program_id"].notna()].astype({"program_id": int})
    assert len(sales) > 10_000
    elig = _df(world, "program_eligibility")
    ok = sales.merge(elig, on=["program_id", "region_id", "model_id"], how="left", indicator=True)
    assert (ok["_merge"] == "both").all()
    progs = _df(world, "incentive_programs").set_index("program_id")
    day = pd.to_datetime(sales["sale_date"])
    assert (day >= pd.to_datetime(sales["program_id"].map(progs["start_date"]))).all()
    assert (day <= pd.to_datetime(sales["program_id"].map(progs["end_date"]))).all()
    assert (sales["incentive_amount"] == sales["program_id"].map(progs["amount"])).all()


def test_financing_is_consistent_with_the_program(world: SourceData) -> None:
    sales = _df(world, "sales")
    ptype = sales["program_id"].map(
        _df(world, "incentive_programs").set_index("program_id")["incentive_type"]
    )
    apr = sales[ptype == "apr_subsidy"]
    assert len(apr) > 0 and (apr["financing_type"] == "finance").all() and (apr["apr"] <= 2.9).all()
    lease = sales[ptype == "lease_subsidy"]
    assert len(lease) > 0 and (lease["financing_type"] == "lease").all()
    cash = sales["financing_type"] == "cash"
    assert sales.loc[cash, ["apr", "term_months"]].isna().all().all()
    assert sales.loc[~cash, ["apr", "term_months"]].notna().all().all()
    assert (sales["incentive_amount"].isna() == sales["program_id"].isna()).all()
    assert set(sales["financing_type"]) == set(schema.FINANCING_TYPES)
    assert 0.005 < sales["is_fleet"].mean() < 0.1


def test_vins_are_unique_and_valid(world: SourceData) -> None:
    vins = _df(world, "sales")["vin"]
    assert vins.is_unique
    assert vins.str.fullmatch(r"[A-HJ-NPR-Z0-9]{17}").all()
    values = dict(
        zip(
            "ABCDEFGHJKLMNPRSTUVWXYZ",
            [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
            strict=True,
        )
    )
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    for vin in vins.sample(500, random_state=1):
        total = sum((int(ch) if ch.isdigit() else values[ch]) * w for ch, w in zip(vin, weights, strict=True))
        assert vin[8] == ("X" if total % 11 == 10 else str(total % 11)), vin


def test_names_include_non_ascii_and_emails_do_not(world: SourceData) -> None:
    customers = _df(world, "customers")
    names = pd.concat([customers["first_name"], customers["last_name"]])
    non_ascii = names[~names.map(str.isascii)]
    assert len(non_ascii) > 100
    assert any(ch in "".join(non_ascii.unique()) for ch in "äöüéèçñłśż")
    emails = customers["email"].dropna()
    assert emails.map(str.isascii).all()
    assert emails.str.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+").all()
    assert customers["zip"].dropna().str.fullmatch(r"\d{5}").all()
    assert customers["zip"].dropna().str.startswith("0").any()  # leading zeros survive as text
    dealers = _df(world, "dealers")
    assert dealers["size_class"].isin(["small", "medium", "large"]).all()
    assert dealers["name"].notna().all()


def test_nulls_where_real_systems_have_them(world: SourceData) -> None:
    customers = _df(world, "customers")
    for col, (lo, hi) in {"email": (0.05, 0.25), "phone": (0.02, 0.15), "birth_date": (0.05, 0.3)}.items():
        share = customers[col].isna().mean()
        assert lo < share < hi, (col, share)
    sales = _df(world, "sales")
    assert 0.3 < sales["trade_in_value"].isna().mean() < 0.8
    assert 0.05 < sales["program_id"].isna().mean() < 0.95
    programs = _df(world, "incentive_programs")
    assert programs["budget"].isna().any() and programs["budget"].notna().any()


def test_keys_and_timestamps_follow_business_time(world: SourceData) -> None:
    sales = world.tables["sales"]
    assert sales.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    df = sales.to_pandas()
    assert (df["sale_id"].diff().dropna() > 0).all()
    assert df["sale_date"].is_monotonic_increasing
    assert df["sale_date"].min() >= START_DATE
    assert df["sale_date"].max() < START_DATE + timedelta(weeks=N_WEEKS)
    assert (df["updated_at"] >= df["created_at"]).all()
    assert (pd.to_datetime(df["created_at"]).dt.date >= df["sale_date"]).all()
    late = df["updated_at"] - df["created_at"] > pd.Timedelta(days=1)
    assert 0.01 < late.mean() < 0.1  # late corrections
    now = df["updated_at"].max()
    for name, table in world.tables.items():
        assert table.column("updated_at").to_pandas().max() <= now, name
    customers = _df(world, "customers")
    assert (customers["updated_at"] >= customers["created_at"]).all()
    first_buy = df.groupby("customer_id")["created_at"].min()
    assert (customers.set_index("customer_id").loc[first_buy.index, "created_at"] <= first_buy).all()
    assert date(1930, 1, 1) < customers["birth_date"].dropna().min()


def test_eligible_cells_often_have_enough_dealers(world: SourceData) -> None:
    """k-anonymity downstream needs >= 5 distinct dealers in most cells."""
    sales = _with_cells(world)
    per_cell = sales.groupby(["region_id", "model_id", "week_start"])["dealer_id"].nunique()
    n_cells = world.rows["regions"] * world.rows["vehicle_models"] * N_WEEKS
    assert (per_cell >= 5).sum() / n_cells > 0.5


def test_program_codes_are_unique_and_readable(world: SourceData) -> None:
    programs = _df(world, "incentive_programs")
    assert programs["code"].is_unique
    assert all(re.fullmatch(r"[A-Z]{2,3}-\d{5,}", c) for c in programs["code"])
    assert (programs["end_date"] > programs["start_date"]).all()
