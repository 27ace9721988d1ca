"""Reading the curated tables into Spark and writing the master table: the
I/O around the pure transforms, for the ``preprocess`` component.

Curated artifact: ``<dir>/<table>/*.parquet`` (plus ``_report.json``; Spark
skips ``_``/``.`` names). Master artifact: ``<dir>/part-00000.parquet`` and
``<dir>/_report.json``. The master table is small (cells x weeks), so it is
collected through Arrow and written by pyarrow as one file: one deterministic
name, the rows in the table's order, no Spark commit protocol files, and the
same bytes for the same input.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from autoroi.config import LakeConfig, MasterConfig
from autoroi.errors import MasterTableError
from autoroi.master.build import COLUMNS, REQUIRED_COLUMNS, MasterReport, build_master_table

PART_FILE = "part-00000.parquet"
REPORT_FILE = "_report.json"


# Read by Spark, in parallel; every other table the build reads (regions, dealers,
# models, programs) is a dimension table, read on the driver when it is small.
DISTRIBUTED_TABLES = ("sales",)
SMALL_TABLE_BYTES = 32 << 20


def _parquet_bytes(folder: Path) -> int:
    return sum(
        f.stat().st_size
        for f in folder.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in f.relative_to(folder).parts)
    )


def _s3_files(fs: pafs.FileSystem, folder: str) -> tuple[list[str], int]:
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
    files = [
        i
        for i in infos
        if i.type == pafs.FileType.File
        and i.path.endswith(".parquet")
        and not any(p.startswith(("_", ".")) for p in i.path[len(folder) + 1 :].split("/"))
    ]
    return sorted(i.path for i in files), sum(i.size or 0 for i in files)


def read_curated(
    spark: SparkSession, root: str | Path, tables: Any = None, s3: pafs.FileSystem | None = None
) -> dict[str, DataFrame]:
    """``<root>/<table>`` as Spark DataFrames, for each table the build reads
    (default) or each name in ``tables``.

    ``sales`` is read by Spark, in parallel, with the schema pyarrow finds in
    the footers (no schema-inference job). A dimension table under 32 MiB of
    Parquet is read on the driver with pyarrow and handed to Spark as a local
    relation: no job to read it, and none to broadcast it.

    ``root`` may be ``s3://bucket/prefix`` (with ``s3``, the store's pyarrow
    filesystem): the executors then read ``sales`` themselves through
    ``s3a://`` (a cluster's executors cannot see the driver's disk)."""
    names = list(REQUIRED_COLUMNS) if tables is None else list(tables)
    remote = str(root).startswith("s3://")
    if remote and s3 is None:
        raise MasterTableError(f"curated tables at {root}: no S3 filesystem to list them")
    out: dict[str, DataFrame] = {}
    for name in names:
        if remote:
            assert s3 is not None
            folder = f"{str(root).removeprefix('s3://').rstrip('/')}/{name}"
            files, size = _s3_files(s3, folder)
            if not files:
                raise MasterTableError(f"curated table {name!r} is missing: no Parquet under s3://{folder}")
            dataset = pads.dataset(files, format="parquet", filesystem=s3)
            paths = [f"s3a://{f}" for f in files]
        else:
            local = Path(root) / name
            if not local.is_dir():
                raise MasterTableError(f"curated table {name!r} is missing: no folder {local}")
            dataset = pads.dataset(str(local), format="parquet", partitioning="hive")
            size, paths = _parquet_bytes(local), [str(local)]
        if name not in DISTRIBUTED_TABLES and size < SMALL_TABLE_BYTES:
            out[name] = spark.createDataFrame(dataset.to_table())
            continue
        try:
            out[name] = spark.read.schema(from_arrow_schema(dataset.schema)).parquet(*paths)
        except (TypeError, ValueError, NotImplementedError):  # a type without a Spark twin
            out[name] = spark.read.parquet(*paths)
    return out


_NOT_NULL = {
    "cell_level",
    "region",
    "vehicle_model",
    "super_region",
    "segment",
    "week_start",
    "units",
    "dealer_count",
    "fine_cells",
}


def arrow_schema() -> pa.Schema:
    """The master table's Arrow schema: the cell keys and counts are never null;
    features may be (a lag without a published week, a program day count with
    no program). Types as Spark computes them."""
    types: dict[str, pa.DataType] = {c: pa.float64() for c in COLUMNS}
    types.update(
        {c: pa.string() for c in ("cell_level", "region", "vehicle_model", "super_region", "segment")}
    )
    types["week_start"] = pa.date32()
    for c in COLUMNS:
        if c in ("units", "dealer_count", "fine_cells", "incentive_units") or c.startswith("units_lag_"):
            types[c] = pa.int64()
        elif (
            c.startswith("active_")
            or c.startswith("days_")
            or c
            in (
                "week_of_year",
                "month",
                "holiday_week",
                "month_end_week",
                "quarter_end_week",
            )
        ):
            types[c] = pa.int32()
    return pa.schema([pa.field(c, types[c], nullable=c not in _NOT_NULL) for c in COLUMNS])


def master_arrow(table: DataFrame) -> pa.Table:
    """The (small, sorted) master table on the driver, through Arrow, with the
    declared ``arrow_schema()`` (Spark's nullability flags vary with the plan;
    the published schema does not)."""
    return table.toArrow().cast(arrow_schema())


def write_master(path: str | Path, table: pa.Table, compression: str = "zstd") -> Path:
    """``<path>/part-00000.parquet``, written under a temporary name and renamed;
    other ``part-*`` files are removed."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    target = root / PART_FILE
    tmp = root / f".{PART_FILE}.tmp"
    pq.write_table(table, tmp, compression=None if compression == "none" else compression)
    os.replace(tmp, target)
    for old in root.glob("part-*.parquet"):
        if old.name != PART_FILE:
            old.unlink()
    return target


def write_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """``<path>/_report.json``, written under a temporary name and renamed."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(dict(report), indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, root / REPORT_FILE)
    return root / REPORT_FILE


@dataclass
class PreprocessResult:
    report: MasterReport
    rows: int
    columns: list[str]
    seconds: float  # the whole step: session, build, write
    spark_start_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "columns": self.columns,
            "step_seconds": round(self.seconds, 3),
            "spark_start_seconds": round(self.spark_start_seconds, 3),
        }

    def metrics(self) -> dict[str, float]:
        """Flat figures for a KFP ``Metrics`` artifact."""
        r = self.report
        out: dict[str, float] = {
            "rows": r.rows,
            "units": r.units,
            "k": r.k,
            "fine_cells": r.fine_cells,
            "merged_rows": r.merged_rows,
            "merged_cells": r.merged_fine_cells,
            "merged_units": r.merged_units,
            "suppressed_cells": r.suppressed_fine_cells,
            "suppressed_units": r.suppressed_units,
        }
        for level, counts in r.levels.items():
            out[f"{level}.rows"] = counts.rows
        out["build_seconds"] = round(r.seconds, 3)
        out["spark_start_seconds"] = round(self.spark_start_seconds, 3)
        out["duration_seconds"] = round(self.seconds, 3)
        return out


def preprocess_dir(
    cfg: MasterConfig, curated_dir: str | Path, master_dir: str | Path, lake: LakeConfig | None = None
) -> PreprocessResult:
    """The ``preprocess`` step: a Spark session from ``cfg.spark``, the curated
    folder in (a local folder, or ``s3://...`` read through ``s3a://`` with
    ``lake``'s S3 endpoint and region), the master table and its report out."""
    from autoroi.spark import s3a_conf, spark_session

    started = time.perf_counter()
    s3 = None
    extra: dict[str, str] = {}
    if str(curated_dir).startswith("s3://"):
        from autoroi.lake.storage import open_lake

        lake = lake or LakeConfig()
        s3 = open_lake(str(curated_dir), lake).fs
        extra = s3a_conf(lake.s3_endpoint_url, lake.s3_region)
    spark = spark_session(cfg.spark, extra)
    spark_ready = time.perf_counter()
    df, report = build_master_table(spark, read_curated(spark, curated_dir, s3=s3), cfg.k)
    arrow = master_arrow(df)
    write_master(master_dir, arrow)
    result = PreprocessResult(
        report=report,
        rows=arrow.num_rows,
        columns=arrow.column_names,
        seconds=time.perf_counter() - started,
        spark_start_seconds=spark_ready - started,
    )
    write_report(master_dir, result.to_dict())
    return result
