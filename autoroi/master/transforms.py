"""The master table's transforms: pure PySpark, DataFrame in, DataFrame out.

No I/O, no Python UDFs, no collecting to the driver: every step is a Spark
expression the optimizer sees whole. Money is carried as integer cents and
summed as ``long``: exact, and the same result whatever order a shuffle
delivers partial sums in, so the same input always gives the same bytes.

The grain, bottom up:

1. ``join_sales``: one row per sale with its dealer's region and dense
   dealer key, its program, its Monday ``week_start`` and the incentive
   paid (in cents).
2. ``dealer_words``: the sales folded per fine cell -- (region, vehicle
   model, week) -- and 64-dealer word, with a bitmap of the dealers that
   sold: the one pass over every sale, fixed-width aggregation only.
3. ``fine_cells``: one row per fine cell with its sums, ``dealer_count`` and,
   for the cells that may be merged, ``dealers``, the sorted set of its
   dealers. All later steps work on fine cells (regions x models x weeks
   rows), and every coarser cell's distinct dealers are counted from the
   union of its fine cells' sets, never summed.
   ``attach_dimensions`` adds the region and vehicle-model attributes here,
   where the table is small (the same inner joins as at sale level, on far
   fewer rows).
4. ``incentive_features``: per fine cell, from program eligibility and dates.
5. ``k_anonymize``: fine cells tagged with the (possibly coarser) cell they
   are published in, or suppressed; ``aggregate_cells`` sums them per cell.
6. ``add_calendar_features`` (``calendar.py``) and ``add_lag_features`` on
   the published cells.

Zero-sale weeks: a cell appears only in the weeks it has sales. A dense
calendar would add rows with ``units = 0`` and ``dealer_count = 0``, and
k-anonymity (k >= 1) would merge or suppress every one of them, so it would
publish nothing more and only inflate the suppressed counts. Lags and rolling
means are calendar-based, so a week without a published row reads as missing
(null lag; the rolling mean skips it), never as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from autoroi.source.schema import INCENTIVE_TYPES

FINE_KEYS = ("region_id", "model_id", "week_start")
# A published cell: its level, its names, and its week. ``super_region`` and
# ``segment`` are functions of (level, region, vehicle_model) at every level.
CELL_KEYS = ("cell_level", "region", "vehicle_model", "super_region", "segment", "week_start")
# The same while fine cells are tagged (their own region/vehicle_model stay).
TAGGED_KEYS = ("cell_level", "cell_region", "cell_model", "super_region", "segment", "week_start")
SERIES_KEYS = ("cell_level", "region", "vehicle_model")
LAGS = (1, 2, 3, 4, 52)
ROLLING_WEEKS = (4, 13)
_MONDAY_EPOCH = date(1970, 1, 5)


@dataclass(frozen=True)
class CellLevel:
    """One level of the k-anonymity hierarchy: which attribute names the cell's
    ``region`` and which its ``vehicle_model``."""

    name: str
    region_from: str  # "region" or "super_region"
    model_from: str  # "vehicle_model" or "segment"


LEVELS: tuple[CellLevel, ...] = (
    CellLevel("region_model", "region", "vehicle_model"),
    CellLevel("super_region_model", "super_region", "vehicle_model"),
    CellLevel("region_segment", "region", "segment"),
    CellLevel("super_region_segment", "super_region", "segment"),
)
FINE = LEVELS[0]


def week_start(day: Column | str) -> Column:
    """The Monday of the (ISO, Monday-to-Sunday) week holding ``day``: integer
    arithmetic on the day number (1970-01-05 was a Monday), no calendar
    object per row."""
    n = F.unix_date(F.col(day) if isinstance(day, str) else day)
    return F.date_from_unix_date(n - F.pmod(n - 4, F.lit(7)))


def cents(amount: Column | str) -> Column:
    """Dollars (decimal or double) as integer cents: exact for amounts with at
    most two decimals below 10^13 dollars (a double holds them to far better
    than half a cent), and cheaper per row than decimal arithmetic."""
    a = F.col(amount) if isinstance(amount, str) else amount
    return F.rint(a.cast("double") * 100).cast("long")


def dealer_hash(dealer_id: Column | str) -> Column:
    """A 64-bit hash of the dealer pseudonym: sales are grouped by it instead of
    joined to dealers row by row on a 32-character string. A collision could
    only merge two dealers into one, which lowers distinct-dealer counts: the
    k-anonymity check errs on the safe side."""
    return F.xxhash64(F.col(dealer_id) if isinstance(dealer_id, str) else dealer_id)


def _union_size(arrays: Column) -> Column:
    """Distinct elements over a collected list of arrays."""
    return F.size(F.array_distinct(F.flatten(arrays)))


# --------------------------------------------------------------------------- sales to fine cells


def dealer_index(dealers: DataFrame) -> DataFrame:
    """One row per dealer: ``dealer_hash``, ``region_id`` and ``dealer_key``, a
    dense 0-based integer in (region, pseudonym) order, so that one region's
    dealers share few 64-bit words of a dealer bitmap. One row per hash, so a
    collision cannot duplicate sales."""
    d = dealers.select(
        dealer_hash("dealer_id").alias("dealer_hash"),
        F.col("region_id").cast("int").alias("region_id"),
        (F.dense_rank().over(Window.orderBy("region_id", "dealer_id")) - 1).cast("int").alias("dealer_key"),
    )
    return d.groupBy("dealer_hash").agg(
        F.min("region_id").alias("region_id"), F.min("dealer_key").alias("dealer_key")
    )


def join_sales(sales: DataFrame, dealers: DataFrame, programs: DataFrame) -> DataFrame:
    """One row per sale with its dealer's ``region_id`` and ``dealer_key``
    (``dealer_index``), ``model_id``, ``sale_date``, ``week_start``,
    ``program_id``, ``incentive_type`` (null without a program) and
    ``incentive_cents`` (the sale's incentive amount, else the program's;
    null for a sale without a program).

    Both joins are broadcast (dealers and programs are small) and on integer
    keys: dealers by a 64-bit hash of the pseudonym, not the 32-character
    string. Inner join to dealers: a sale of an unknown dealer has no region
    and is dropped; left join to programs."""
    p = programs.select(
        F.col("program_id").cast("int").alias("program_id"),
        "incentive_type",
        cents("amount").alias("_program_cents"),
    )
    s = sales.select(
        dealer_hash("dealer_id").alias("dealer_hash"),
        F.col("model_id").cast("int").alias("model_id"),
        F.col("sale_date").cast("date").alias("sale_date"),
        F.col("program_id").cast("int").alias("program_id"),
        cents("incentive_amount").alias("_sale_cents"),
    )
    joined = s.join(F.broadcast(dealer_index(dealers)), "dealer_hash").join(
        F.broadcast(p), "program_id", "left"
    )
    paid = F.when(F.col("program_id").isNotNull(), F.coalesce("_sale_cents", "_program_cents"))
    return joined.select(
        "region_id",
        "dealer_key",
        "model_id",
        "sale_date",
        week_start("sale_date").alias("week_start"),
        "program_id",
        "incentive_type",
        paid.alias("incentive_cents"),
    )


def dealer_words(sales: DataFrame) -> DataFrame:
    """``join_sales`` rows per fine cell (region_id, model_id, week_start) and
    64-dealer word (``word`` = dealer_key / 64): ``units``, ``incentive_units``
    (sales under a program), ``incentive_cents`` (their incentive, summed) and
    ``dealer_bits``, the word's bitmap of the dealers that sold (bit_or).

    Exact distinct dealers with fixed-width aggregation only: a fine cell has
    a word or two (its region's dealers are contiguous), so the sales fold
    into about as many rows as there are fine cells, not one per dealer."""
    word = F.shiftright(F.col("dealer_key"), 6)
    bit = F.call_function("shiftleft", F.lit(1).cast("long"), F.col("dealer_key").bitwiseAND(63))
    return (
        sales.withColumns({"word": word, "_bit": bit})
        .groupBy(*FINE_KEYS, "word")
        .agg(
            F.count(F.lit(1)).alias("units"),
            F.count("program_id").alias("incentive_units"),
            F.coalesce(F.sum("incentive_cents"), F.lit(0)).cast("long").alias("incentive_cents"),
            F.bit_or("_bit").alias("dealer_bits"),
        )
    )


def _word_dealers(word: Column, bits: Column) -> Column:
    """The dealer keys set in one bitmap word, ascending."""
    set_bits = F.filter(
        F.sequence(F.lit(0), F.lit(63)), lambda i: F.call_function("shiftright", bits, i).bitwiseAND(1) == 1
    )
    return F.transform(set_bits, lambda i: word * 64 + i)


def fine_cells(dealer_words: DataFrame, k: int | None = None) -> DataFrame:
    """``dealer_words`` rows per fine cell (region_id, model_id, week_start):
    the sums, ``dealer_count`` (the bits set, summed over the cell's words)
    and ``dealers``, the sorted array of the cell's dealer keys -- for every
    cell, or with ``k`` only for the cells below ``k`` (null for the others):
    only those can be merged, and only a merge needs to know who the dealers
    are."""
    cells = dealer_words.groupBy(*FINE_KEYS).agg(
        F.sum("units").alias("units"),
        F.sum("incentive_units").alias("incentive_units"),
        F.sum("incentive_cents").alias("incentive_cents"),
        F.sum(F.bit_count("dealer_bits")).cast("long").alias("dealer_count"),
        F.collect_list(F.struct("word", "dealer_bits")).alias("_words"),
    )
    keys = F.array_sort(
        F.flatten(F.transform("_words", lambda w: _word_dealers(w["word"], w["dealer_bits"])))
    )
    dealers = keys if k is None else F.when(F.col("dealer_count") < k, keys)
    return cells.withColumn("dealers", dealers).drop("_words")


def attach_dimensions(rows: DataFrame, regions: DataFrame, vehicle_models: DataFrame) -> DataFrame:
    """Adds ``region``, ``super_region`` (by ``region_id``) and ``vehicle_model``,
    ``segment``, ``msrp_cents``, ``margin_cents`` (by ``model_id``); inner joins,
    broadcast (dimension tables are small)."""
    r = regions.select(
        F.col("region_id").cast("int").alias("region_id"),
        F.col("name").alias("region"),
        "super_region",
    )
    m = vehicle_models.select(
        F.col("model_id").cast("int").alias("model_id"),
        F.col("name").alias("vehicle_model"),
        "segment",
        cents("msrp").alias("msrp_cents"),
        cents("unit_margin").alias("margin_cents"),
    )
    return rows.join(F.broadcast(r), "region_id").join(F.broadcast(m), "model_id")


# --------------------------------------------------------------------------- incentive features


def _of_type(incentive_type: str) -> Callable[[Column], Column]:
    return lambda offer: offer["incentive_type"] == incentive_type


FEATURE_COLUMNS = (
    "active_program_count",
    *(f"active_{t}" for t in INCENTIVE_TYPES),
    *(f"offer_{t}" for t in INCENTIVE_TYPES),
    "days_into_program",
    "days_since_program_end",
)


def incentive_features(cells: DataFrame, programs: DataFrame, eligibility: DataFrame) -> DataFrame:
    """Incentive features per fine cell-week from the programs' eligibility and
    dates, not from sales: a program counts as active in a cell-week even if no
    sale used it, as it would in a what-if question.

    ``cells``: rows with ``region_id``, ``model_id``, ``week_start``; returned
    with the features added. Each row gets its (region, model)'s eligible
    programs as one small array (a broadcast join) and the features are array
    functions over it: no exploded join, no aggregation. A program is active
    in a cell's week when it is eligible for the region and model and its
    [start_date, end_date] overlaps Monday..Sunday:

    * ``active_programs`` (sorted array of program ids) and
      ``active_program_count``;
    * ``active_<type>`` (one per ``INCENTIVE_TYPES``): 1 if a program of that
      type is active, else 0;
    * ``offer_<type>``: the highest amount (dollars per unit) an active
      program of that type offers, 0 if none;
    * ``days_into_program``: days from the start of the earliest-started
      active program to the week's Monday (0 if it starts within the week);
      null when none is active;
    * ``days_since_program_end``: days from the end of the most recently ended
      eligible program (ended before the Monday) to the Monday; null if none
      has ended (pull-forward dips follow a program's end)."""
    p = programs.select(
        F.col("program_id").cast("int").alias("program_id"),
        "incentive_type",
        F.col("amount").cast("double").alias("amount"),
        F.col("start_date").cast("date").alias("start_date"),
        F.col("end_date").cast("date").alias("end_date"),
    )
    e = eligibility.select(
        F.col("program_id").cast("int").alias("program_id"),
        F.col("region_id").cast("int").alias("region_id"),
        F.col("model_id").cast("int").alias("model_id"),
    )
    offer = F.struct("program_id", "incentive_type", "amount", "start_date", "end_date")
    offers = (
        e.join(F.broadcast(p), "program_id")
        .groupBy("region_id", "model_id")
        .agg(F.array_sort(F.collect_list(offer)).alias("_offers"))
    )
    x = cells.join(F.broadcast(offers), ["region_id", "model_id"], "left")
    ws = F.col("week_start")
    eligible = F.coalesce(F.col("_offers"), F.array().cast(offers.schema["_offers"].dataType))
    active = F.filter(eligible, lambda o: (o["start_date"] <= F.date_add(ws, 6)) & (o["end_date"] >= ws))
    ended = F.filter(eligible, lambda o: o["end_date"] < ws)
    features = {"active_programs": F.transform(active, lambda o: o["program_id"])}
    for t in INCENTIVE_TYPES:
        features[f"active_{t}"] = F.exists(active, _of_type(t)).cast("int")
    for t in INCENTIVE_TYPES:
        of_type = F.filter(active, _of_type(t))
        features[f"offer_{t}"] = F.coalesce(
            F.array_max(F.transform(of_type, lambda o: o["amount"])), F.lit(0.0)
        )
    into = F.transform(active, lambda o: F.greatest(F.datediff(ws, o["start_date"]), F.lit(0)))
    features["days_into_program"] = F.array_max(into)
    features["days_since_program_end"] = F.array_min(
        F.transform(ended, lambda o: F.datediff(ws, o["end_date"]))
    )
    features["active_program_count"] = F.size(active)
    return x.withColumns(features).drop("_offers")


# --------------------------------------------------------------------------- k-anonymity and cells


def tag_level(rows: DataFrame, level: CellLevel) -> DataFrame:
    """Fine cells tagged with the cell they fall in at ``level``:
    ``cell_level``, ``cell_region``, ``cell_model``."""
    return rows.withColumns(
        {
            "cell_level": F.lit(level.name),
            "cell_region": F.col(level.region_from),
            "cell_model": F.col(level.model_from),
        }
    )


def k_anonymize(cells: DataFrame, k: int, levels: Sequence[CellLevel] = LEVELS) -> DataFrame:
    """k-anonymity on dealers, coarsening step by step.

    ``cells`` are fine cells with dimensions, ``dealer_count`` and, for those
    below ``k``, ``dealers`` sets. At the first level every (region, vehicle
    model, week) cell with at least ``k`` distinct dealers is published. The
    fine cells below ``k`` move on, whole, to the next level: grouped by
    (super_region, vehicle model, week), a group whose distinct dealers --
    the union of those fine cells' dealer sets, never a sum of counts --
    reach ``k`` is published as one merged cell; the rest move on to
    (region, segment, week), then (super_region, segment, week); what is
    left is suppressed.

    Returns every fine cell, tagged: ``cell_level`` (null: suppressed),
    ``cell_region``, ``cell_model`` (the published cell's names) and
    ``cell_dealers`` (its distinct dealers). One linear chain of windows: each
    level partitions by "still open" and the level's keys, so the cells
    published at earlier levels never count towards a later one.

    A merged cell holds only fine cells that were not published themselves,
    so every sale is in at most one published row, and no published row can
    be subtracted from another to recover a cell below ``k``."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    out = cells.withColumns(
        {"cell_level": F.lit(None).cast("string"), "cell_dealers": F.lit(None).cast("long")}
    )
    for level in levels:  # one projection per level
        still_open = F.col("cell_level").isNull()
        if level == FINE:  # one fine cell per group: its own dealers
            dealers = F.col("dealer_count")
        else:
            w = Window.partitionBy(still_open, level.region_from, level.model_from, "week_start")
            dealers = _union_size(F.collect_list("dealers").over(w))
        passes = still_open & (dealers >= k)
        out = out.withColumns(
            {
                "cell_level": F.when(passes, F.lit(level.name)).otherwise(F.col("cell_level")),
                "cell_dealers": F.when(passes, dealers).otherwise(F.col("cell_dealers")),
            }
        )
    region = model = F.lit(None).cast("string")
    for level in levels:
        here = F.col("cell_level") == level.name
        region = F.when(here, F.col(level.region_from)).otherwise(region)
        model = F.when(here, F.col(level.model_from)).otherwise(model)
    return out.withColumns({"cell_region": region, "cell_model": model})


def published_cells(tagged: DataFrame) -> DataFrame:
    """The fine cells ``k_anonymize`` publishes (in some cell)."""
    return tagged.filter(F.col("cell_level").isNotNull())


def suppressed_cells(tagged: DataFrame) -> DataFrame:
    """The fine cells ``k_anonymize`` suppresses."""
    return tagged.filter(F.col("cell_level").isNull())


def aggregate_cells(tagged: DataFrame) -> DataFrame:
    """Tagged fine cells (``k_anonymize``) summed per cell and week:
    ``CELL_KEYS``, ``units``, ``dealer_count`` (the cell's distinct dealers,
    as ``k_anonymize`` counted them: the union of its fine cells' dealer
    sets), ``fine_cells`` (fine cells aggregated),
    ``incentive_units``, the measures of ``cell_measures`` and, when the fine
    cells carry them, the incentive features: 1/offer if any fine cell has
    it (max), the longest-running program (max of ``days_into_program``), the
    most recent end (min of ``days_since_program_end``), distinct active
    programs over all fine cells."""
    aggs = [
        F.sum("units").alias("units"),
        F.max("cell_dealers").alias("dealer_count"),
        F.count(F.lit(1)).alias("fine_cells"),
        F.sum("incentive_units").alias("incentive_units"),
        F.sum("incentive_cents").alias("incentive_cents"),
        F.sum(F.col("units") * F.col("msrp_cents")).alias("msrp_cents_units"),
        F.sum(F.col("units") * F.col("margin_cents")).alias("margin_cents_units"),
    ]
    present = set(tagged.columns)
    for c in FEATURE_COLUMNS:
        if c not in present:
            continue
        if c == "active_program_count":
            aggs.append(_union_size(F.collect_list("active_programs")).alias(c))
        elif c == "days_since_program_end":
            aggs.append(F.min(c).alias(c))
        else:
            aggs.append(F.max(c).alias(c))
    sums = tagged.groupBy(*TAGGED_KEYS).agg(*aggs)
    return cell_measures(sums.withColumnsRenamed({"cell_region": "region", "cell_model": "vehicle_model"}))


def cell_measures(sums: DataFrame) -> DataFrame:
    """From a cell's sums to its measures: ``msrp`` and ``unit_margin`` (dollars,
    unit-weighted over the models in the cell: a model's own for a model
    cell), ``incentive_share`` (units under a program / units),
    ``incentive_amount`` (mean dollars per unit sold under a program, 0 when
    none), ``incentive_depth`` (incentive_amount / msrp)."""
    units = F.col("units")
    inc_units = F.col("incentive_units")
    amount = F.when(inc_units > 0, F.col("incentive_cents") / inc_units / 100).otherwise(F.lit(0.0))
    msrp = F.col("msrp_cents_units") / units / 100
    measures = {
        "msrp": msrp,
        "unit_margin": F.col("margin_cents_units") / units / 100,
        "incentive_share": inc_units / units,
        "incentive_amount": amount,
        "incentive_depth": amount / msrp,
    }
    return sums.withColumns(measures).drop("incentive_cents", "msrp_cents_units", "margin_cents_units")


def weekly_cells(cells: DataFrame) -> DataFrame:
    """Fine cells (with dimensions) in the published form, without k-anonymity:
    one row per (region, vehicle model, week)."""
    tagged = tag_level(cells, FINE).withColumn("cell_dealers", F.col("dealer_count"))
    return aggregate_cells(tagged)


# --------------------------------------------------------------------------- lags


def add_lag_features(
    cells: DataFrame,
    series: Sequence[str] = SERIES_KEYS,
    lags: Sequence[int] = LAGS,
    rolling: Sequence[int] = ROLLING_WEEKS,
) -> DataFrame:
    """Adds ``units_lag_<n>`` (units of the same series ``n`` calendar weeks
    earlier; null when that week has no row) and ``units_mean_<w>`` (mean
    units over the rows of the ``w`` weeks before, the current week excluded;
    null when there are none).

    Calendar-based (a range frame over day numbers), so a missing week is a
    gap, not the previous row; computed over ``cells`` as given -- the
    published, k-anonymous cells -- so no suppressed or merged-away value can
    reach a lag, and no window includes the current week's target."""
    day = F.datediff(F.col("week_start"), F.lit(_MONDAY_EPOCH))
    w = Window.partitionBy(*series).orderBy(day)
    units = F.col("units")
    cols = [F.sum(units).over(w.rangeBetween(-7 * n, -7 * n)).alias(f"units_lag_{n}") for n in lags]
    cols += [F.avg(units).over(w.rangeBetween(-7 * n, -7)).alias(f"units_mean_{n}") for n in rolling]
    return cells.select("*", *cols)
