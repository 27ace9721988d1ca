"""Data validation of a master table before it is published.

Schema, types, ranges, nulls and duplicate keys are declared with pandera (a
maintained library whose checks and failure reports we would otherwise
rewrite); drift versus the previous master version and freshness are plain
comparisons, because they look at two tables or at the clock. Any failure
stops the pipeline, names the check, and leaves ``latest`` where it was.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pandera.errors
import pandera.pandas as pdx
import pyarrow as pa

from autoroi.config import ValidationConfig
from autoroi.errors import ValidationFailed

log = logging.getLogger(__name__)

CELL_KEY = ("cell_level", "region", "vehicle_model", "week_start")
CELL_LEVELS = ("region_model", "super_region_model", "region_segment", "super_region_segment")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class ValidationReport:
    rows: int
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "checks": [asdict(c) for c in self.checks]}

    def raise_if_failed(self) -> None:
        if not self.ok:
            reasons = "; ".join(f"{c.name}: {c.detail}" for c in self.failed)
            raise ValidationFailed(f"master table failed validation ({reasons}); nothing was published")


# any integer width (Spark writes int32 counts, int64 sums)
_INTEGER = pdx.Check(lambda s: pd.api.types.is_integer_dtype(s.dtype), name="integer_dtype")


def master_schema(k: int) -> pdx.DataFrameSchema:
    """Columns every master table has; feature columns beyond these are
    checked generically (numeric ones must be finite)."""
    return pdx.DataFrameSchema(
        {
            "week_start": pdx.Column("datetime64[ns]", nullable=False),
            "cell_level": pdx.Column(str, pdx.Check.isin(CELL_LEVELS), nullable=False),
            "region": pdx.Column(str, nullable=False),
            "vehicle_model": pdx.Column(str, nullable=False),
            "super_region": pdx.Column(str, nullable=False),
            "segment": pdx.Column(str, nullable=False),
            "units": pdx.Column(None, [_INTEGER, pdx.Check.ge(0)], nullable=False),
            "dealer_count": pdx.Column(None, [_INTEGER, pdx.Check.ge(k)], nullable=False),
            "msrp": pdx.Column(float, pdx.Check.gt(0), nullable=False),
            "unit_margin": pdx.Column(float, nullable=False),
        },
        checks=[
            pdx.Check(lambda df: df["week_start"].dt.dayofweek == 0, name="week_start_is_monday"),
        ],
        unique=list(CELL_KEY),
        strict=False,
        coerce=False,
    )


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow to the pandas types the schema declares (dates as datetime64,
    decimals as float)."""
    df = table.to_pandas()
    for name in table.column_names:
        t = table.schema.field(name).type
        if pa.types.is_date(t) or pa.types.is_timestamp(t):
            df[name] = pd.to_datetime(df[name]).dt.tz_localize(None).astype("datetime64[ns]")
        elif pa.types.is_decimal(t):
            df[name] = df[name].astype(float)
    return df


def validate_master(
    table: pa.Table,
    cfg: ValidationConfig,
    k: int,
    previous: pa.Table | None = None,
    newest_sale_date: date | None = None,
    now: datetime | None = None,
) -> ValidationReport:
    """Every check runs (none short-circuits) so one report names all problems."""
    report = ValidationReport(rows=table.num_rows)
    df = to_frame(table)
    report.checks.append(_schema_check(df, k))
    report.checks.append(_finite_check(df))
    report.checks.append(CheckResult("not_empty", table.num_rows > 0, f"{table.num_rows} rows"))
    if previous is not None and previous.num_rows:
        prev = to_frame(previous)
        change = abs(len(df) - len(prev)) / len(prev)
        report.checks.append(
            CheckResult(
                "row_count_change",
                change <= cfg.max_row_count_change,
                f"{len(prev)} -> {len(df)} rows ({change:.1%}; bound {cfg.max_row_count_change:.0%})",
            )
        )
        if "units" in df and len(df):
            before, after = float(prev["units"].mean()), float(df["units"].mean())
            shift = abs(after - before) / before if before else float(after != 0)
            report.checks.append(
                CheckResult(
                    "mean_units_change",
                    shift <= cfg.max_mean_units_change,
                    f"mean weekly units {before:.3g} -> {after:.3g} ({shift:.1%};"
                    f" bound {cfg.max_mean_units_change:.0%})",
                )
            )
    if len(df) and "week_start" in df:
        newest = df["week_start"].max().date()
        if newest_sale_date is not None:
            want = newest_sale_date - timedelta(days=newest_sale_date.weekday())
            report.checks.append(
                CheckResult(
                    "covers_newest_sales",
                    newest >= want,
                    f"newest week {newest}, newest sale {newest_sale_date} (week {want})",
                )
            )
        if cfg.max_staleness_days is not None:
            today = (now or datetime.now()).date()
            age = (today - newest).days
            report.checks.append(
                CheckResult(
                    "freshness",
                    age <= cfg.max_staleness_days,
                    f"newest week {newest} is {age} days old (bound {cfg.max_staleness_days})",
                )
            )
    for c in report.checks:
        (log.info if c.ok else log.error)("check %s: %s (%s)", c.name, "ok" if c.ok else "FAILED", c.detail)
    return report


def _schema_check(df: pd.DataFrame, k: int) -> CheckResult:
    try:
        master_schema(k).validate(df, lazy=True)
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases.copy()
        # schema-level failures (a missing column, a wrong dtype) carry the
        # column name or type as the "case"; data-level ones carry values,
        # which are counted, not shown
        schema_level = cases["column"].isna() | cases["check"].astype(str).str.startswith(
            ("column_in", "dtype")
        )
        cases.loc[schema_level, "column"] = [
            c if isinstance(c, str) else str(f)
            for c, f in zip(
                cases.loc[schema_level, "column"], cases.loc[schema_level, "failure_case"], strict=True
            )
        ]
        grouped = cases.groupby(["column", "check"], dropna=False).size()
        parts = [f"{col} {check} x{n}" for (col, check), n in grouped.items()]
        return CheckResult("schema", False, ", ".join(parts[:10]))
    return CheckResult("schema", True, "columns, types, ranges, nulls and unique cell keys as declared")


def _finite_check(df: pd.DataFrame) -> CheckResult:
    bad = []
    for name in df.select_dtypes("number").columns:
        col = df[name].astype(float)
        n = int((~col.isna() & ~col.between(-1e300, 1e300)).sum())
        if n:
            bad.append(f"{name} x{n}")
    return CheckResult("finite_numbers", not bad, ", ".join(bad) or "every numeric value finite or null")
