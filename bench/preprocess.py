"""Preprocess benchmark: the master table with Spark, against the same transform in DuckDB.

Contenders, each in a fresh subprocess of its own (a cold JVM for Spark):

* **spark**: ``autoroi.master.build_master_table`` on the curated Parquet
  tables, through ``autoroi.spark.spark_session`` with the default
  ``master.spark`` configuration (``local[*]``, 4 shuffle partitions, AQE,
  Arrow), the result collected through Arrow. Timed with and without the
  session start-up (JVM launch); the same process then builds the table a
  second time on the warm session ("warm").
* **duckdb**: the same transform written as one DuckDB SQL query (joins,
  weekly dealer sets, k-anonymity levels as windows, incentive, calendar and
  lag features, the same sort), ``threads`` = the machine's cores, the result
  fetched as Arrow: the single-machine reference.

The two outputs are compared column by column (row count, units sum, then
every column: integers exactly, floats to 1e-9).

Then the demo size (``scale="small"``, 200,000 sales): the whole ``preprocess``
step as the component runs it (``autoroi.master.io.preprocess_dir``: session
start-up, read, build, write), in a fresh process.

Inputs: curated tables from ``autoroi.source.simulator.simulate(seed=7)``
(1 M rows: the ``medium`` world, 150 dealers; 10 M: the ``large`` world, 400
dealers; 200 k: ``small``, 72 dealers), Numeric columns as decimals,
anonymized by ``autoroi.anonymize.anonymize_tables`` with a throw-away key
when that module is there (its time is printed), else by
``autoroi.master.sample.curated_like``. They are written once to
``--work-dir`` (default ``var/bench/preprocess``) and reused.

Every run notes the CPU that other processes used meanwhile ("others'
cores"): on a shared machine, a run with a high figure there is disturbed.

Usage::

    .venv/bin/python bench/preprocess.py                    # 1M and 10M rows, and the demo size
    .venv/bin/python bench/preprocess.py --quick            # 100k and 1M rows
    .venv/bin/python bench/preprocess.py --sizes 1000000 --repeat 3 --json var/bench-preprocess.json

Targets (printed PASS/FAIL): at the largest size, Spark (without start-up)
within 6x of DuckDB; the demo-size step under 60 s including start-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cpuload import (  # bench/, the script's own folder
    machine_busy_s,
    machine_info,
    own_cpu_s,
    proc_cpu_s,
    table,
)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULT_PREFIX = "BENCH-RESULT "
SEED = 7
K = 5
DEFAULT_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (100_000, 1_000_000)
DEMO_ROWS = 200_000
TARGET_RATIO = 6.0
TARGET_DEMO_S = 60.0
TABLES = ("regions", "dealers", "vehicle_models", "incentive_programs", "program_eligibility", "sales")


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =========================================================================== inputs


def scale_for(rows: int) -> str:
    return "small" if rows <= 200_000 else "medium" if rows <= 1_000_000 else "large"


def curated_dir(work: Path, rows: int) -> Path:
    return work / f"curated-{rows}"


def prepare(work: Path, rows: int, seed: int) -> dict[str, Any]:
    """Curated Parquet tables for ``rows`` sales, generated once and reused."""
    import pyarrow.parquet as pq

    from autoroi.master.sample import curated_like, with_decimals
    from autoroi.source.simulator import simulate

    folder = curated_dir(work, rows)
    marker = folder / "_bench.json"
    want = {"rows": rows, "seed": seed, "scale": scale_for(rows)}
    if marker.exists():
        info = json.loads(marker.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            return {**info, "reused": True}
    log(f"generating {rows:,} sales ({scale_for(rows)} world)")
    started = time.perf_counter()
    raw = with_decimals(simulate(seed, sales_rows=rows, scale=scale_for(rows)).tables)
    generate_s = time.perf_counter() - started
    anonymized_by, anonymize_s = "autoroi.master.sample.curated_like", None
    curated: dict[str, Any] | None = None
    try:
        from autoroi.anonymize import anonymize_tables
        from autoroi.config import AnonymizeConfig
    except ImportError:
        anonymize_tables = None  # type: ignore[assignment]
    if anonymize_tables is not None:
        try:
            started = time.perf_counter()
            curated, _ = anonymize_tables(raw, AnonymizeConfig(), secrets.token_bytes(32))
            anonymize_s = time.perf_counter() - started
            anonymized_by = "autoroi.anonymize.anonymize_tables"
        except Exception as e:  # noqa: BLE001 - a module in progress: fall back, say so
            log(f"anonymize_tables failed ({type(e).__name__}: {e}); using curated_like")
            curated = None
    if curated is None:
        curated = curated_like(raw)
    for name in TABLES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(curated[name], folder / name / "part-00000.parquet", compression="zstd")
    info = {
        **want,
        "generate_s": round(generate_s, 2),
        "anonymized_by": anonymized_by,
        "anonymize_s": None if anonymize_s is None else round(anonymize_s, 2),
        "dealers": curated["dealers"].num_rows,
    }
    marker.write_text(json.dumps(info, indent=2))
    return {**info, "reused": False}


# =========================================================================== DuckDB reference


def holiday_sql(day: str) -> str:
    """``autoroi.master.calendar.HOLIDAY_RULES`` as a DuckDB condition on ``day``."""
    from autoroi.master.calendar import HOLIDAY_RULES

    conds = []
    for r in HOLIDAY_RULES:
        base = f"month({day}) = {r.month}"
        if r.kind == "fixed":
            conds.append(f"({base} AND day({day}) = {r.day})")
        elif r.kind == "nth":
            conds.append(f"({base} AND isodow({day}) = {r.weekday} AND (day({day}) - 1) // 7 = {r.n - 1})")
        else:
            conds.append(
                f"({base} AND isodow({day}) = {r.weekday} AND day({day}) > day(last_day({day})) - 7)"
            )
    return "(" + " OR ".join(conds) + ")"


def duckdb_sql(root: Path, k: int) -> str:
    """The master table in one DuckDB query: the same steps as
    ``autoroi.master.build_master_table``."""
    from autoroi.master.build import COLUMNS
    from autoroi.master.transforms import LAGS, LEVELS, ROLLING_WEEKS
    from autoroi.source.schema import INCENTIVE_TYPES

    def t(name: str) -> str:
        return f"read_parquet('{root / name}/*.parquet')"

    def cents(x: str) -> str:
        return f"CAST(round(CAST({x} AS DOUBLE) * 100) AS BIGINT)"

    active = "(o.start_date <= f.week_start + 6 AND o.end_date >= f.week_start)"
    feats = [
        f"coalesce(list_sort(list_distinct(list(o.program_id) FILTER (WHERE {active}))), [])"
        " AS active_programs"
    ]
    feats += [
        f"max(CASE WHEN {active} AND o.incentive_type = '{ty}' THEN 1 ELSE 0 END) AS active_{ty}"
        for ty in INCENTIVE_TYPES
    ]
    feats += [
        f"coalesce(max(CASE WHEN {active} AND o.incentive_type = '{ty}' THEN o.amount END), 0.0)"
        f" AS offer_{ty}"
        for ty in INCENTIVE_TYPES
    ]
    feats.append(
        f"max(CASE WHEN {active} THEN greatest(f.week_start - o.start_date, 0) END) AS days_into_program"
    )
    ended = "o.end_date < f.week_start"
    feats.append(f"min(CASE WHEN {ended} THEN f.week_start - o.end_date END) AS days_since_program_end")

    levels = []
    prev = "fine_feat0"
    for i, lv in enumerate(LEVELS, start=1):
        if i == 1:
            n = "len(dealers)"
        else:
            n = (
                "len(list_distinct(flatten(list(dealers) OVER (PARTITION BY cell_level IS NULL,"
                f" {lv.region_from}, {lv.model_from}, week_start))))"
            )
        passes = f"cell_level IS NULL AND _n >= {k}"
        levels.append(
            f"l{i} AS (SELECT * EXCLUDE (_n) REPLACE ("
            f"CASE WHEN {passes} THEN '{lv.name}' ELSE cell_level END AS cell_level,"
            f" CASE WHEN {passes} THEN _n ELSE cell_dealers END AS cell_dealers)"
            f" FROM (SELECT *, {n} AS _n FROM {prev}))"
        )
        prev = f"l{i}"
    region_case = " ".join(f"WHEN '{lv.name}' THEN {lv.region_from}" for lv in LEVELS)
    model_case = " ".join(f"WHEN '{lv.name}' THEN {lv.model_from}" for lv in LEVELS)
    feature_aggs = ["len(list_distinct(flatten(list(active_programs)))) AS active_program_count"]
    feature_aggs += [f"max(active_{ty}) AS active_{ty}" for ty in INCENTIVE_TYPES]
    feature_aggs += [f"max(offer_{ty}) AS offer_{ty}" for ty in INCENTIVE_TYPES]
    feature_aggs += ["max(days_into_program) AS days_into_program"]
    feature_aggs += ["min(days_since_program_end) AS days_since_program_end"]
    holiday = " OR ".join(holiday_sql(f"(week_start + {i})") for i in range(7))
    day = "(week_start - DATE '1970-01-05')"
    series = "PARTITION BY cell_level, region, vehicle_model ORDER BY " + day
    lags = [
        f"sum(units) OVER ({series} RANGE BETWEEN {7 * n} PRECEDING AND {7 * n} PRECEDING)::BIGINT"
        f" AS units_lag_{n}"
        for n in LAGS
    ]
    lags += [
        f"avg(units) OVER ({series} RANGE BETWEEN {7 * n} PRECEDING AND 7 PRECEDING) AS units_mean_{n}"
        for n in ROLLING_WEEKS
    ]
    nl = ",\n"
    return f"""
WITH
dealers AS (SELECT dealer_id, CAST(region_id AS INTEGER) AS region_id FROM {t("dealers")}),
programs AS (
  SELECT CAST(program_id AS INTEGER) AS program_id, incentive_type, CAST(amount AS DOUBLE) AS amount,
         {cents("amount")} AS program_cents, start_date, end_date
  FROM {t("incentive_programs")}),
regions AS (SELECT CAST(region_id AS INTEGER) AS region_id, name AS region, super_region FROM {t("regions")}),
models AS (
  SELECT CAST(model_id AS INTEGER) AS model_id, name AS vehicle_model, segment,
         {cents("msrp")} AS msrp_cents, {cents("unit_margin")} AS margin_cents
  FROM {t("vehicle_models")}),
sales AS (
  SELECT d.region_id, CAST(s.model_id AS INTEGER) AS model_id, s.dealer_id,
         CAST(date_trunc('week', s.sale_date) AS DATE) AS week_start, s.program_id,
         CASE WHEN s.program_id IS NOT NULL
              THEN coalesce({cents("s.incentive_amount")}, p.program_cents) END AS incentive_cents
  FROM {t("sales")} s JOIN dealers d USING (dealer_id)
  LEFT JOIN programs p ON p.program_id = CAST(s.program_id AS INTEGER)),
dealer_weeks AS (
  SELECT region_id, model_id, week_start, dealer_id, count(*) AS units,
         count(program_id) AS incentive_units, coalesce(sum(incentive_cents), 0) AS incentive_cents
  FROM sales GROUP BY region_id, model_id, week_start, dealer_id),
fine AS (
  SELECT region_id, model_id, week_start, sum(units)::BIGINT AS units,
         sum(incentive_units)::BIGINT AS incentive_units, sum(incentive_cents)::BIGINT AS incentive_cents,
         list(dealer_id) AS dealers
  FROM dealer_weeks GROUP BY region_id, model_id, week_start),
offers AS (
  SELECT CAST(e.region_id AS INTEGER) AS region_id, CAST(e.model_id AS INTEGER) AS model_id, p.*
  FROM {t("program_eligibility")} e JOIN programs p ON p.program_id = CAST(e.program_id AS INTEGER)),
features AS (
  SELECT f.region_id, f.model_id, f.week_start,
         {(nl + "         ").join(feats)}
  FROM fine f LEFT JOIN offers o ON o.region_id = f.region_id AND o.model_id = f.model_id
  GROUP BY f.region_id, f.model_id, f.week_start),
fine_feat0 AS (
  SELECT f.*, r.region, r.super_region, m.vehicle_model, m.segment, m.msrp_cents, m.margin_cents,
         x.* EXCLUDE (region_id, model_id, week_start),
         CAST(NULL AS VARCHAR) AS cell_level, CAST(NULL AS BIGINT) AS cell_dealers
  FROM fine f JOIN regions r USING (region_id) JOIN models m USING (model_id)
  JOIN features x USING (region_id, model_id, week_start)),
{(nl).join(levels)},
tagged AS (
  SELECT *, CASE cell_level {region_case} END AS cell_region, CASE cell_level {model_case} END AS cell_model
  FROM {prev} WHERE cell_level IS NOT NULL),
sums AS (
  SELECT cell_level, cell_region AS region, cell_model AS vehicle_model, super_region, segment, week_start,
         sum(units)::BIGINT AS units, len(list_distinct(flatten(list(dealers)))) AS dealer_count,
         count(*) AS fine_cells, sum(incentive_units)::BIGINT AS incentive_units,
         sum(incentive_cents)::BIGINT AS incentive_cents,
         sum(units * msrp_cents)::BIGINT AS msrp_cents_units,
         sum(units * margin_cents)::BIGINT AS margin_cents_units,
         {(nl + "         ").join(feature_aggs)}
  FROM tagged GROUP BY cell_level, cell_region, cell_model, super_region, segment, week_start),
cells AS (
  SELECT *, msrp_cents_units / units / 100 AS msrp, margin_cents_units / units / 100 AS unit_margin,
         incentive_units / units AS incentive_share,
         CASE WHEN incentive_units > 0 THEN incentive_cents / incentive_units / 100 ELSE 0.0 END
           AS incentive_amount
  FROM sums),
featured AS (
  SELECT *, incentive_amount / msrp AS incentive_depth,
         weekofyear(week_start) AS week_of_year, month(week_start) AS month,
         CAST({holiday} AS INTEGER) AS holiday_week,
         CAST(month(week_start + 7) <> month(week_start) AS INTEGER) AS month_end_week,
         CAST(quarter(week_start + 7) <> quarter(week_start) AS INTEGER) AS quarter_end_week,
         {(nl + "         ").join(lags)}
  FROM cells)
SELECT {", ".join(COLUMNS)}
FROM featured
ORDER BY cell_level, region, vehicle_model, week_start
"""


# =========================================================================== workers


def master_config(spec: dict[str, Any]) -> Any:
    """The effective config (file, ``AUTOROI_*``) with the command line's overrides."""
    from autoroi.config import load_config

    cfg = load_config().master
    if spec.get("master"):
        cfg.spark.master = spec["master"]
    cfg.spark.conf.update(spec.get("conf") or {})
    return cfg


def worker_spark(spec: dict[str, Any]) -> dict[str, Any]:
    cfg = master_config(spec)
    import pyarrow.parquet as pq

    from autoroi.master import build_master_table
    from autoroi.master.io import read_curated
    from autoroi.spark import spark_session

    t0 = time.perf_counter()
    spark = spark_session(cfg.spark)
    t1 = time.perf_counter()
    table, report = build_master_table(spark, read_curated(spark, spec["curated"]), spec["k"])
    arrow = table.toArrow()
    t2 = time.perf_counter()
    pq.write_table(arrow, spec["out"])
    t3 = time.perf_counter()
    table2, _ = build_master_table(spark, read_curated(spark, spec["curated"]), spec["k"])
    warm_rows = table2.toArrow().num_rows
    t4 = time.perf_counter()
    jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
    cpu = own_cpu_s() + proc_cpu_s(jvm)
    spark.stop()
    return {
        "start_s": t1 - t0,
        "build_s": t2 - t1,
        "warm_s": t4 - t3,
        "rows": arrow.num_rows,
        "warm_rows": warm_rows,
        "report": report.to_dict(),
        "cpu_s": cpu,
        "master": cfg.spark.master,
        "conf": cfg.spark.conf,
    }


def worker_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb
    import pyarrow.parquet as pq

    sql = duckdb_sql(Path(spec["curated"]), spec["k"])
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    t0 = time.perf_counter()
    relation = con.sql(sql)
    assert relation is not None
    arrow = relation.to_arrow_table()
    t1 = time.perf_counter()
    pq.write_table(arrow, spec["out"])
    return {"build_s": t1 - t0, "rows": arrow.num_rows, "cpu_s": own_cpu_s(), "version": duckdb.__version__}


def worker_demo(spec: dict[str, Any]) -> dict[str, Any]:
    from autoroi.master.io import preprocess_dir

    cfg = master_config(spec)
    t0 = time.perf_counter()
    result = preprocess_dir(cfg, spec["curated"], spec["out"])
    t1 = time.perf_counter()
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    cpu = own_cpu_s()
    if spark is not None:
        cpu += proc_cpu_s(spark.sparkContext._gateway.proc.pid)  # type: ignore[union-attr]
    return {
        "step_s": t1 - t0,
        "start_s": result.spark_start_seconds,
        "rows": result.rows,
        "cpu_s": cpu,
    }


WORKERS = {"spark": worker_spark, "duckdb": worker_duckdb, "demo": worker_demo}


def worker_main(kind: str) -> None:
    spec = json.loads(os.environ["BENCH_WORKER_SPEC"])
    out = WORKERS[kind](spec)
    print(RESULT_PREFIX + json.dumps(out, default=str), flush=True)


@dataclasses.dataclass
class Run:
    kind: str
    rows: int
    wall_s: float  # the whole process: interpreter, imports, JVM, work
    others: float  # cores other processes used meanwhile
    result: dict[str, Any]


def run_worker(kind: str, spec: dict[str, Any]) -> Run:
    env = {**os.environ, "BENCH_WORKER_SPEC": json.dumps(spec)}
    busy0 = machine_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        cwd=REPO,
    )
    wall = time.perf_counter() - t0
    busy = machine_busy_s() - busy0
    result: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    others = max(0.0, busy - float(result.get("cpu_s", 0.0))) / wall if wall > 0 else 0.0
    return Run(kind, spec["rows"], wall, others, result)


# =========================================================================== comparison


def compare(spark_path: Path, duck_path: Path) -> dict[str, Any]:
    """Row count, units sum, and every column (integers exactly, floats to 1e-9)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a = pq.read_table(spark_path)
    b = pq.read_table(duck_path)
    out: dict[str, Any] = {
        "rows": (a.num_rows, b.num_rows),
        "units": (pc.sum(a["units"]).as_py(), pc.sum(b["units"]).as_py()),
        "mismatched_columns": [],
    }
    if a.num_rows == b.num_rows:
        for name in a.column_names:
            if name not in b.column_names:
                out["mismatched_columns"].append(f"{name} (missing in duckdb)")
                continue
            x, y = a[name], b[name]
            if pa_is_numeric(x.type) and pa_is_numeric(y.type):
                xn = np.asarray(x.to_numpy(zero_copy_only=False), dtype=float)
                yn = np.asarray(y.to_numpy(zero_copy_only=False), dtype=float)
                same = np.array_equal(np.isnan(xn), np.isnan(yn)) and np.allclose(
                    xn, yn, rtol=1e-9, atol=1e-9, equal_nan=True
                )
            else:
                same = x.to_pylist() == y.to_pylist()
            if not same:
                out["mismatched_columns"].append(name)
    out["agree"] = (
        out["rows"][0] == out["rows"][1]
        and out["units"][0] == out["units"][1]
        and not out["mismatched_columns"]
    )
    return out


def pa_is_numeric(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


# =========================================================================== report


def best(runs: list[Run], key: str) -> Run:
    return min(runs, key=lambda r: float(r.result[key]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="sales rows, comma-separated (default 1000000,10000000)")
    p.add_argument("--quick", action="store_true", help="100k and 1M rows")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender and size; the fastest counts")
    p.add_argument("--k", type=int, default=K)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--master", help="spark.master (default: the config's, local[*])")
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further Spark setting (repeatable)",
    )
    p.add_argument("--work-dir", type=Path, default=REPO / "var" / "bench" / "preprocess")
    p.add_argument("--no-demo", action="store_true", help="skip the demo-size step")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.sizes:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    else:
        sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    conf = dict(c.split("=", 1) for c in args.conf)
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    info = machine_info(("pyspark", "duckdb"))
    log(f"machine: {info['cores']} cores, load average {info['load_avg']}")

    inputs = {n: prepare(work, n, args.seed) for n in sizes}
    results: dict[int, dict[str, Any]] = {}
    for n in sizes:
        spec = {
            "rows": n,
            "curated": str(curated_dir(work, n)),
            "k": args.k,
            "master": args.master,
            "conf": conf,
        }
        spark_runs, duck_runs = [], []
        for i in range(max(1, args.repeat)):
            log(f"{n:,} rows: spark (run {i + 1})")
            spark_runs.append(run_worker("spark", {**spec, "out": str(work / f"spark-{n}.parquet")}))
            log(f"{n:,} rows: duckdb (run {i + 1})")
            duck_runs.append(run_worker("duckdb", {**spec, "out": str(work / f"duckdb-{n}.parquet")}))
        s, d = best(spark_runs, "build_s"), best(duck_runs, "build_s")
        results[n] = {
            "spark": dataclasses.asdict(s),
            "duckdb": dataclasses.asdict(d),
            "ratio": s.result["build_s"] / d.result["build_s"],
            "compare": compare(work / f"spark-{n}.parquet", work / f"duckdb-{n}.parquet"),
        }
    demo = None
    if not args.no_demo:
        inputs[DEMO_ROWS] = prepare(work, DEMO_ROWS, args.seed)
        log(f"demo size ({DEMO_ROWS:,} rows): preprocess step in a fresh process")
        runs = [
            run_worker(
                "demo",
                {
                    "rows": DEMO_ROWS,
                    "curated": str(curated_dir(work, DEMO_ROWS)),
                    "out": str(work / "demo-master"),
                    "master": args.master,
                    "conf": conf,
                },
            )
            for _ in range(max(1, args.repeat))
        ]
        demo = dataclasses.asdict(min(runs, key=lambda r: r.wall_s))

    out = render(sizes, inputs, results, demo, info, args.k)
    print(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "machine": info,
                    "inputs": {str(k): v for k, v in inputs.items()},
                    "results": {str(k): v for k, v in results.items()},
                    "demo": demo,
                    "load_avg_end": os.getloadavg(),
                },
                indent=2,
                default=str,
            )
        )
    return 0


def render(
    sizes: list[int],
    inputs: dict[int, dict[str, Any]],
    results: dict[int, dict[str, Any]],
    demo: dict[str, Any] | None,
    info: dict[str, Any],
    k: int,
) -> str:
    out = [
        f"Preprocess benchmark: master table (k={k}), Spark {info['pyspark']} vs DuckDB {info['duckdb']}",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB;"
        f" load average at start {', '.join(f'{x:.2f}' for x in info['load_avg'])}",
        "",
    ]
    rows = []
    for n in sizes:
        r = results[n]
        s, d = r["spark"], r["duckdb"]
        rows.append(
            [
                f"{n:,}",
                f"{s['result']['start_s']:.1f}",
                f"{s['result']['build_s']:.1f}",
                f"{s['result']['start_s'] + s['result']['build_s']:.1f}",
                f"{s['result']['warm_s']:.1f}",
                f"{d['result']['build_s']:.2f}",
                f"{r['ratio']:.1f}x",
                f"{s['result']['warm_s'] / d['result']['build_s']:.1f}x",
                f"{s['result']['rows']:,}",
                f"{s['others']:.2f}/{d['others']:.2f}",
            ]
        )
    out.append(
        table(
            [
                "sales rows",
                "spark start s",
                "spark build s",
                "spark total s",
                "spark warm s",
                "duckdb s",
                "spark/duckdb",
                "warm/duckdb",
                "master rows",
                "others' cores",
            ],
            rows,
        )
    )
    out.append("")
    out.append("spark build: read + build_master_table + collect (Arrow), first build in a fresh JVM;")
    out.append("warm: the same again in that session; spark/duckdb: build (no start-up) / duckdb;")
    out.append("others' cores: CPU other processes used during the spark/duckdb run (2 cores in all).")
    out.append("")
    out.append("Outputs agree?")
    for n in sizes:
        c = results[n]["compare"]
        rep = results[n]["spark"]["result"]["report"]
        verdict = "yes" if c["agree"] else "NO"
        out.append(
            f"  {n:,}: {verdict} - rows spark {c['rows'][0]:,} / duckdb {c['rows'][1]:,},"
            f" units {c['units'][0]:,} / {c['units'][1]:,}"
            + (
                f"; columns differing: {', '.join(c['mismatched_columns'])}"
                if c["mismatched_columns"]
                else ""
            )
        )
        out.append(
            f"      k-anonymity: {rep['fine_cells']:,} fine cell-weeks; merged {rep['merged_fine_cells']:,}"
            f" into {rep['merged_rows']:,} coarse rows ({rep['merged_units']:,} units);"
            f" suppressed {rep['suppressed_fine_cells']:,} ({rep['suppressed_units']:,} units)"
        )
    if demo is not None:
        out.append("")
        out.append(
            f"Demo size ({DEMO_ROWS:,} sales, small world): preprocess step {demo['result']['step_s']:.1f} s"
            f" including Spark start-up {demo['result']['start_s']:.1f} s; whole process"
            f" {demo['wall_s']:.1f} s; {demo['result']['rows']:,} rows; others' cores {demo['others']:.2f}"
        )
    out.append("")
    out.append("Targets")
    largest = max(sizes)
    ratio = results[largest]["ratio"]
    out.append(
        f"  {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}  Spark within {TARGET_RATIO:g}x of DuckDB at"
        f" {largest:,} rows, start-up excluded  [{ratio:.1f}x]"
    )
    if demo is not None:
        step = demo["result"]["step_s"]
        out.append(
            f"  {'PASS' if step < TARGET_DEMO_S else 'FAIL'}  demo-size step under {TARGET_DEMO_S:g} s"
            f" including start-up  [{step:.1f} s; process {demo['wall_s']:.1f} s]"
        )
    out.append("")
    for n, i in sorted(inputs.items()):
        anon = f"{i['anonymized_by']}" + (f" {i['anonymize_s']:.1f} s" if i.get("anonymize_s") else "")
        gen = f"{i['generate_s']:.1f} s" if i.get("generate_s") is not None else "?"
        out.append(
            f"input {n:,}: {i['scale']} world, {i.get('dealers', '?')} dealers, generated in {gen},"
            f" anonymized by {anon}" + (" (kept from an earlier run)" if i.get("reused") else "")
        )
    out.append(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
