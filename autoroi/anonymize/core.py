"""Raw tables in, curated tables out: the allow-list and its treatments.

Pure functions on Arrow tables (no I/O), vectorized: per-row work is done by
Arrow kernels; Python only loops over distinct key values (for the HMAC) and
over columns.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autoroi.anonymize.pseudonym import Pseudonymizer
from autoroi.config import AnonymizeConfig, Treatment
from autoroi.errors import AnonymizationError
from autoroi.source import schema as source_schema

log = logging.getLogger(__name__)

SUPPRESSED_ZIP3 = "000"
DROP_DIRECT_IDENTIFIER = "direct_identifier"
DROP_NOT_ALLOWED = "not_allowed"


# --------------------------------------------------------------------------- report


@dataclass
class TableReport:
    """What happened to one table's columns."""

    table: str
    rows_in: int
    rows_out: int
    kept: list[str] = field(default_factory=list)
    treated: dict[str, str] = field(default_factory=dict)  # column -> treatment
    dropped: dict[str, str] = field(default_factory=dict)  # column -> direct_identifier | not_allowed
    new_columns: list[str] = field(default_factory=list)  # dropped and unknown to the source schema
    missing: list[str] = field(default_factory=list)  # allowed, but not in the input


@dataclass
class Zip3Report:
    """ZIP3 generalization of one column: areas with fewer than ``min_count``
    rows (customers, in ``customers``) were mapped to "000"."""

    table: str
    column: str
    min_count: int
    areas: int  # distinct valid ZIP3 areas before suppression
    areas_suppressed: int
    rows_suppressed: int
    invalid: int  # values that do not start with three digits, also "000"


@dataclass
class AnonymizeReport:
    as_of: dt.date | None
    tables: list[TableReport]
    dropped_tables: list[str]  # no allow-list entry: dropped whole
    missing_tables: list[str]  # in the allow-list, not in the input
    zip3: list[Zip3Report]
    identifiers_allowed: list[str]  # "table.column" of direct identifiers the allow-list lets through
    seconds: float = 0.0

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)

    @property
    def new_columns(self) -> list[str]:
        return [f"{t.table}.{c}" for t in self.tables for c in t.new_columns]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: names and counts only, never a value."""
        doc = asdict(self)
        doc["as_of"] = self.as_of.isoformat() if self.as_of else None
        doc["new_columns"] = self.new_columns
        doc["seconds"] = round(self.seconds, 3)
        return doc


# --------------------------------------------------------------------------- treatments


def age_band_labels(edges: Sequence[int]) -> list[str]:
    """``[18, 25, ..., 90]`` -> ``["<18", "18-24", ..., "75-89", "90+"]``."""
    labels = [f"<{edges[0]}"]
    for lo, nxt in pairwise(edges):
        hi = nxt - 1
        labels.append(f"{lo}" if hi == lo else f"{lo}-{hi}")
    labels.append(f"{edges[-1]}+")
    return labels


def _as_dates(col: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_date32(t):
        return col
    if pa.types.is_date64(t) or pa.types.is_timestamp(t):
        return pc.cast(col, pa.date32())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return pc.cast(col, pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise AnonymizationError(f"{where}: age_band needs dates; values do not parse as dates") from e
    raise AnonymizationError(f"{where}: age_band needs a date column, got {t}")


def age_bands(
    birth: pa.ChunkedArray | pa.Array, as_of: dt.date, edges: Sequence[int], where: str = "column"
) -> pa.ChunkedArray:
    """Age in whole years at ``as_of``, as a band label; nulls stay null.
    Ages below the first edge share one band ("<18"), ages at or above the
    last share the open one ("90+"), so rare old ages cannot single anyone out."""
    if isinstance(birth, pa.Array):
        birth = pa.chunked_array([birth])
    dates = _as_dates(birth, where)
    labels = pa.array(age_band_labels(edges), pa.string())
    edge_arr = np.asarray(edges, dtype=np.int64)
    chunks = []
    for chunk in dates.chunks:
        month, day = pc.month(chunk), pc.day(chunk)
        before_birthday = pc.or_(
            pc.greater(month, as_of.month),
            pc.and_(pc.equal(month, as_of.month), pc.greater(day, as_of.day)),
        )
        age = pc.subtract(
            pc.subtract(pa.scalar(as_of.year, pa.int64()), pc.year(chunk)),
            pc.cast(before_birthday, pa.int64()),
        )
        ages = pc.fill_null(age, 0).to_numpy(zero_copy_only=False)
        idx = np.searchsorted(edge_arr, ages, side="right")
        if edges[0] == 0:  # no "<0" band: a birth date after as_of counts as the first band
            idx = np.maximum(idx, 1)
        mask = pc.is_null(chunk).to_numpy(zero_copy_only=False)
        chunks.append(labels.take(pa.array(idx, type=pa.int32(), mask=mask if mask.any() else None)))
    return pa.chunked_array(chunks, type=pa.string())


def zip3(col: pa.ChunkedArray | pa.Array, min_count: int) -> tuple[pa.ChunkedArray, dict[str, int]]:
    """First three digits of a ZIP code; areas with fewer than ``min_count``
    rows, and values that do not start with three digits, become "000".
    Returns the column and counts (areas, areas_suppressed, rows_suppressed, invalid)."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if pa.types.is_integer(col.type):  # 2134 is ZIP 02134
        text = pc.utf8_lpad(pc.cast(col, pa.string()), 5, "0")
    else:
        text = pc.cast(col, pa.string())
    text = pc.utf8_trim_whitespace(text)
    valid = pc.match_substring_regex(text, r"^[0-9]{3}")
    invalid = int(pc.sum(pc.invert(valid)).as_py() or 0)
    z = pc.if_else(valid, pc.utf8_slice_codeunits(text, 0, 3), pa.scalar(SUPPRESSED_ZIP3))
    counts = pc.value_counts(z)
    values = counts.field("values")
    freq = counts.field("counts")
    real = pc.and_(pc.is_valid(values), pc.not_equal(values, SUPPRESSED_ZIP3))
    small = pc.and_(real, pc.less(freq, min_count))
    small_values = values.filter(small)
    stats = {
        "areas": int(pc.sum(real).as_py() or 0),
        "areas_suppressed": len(small_values),
        "rows_suppressed": int(pc.sum(freq.filter(small)).as_py() or 0),
        "invalid": invalid,
    }
    if len(small_values):
        z = pc.if_else(pc.is_in(z, value_set=small_values), pa.scalar(SUPPRESSED_ZIP3), z)
    return pa.chunked_array(z.chunks, type=pa.string()), stats


def pseudonymize_columns(
    columns: Sequence[tuple[str, pa.ChunkedArray]], pseudonymizer: Pseudonymizer
) -> list[pa.ChunkedArray]:
    """Pseudonyms for columns that share one namespace (the column name):
    the HMAC runs once per distinct value over all of them, rows are mapped
    to it through their dictionary indices."""
    if not columns:
        return []
    names = {name for name, _ in columns}
    if len(names) != 1:
        raise ValueError(f"one namespace per call, got {sorted(names)}")
    namespace = next(iter(names))
    encoded: list[pa.ChunkedArray] = []
    dictionaries: list[pa.Array] = []
    for _, col in columns:
        enc = pc.dictionary_encode(col).unify_dictionaries() if col.num_chunks else None
        if enc is None or enc.num_chunks == 0:
            encoded.append(pa.chunked_array([], pa.dictionary(pa.int32(), pa.string())))
            dictionaries.append(pa.array([], pa.string()))
            continue
        encoded.append(enc)
        dictionaries.append(pc.cast(enc.chunk(0).dictionary, pa.string()))
    distinct = pc.unique(pa.concat_arrays(dictionaries))
    pseudonyms = pseudonymizer.pseudonyms(namespace, distinct)
    out = []
    for enc, dictionary in zip(encoded, dictionaries, strict=True):
        per_dict = pseudonyms.take(pc.index_in(dictionary, value_set=distinct))
        out.append(pa.chunked_array([per_dict.take(ch.indices) for ch in enc.chunks], type=pseudonyms.type))
    return out


# --------------------------------------------------------------------------- the whole zone


def default_as_of(raw: Mapping[str, pa.Table]) -> dt.date | None:
    """The newest ``sales.sale_date``: the reference date for ages, taken
    from the data so that the same input always gives the same output."""
    sales = raw.get("sales")
    if sales is None or sales.num_rows == 0 or "sale_date" not in sales.column_names:
        return None
    value = pc.max(sales.column("sale_date")).as_py()
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else None


def _known_columns(table: str) -> set[str] | None:
    t = source_schema.metadata.tables.get(table)
    return {c.name for c in t.columns} if t is not None else None


def anonymize_tables(
    raw: Mapping[str, pa.Table],
    cfg: AnonymizeConfig,
    key: bytes,
    as_of: dt.date | None = None,
) -> tuple[dict[str, pa.Table], AnonymizeReport]:
    """Apply the allow-list (``cfg.allow``) to every raw table.

    Fail closed: a column reaches the output only if the allow-list names it
    (with its treatment); every other column is dropped and reported, and a
    table without an allow-list entry is dropped whole. Treatments:
    ``keep``; ``pseudonymize`` (HMAC-SHA256 of ``"<column>:<value>"`` under
    ``key``, 32 hex characters); ``age_band`` (age at ``as_of``, default the
    newest ``sales.sale_date``); ``zip3`` (first three digits, small areas
    "000"). Output columns keep their input order."""
    started = time.perf_counter()
    pseudonymizer = Pseudonymizer(key)
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    needs_age = any(
        cfg.allow.get(name, {}).get(c) == "age_band" for name, t in raw.items() for c in t.column_names
    )
    if as_of is None:
        as_of = default_as_of(raw)
        if as_of is None and needs_age:
            raise AnonymizationError(
                "age_band needs a reference date: raw has no sales.sale_date to take it from; pass as_of"
            )

    reports: list[TableReport] = []
    zip_reports: list[Zip3Report] = []
    dropped_tables: list[str] = []
    identifiers_allowed: list[str] = []
    # per output table: column name -> array (filled below), in input order
    planned: dict[str, list[tuple[str, Treatment]]] = {}
    for name in sorted(raw):
        table = raw[name]
        allow = cfg.allow.get(name)
        if allow is None:
            dropped_tables.append(name)
            log.warning("table %s is not in the allow-list: dropped whole", name)
            continue
        known = _known_columns(name)
        direct = set(source_schema.DIRECT_IDENTIFIERS.get(name, ()))
        report = TableReport(table=name, rows_in=table.num_rows, rows_out=table.num_rows)
        plan: list[tuple[str, Treatment]] = []
        for col in table.column_names:
            treatment = allow.get(col)
            if treatment is None:
                report.dropped[col] = DROP_DIRECT_IDENTIFIER if col in direct else DROP_NOT_ALLOWED
                if known is None or col not in known:
                    report.new_columns.append(col)
                continue
            if col in direct:
                identifiers_allowed.append(f"{name}.{col}")
            plan.append((col, treatment))
            if treatment == "keep":
                report.kept.append(col)
            else:
                report.treated[col] = treatment
        report.missing = sorted(set(allow) - set(table.column_names))
        if report.new_columns:
            log.warning(
                "%s: new column(s) %s are not in the allow-list and were dropped; allow them in "
                "anonymize.allow to let them through",
                name,
                ", ".join(report.new_columns),
            )
        planned[name] = plan
        reports.append(report)
    for ident in identifiers_allowed:
        log.warning("the allow-list lets the direct identifier %s through; the PII scan will stop it", ident)

    # pseudonyms: one HMAC pass per column name over all tables that hold it
    by_namespace: dict[str, list[str]] = {}
    for name, plan in planned.items():
        for col, treatment in plan:
            if treatment == "pseudonymize":
                by_namespace.setdefault(col, []).append(name)
    computed: dict[tuple[str, str], pa.ChunkedArray] = {}
    for col, tables in sorted(by_namespace.items()):
        pseudonymized = pseudonymize_columns([(col, raw[t].column(col)) for t in tables], pseudonymizer)
        computed.update({(t, col): a for t, a in zip(tables, pseudonymized, strict=True)})

    out: dict[str, pa.Table] = {}
    for name, plan in planned.items():
        table = raw[name]
        fields: list[pa.Field] = []
        arrays: list[pa.ChunkedArray] = []
        for col, treatment in plan:
            src = table.column(col)
            nullable = table.schema.field(col).nullable
            if treatment == "keep":
                arr = src
            elif treatment == "pseudonymize":
                arr = computed[(name, col)]
            elif treatment == "age_band":
                assert as_of is not None
                arr = age_bands(src, as_of, cfg.age_band_edges, where=f"{name}.{col}")
            elif treatment == "zip3":
                arr, stats = zip3(src, cfg.zip3_min_customers)
                zip_reports.append(Zip3Report(name, col, cfg.zip3_min_customers, **stats))
            else:  # the config model admits no other value
                raise AnonymizationError(f"{name}.{col}: unknown treatment {treatment!r}")
            fields.append(pa.field(col, arr.type, nullable=nullable or arr.null_count > 0))
            arrays.append(arr)
        out[name] = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    report_ = AnonymizeReport(
        as_of=as_of,
        tables=reports,
        dropped_tables=dropped_tables,
        missing_tables=sorted(set(cfg.allow) - set(raw)),
        zip3=zip_reports,
        identifiers_allowed=identifiers_allowed,
        seconds=time.perf_counter() - started,
    )
    return out, report_
