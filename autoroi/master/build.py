"""``build_master_table``: the curated tables to the k-anonymous, featured master table."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from autoroi.errors import MasterTableError
from autoroi.master.calendar import add_calendar_features
from autoroi.master.transforms import (
    CELL_KEYS,
    FEATURE_COLUMNS,
    LAGS,
    LEVELS,
    ROLLING_WEEKS,
    SERIES_KEYS,
    add_lag_features,
    aggregate_cells,
    attach_dimensions,
    dealer_words,
    fine_cells,
    incentive_features,
    join_sales,
    k_anonymize,
    published_cells,
    suppressed_cells,
)

# What build_master_table reads; every other curated column is ignored.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sales": ("dealer_id", "model_id", "sale_date", "program_id", "incentive_amount"),
    "dealers": ("dealer_id", "region_id"),
    "regions": ("region_id", "name", "super_region"),
    "vehicle_models": ("model_id", "name", "segment", "msrp", "unit_margin"),
    "incentive_programs": ("program_id", "incentive_type", "amount", "start_date", "end_date"),
    "program_eligibility": ("program_id", "region_id", "model_id"),
}

# The master table's columns, in order.
COLUMNS: tuple[str, ...] = (
    *CELL_KEYS,
    "units",
    "dealer_count",
    "fine_cells",
    "msrp",
    "unit_margin",
    "incentive_units",
    "incentive_share",
    "incentive_amount",
    "incentive_depth",
    *FEATURE_COLUMNS,
    "week_of_year",
    "month",
    "holiday_week",
    "month_end_week",
    "quarter_end_week",
    *(f"units_lag_{n}" for n in LAGS),
    *(f"units_mean_{n}" for n in ROLLING_WEEKS),
)
SORT_KEYS = (*SERIES_KEYS, "week_start")


@dataclass
class LevelCounts:
    rows: int = 0  # published cell-weeks at this level
    fine_cells: int = 0  # (region, vehicle model) cell-weeks they aggregate
    units: int = 0


@dataclass
class MasterReport:
    """What a build published, merged and suppressed; cell-weeks always count
    only weeks with sales."""

    k: int
    rows: int  # published rows (cell-weeks at any level)
    units: int  # units in them
    sales: int  # sales that reached a cell (published + suppressed units)
    fine_cells: int  # (region, vehicle model) cell-weeks with sales
    levels: dict[str, LevelCounts] = field(default_factory=dict)
    merged_rows: int = 0  # published rows at a coarser level
    merged_fine_cells: int = 0  # fine cell-weeks below k merged into them
    merged_units: int = 0
    suppressed_fine_cells: int = 0  # fine cell-weeks below k in no published row
    suppressed_units: int = 0
    first_week: str | None = None
    last_week: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_curated(curated: Mapping[str, DataFrame]) -> None:
    """Every table and column the build reads is there; a ``MasterTableError``
    naming the first table or column that is not."""
    for table, columns in REQUIRED_COLUMNS.items():
        if table not in curated:
            raise MasterTableError(f"curated table {table!r} is missing")
        have = set(curated[table].columns)
        missing = [c for c in columns if c not in have]
        if missing:
            raise MasterTableError(f"curated table {table!r} lacks column(s) {', '.join(missing)}")


def build_master_table(
    spark: SparkSession, curated: Mapping[str, DataFrame], k: int
) -> tuple[DataFrame, MasterReport]:
    """The master table from the curated tables (see ``transforms`` for each step).

    One row per published cell and week, in ``COLUMNS`` order, sorted by
    (cell_level, region, vehicle_model, week_start): the same input gives the
    same rows in the same order. Steps: sales joined to their dealer's region
    and their program; folded into fine cells (region, vehicle model, week)
    with dealer bitmaps -- the one pass over every sale; regions and vehicle
    models attached; incentive features from program eligibility and dates;
    k-anonymity on dealers, merging cells below ``k`` into coarser ones or
    suppressing them; the published cells summed; calendar features; lags and
    rolling means over the published series only.

    Spark work: one parallel pass over the sales, then a few thousand to tens
    of thousands of fine cells, processed in one partition (no shuffle, no
    plan that repeats itself). Eager: the fine cells, the k-anonymity tags and
    the returned table are materialized with ``localCheckpoint`` (the table
    is small, cells x weeks), and the report's counts come from them."""
    if k < 1:
        raise MasterTableError(f"k must be at least 1, got {k}")
    check_curated(curated)
    started = time.perf_counter()
    sc = spark.sparkContext
    sc.setJobDescription(f"autoroi master table (k={k})")
    try:
        sales = join_sales(curated["sales"], curated["dealers"], curated["incentive_programs"])
        # The one pass over the sales, into about one row per fine cell. Every later
        # step reads these few rows (regions x models x weeks) in one partition: no
        # shuffle, one stage, few compiled classes.
        words = dealer_words(sales).localCheckpoint(eager=True).coalesce(1)
        fine = attach_dimensions(fine_cells(words, k), curated["regions"], curated["vehicle_models"])
        fine = incentive_features(fine, curated["incentive_programs"], curated["program_eligibility"])
        tagged = k_anonymize(fine, k).localCheckpoint(eager=True).coalesce(1)
        table = add_lag_features(add_calendar_features(aggregate_cells(published_cells(tagged))))
        table = table.select(*COLUMNS).orderBy(*SORT_KEYS).localCheckpoint(eager=True).coalesce(1)
        report = _report(table, suppressed_cells(tagged), k)
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]
    report.seconds = round(time.perf_counter() - started, 3)
    return table, report


def _report(table: DataFrame, suppressed: DataFrame, k: int) -> MasterReport:
    levels = {level.name: LevelCounts() for level in LEVELS}
    weeks = []
    for r in (
        table.groupBy("cell_level")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("fine_cells").alias("fine_cells"),
            F.sum("units").alias("units"),
            F.min("week_start").alias("first"),
            F.max("week_start").alias("last"),
        )
        .collect()
    ):
        levels[r["cell_level"]] = LevelCounts(int(r["rows"]), int(r["fine_cells"]), int(r["units"]))
        weeks += [r["first"], r["last"]]
    s = suppressed.agg(
        F.count(F.lit(1)).alias("fine_cells"),
        F.coalesce(F.sum("units"), F.lit(0)).alias("units"),
    ).first()
    sup_fc, sup_u = (int(s["fine_cells"]), int(s["units"])) if s is not None else (0, 0)
    merged = [c for name, c in levels.items() if name != LEVELS[0].name]
    units = sum(c.units for c in levels.values())
    return MasterReport(
        k=k,
        rows=sum(c.rows for c in levels.values()),
        units=units,
        sales=units + sup_u,
        fine_cells=sum(c.fine_cells for c in levels.values()) + sup_fc,
        levels=levels,
        merged_rows=sum(c.rows for c in merged),
        merged_fine_cells=sum(c.fine_cells for c in merged),
        merged_units=sum(c.units for c in merged),
        suppressed_fine_cells=sup_fc,
        suppressed_units=sup_u,
        first_week=min(weeks).isoformat() if weeks else None,
        last_week=max(weeks).isoformat() if weeks else None,
    )
