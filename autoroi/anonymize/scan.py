"""The PII-scan gate: search outputs for personal data before they are published.

It does not trust the allow-list: every text column of every output table
(strings, dictionary-encoded strings, UTF-8 binaries, and strings nested in
structs, lists and maps) is checked for

- ``email``: something@domain.tld;
- ``phone``: North-American numbers as the source writes them and as people
  usually do -- ``(201) 555-0123``, ``201-555-0123``, ``201.555.0123``,
  ``2015550123``, ``+1 201 555 0123`` -- and international ones that start
  with ``+`` (``+44 20 7946 0958``), word-bounded so that a run of digits
  inside a longer token (a hex pseudonym) does not count;
- ``vin``: 17 characters of ``[A-HJ-NPR-Z0-9]`` (no I, O, Q), case-sensitive
  and word-bounded, so 32-character hex pseudonyms never match;
- ``identifier``: exact membership, after lower-casing and collapsing
  whitespace, in the set of *every* value of the raw zone's direct-identifier
  columns (names, e-mails, phones, VINs, street lines, and "first last" full
  names) -- all values, not a sample.

Each check runs on a column's distinct values (Arrow ``value_counts``), and
the identifier check runs once over the distinct values of all columns, so
the identifier set (tens of millions of values at 10 M sales) is hashed once.

**Catalog values are not identifiers.** Some people are called like things
the business sells or where it sells them: Faker's name lists alone hold the
surnames West, Small, Mesa and Volta and the first name Aria, which are also
a super-region, a dealer size class and vehicle model names. Values of the
catalog columns in :data:`PUBLIC_VOCABULARY` (read from the same raw zone)
are therefore removed from the identifier set; the count is reported. A leak
of a name column is still caught by every other name in it, and the pattern
checks still apply to those values.

Numeric columns are not searched: names, e-mails and VINs are text, and the
source stores phones as text too; a phone number stored as an integer column
would not be seen.

A :class:`ScanReport` holds table, column, check and count -- never a value.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autoroi.errors import PiiLeakError
from autoroi.source.schema import DIRECT_IDENTIFIERS

log = logging.getLogger(__name__)

EMAIL = r"[^\s@]+@[^\s@]+\.[^\s@.]{2,}"
PHONE = "|".join(
    [
        r"\(\d{3}\)[\s.-]?\d{3}[\s.-]?\d{4}\b",  # (201) 555-0123
        r"(?:\+1[\s.-]?|\b)\d{3}[\s.-]?\d{3}[\s.-]?\d{4}\b",  # 201-555-0123, +1 201 555 0123, 2015550123
        r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b",  # +44 20 7946 0958
    ]
)
VIN = r"\b[A-HJ-NPR-Z0-9]{17}\b"
PATTERNS: dict[str, str] = {"email": EMAIL, "phone": PHONE, "vin": VIN}
IDENTIFIER_CHECK = "identifier"
CHECKS = (*PATTERNS, IDENTIFIER_CHECK)

# Catalog columns: their values appear in curated and master tables by design.
PUBLIC_VOCABULARY: dict[str, tuple[str, ...]] = {
    "regions": ("name", "super_region"),
    "vehicle_models": ("name", "segment"),
    "incentive_programs": ("code", "incentive_type"),
    "dealers": ("size_class",),
    "sales": ("financing_type",),
}
# Pairs of columns whose "first last" join is an identifier too.
FULL_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (("first_name", "last_name"),),
    "dealers": (("owner_first_name", "owner_last_name"),),
}
_TEXT = pa.large_string()
_UNTIDY = r"^\s|\s$|\s{2,}|[\t\n\r\f\v]"


def normalize(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lower case, no leading/trailing whitespace, inner runs of whitespace
    as one space; the form both sides of the identifier check are compared in."""
    out = pc.utf8_lower(values)
    # one search decides whether whitespace needs work at all (names, VINs: rarely)
    if pc.any(pc.match_substring_regex(out, _UNTIDY)).as_py():
        out = pc.replace_substring_regex(pc.utf8_trim_whitespace(out), r"\s{2,}|[\t\n\r\f\v]", " ")
    return out


def _text(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    return arr if arr.type == _TEXT else pc.cast(arr, _TEXT)


# --------------------------------------------------------------------------- identifiers


def fingerprint(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """A keyed 64-bit hash (SipHash-2-4, pandas' vectorized ``hash_array``)
    of each normalized value: what the scan compares when the identifiers
    must not travel in clear text. The SipHash key is derived from the
    pseudonymization key, so without the Secret the fingerprints cannot be
    recomputed from guessed values."""
    import pandas as pd

    hash_key = hashlib.sha256(b"autoroi pii-scan fingerprint\0" + key).hexdigest()[:16]
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    objs = pc.fill_null(arr, "").to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(objs, encoding="utf8", hash_key=hash_key, categorize=False)
    return pa.array(hashed, pa.uint64())


@dataclass(frozen=True)
class IdentifierSet:
    """Every direct-identifier value of the raw zone, normalized (a value may
    repeat: many customers share a first name); or, once :meth:`keyed`, their
    fingerprints, which is the form that leaves the step that may read raw/."""

    values: pa.Array  # large_string (or uint64 fingerprints), no nulls, no empty strings, may repeat
    sources: dict[str, int] = field(default_factory=dict)  # "table.column" -> non-null values read
    exempt: int = 0  # distinct catalog values removed (see PUBLIC_VOCABULARY)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def is_keyed(self) -> bool:
        return pa.types.is_uint64(self.values.type)

    def keyed(self, key: bytes) -> IdentifierSet:
        if self.is_keyed:
            return self
        return IdentifierSet(pc.unique(fingerprint(self.values, key)), dict(self.sources), self.exempt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": len(self),
            "sources": dict(self.sources),
            "exempt": self.exempt,
            "keyed": self.is_keyed,
        }


def identifier_columns(
    identifiers: Mapping[str, Sequence[str]] = DIRECT_IDENTIFIERS,
    vocabulary: Mapping[str, Sequence[str]] = PUBLIC_VOCABULARY,
    full_names: Mapping[str, Sequence[tuple[str, str]]] = FULL_NAMES,
) -> dict[str, list[str]]:
    """The raw columns :func:`collect_identifiers` reads, per table (to read
    only those from the lake)."""
    out: dict[str, list[str]] = {}
    for mapping in (identifiers, vocabulary):
        for table, cols in mapping.items():
            out.setdefault(table, [])
            out[table] += [c for c in cols if c not in out[table]]
    for table, pairs in full_names.items():
        out.setdefault(table, [])
        for pair in pairs:
            out[table] += [c for c in pair if c not in out[table]]
    return out


def collect_identifiers(
    raw: Mapping[str, pa.Table],
    identifiers: Mapping[str, Sequence[str]] = DIRECT_IDENTIFIERS,
    vocabulary: Mapping[str, Sequence[str]] = PUBLIC_VOCABULARY,
    full_names: Mapping[str, Sequence[tuple[str, str]]] = FULL_NAMES,
) -> IdentifierSet:
    """All values of the direct-identifier columns present in ``raw`` (and
    the full names built from them), minus the catalog vocabulary."""
    parts: list[pa.ChunkedArray] = []
    sources: dict[str, int] = {}
    for table, cols in sorted(identifiers.items()):
        t = raw.get(table)
        if t is None:
            continue
        for col in cols:
            if col not in t.column_names:
                continue
            arr = t.column(col)
            sources[f"{table}.{col}"] = len(arr) - arr.null_count
            parts.append(normalize(_text(arr)))
        for first, last in full_names.get(table, ()):
            if first in t.column_names and last in t.column_names:
                joined = pc.binary_join_element_wise(
                    _text(t.column(first)), _text(t.column(last)), pa.scalar(" ", _TEXT)
                )
                sources[f"{table}.{first}+{last}"] = len(joined) - joined.null_count
                parts.append(normalize(joined))
    if not parts:
        return IdentifierSet(pa.array([], _TEXT), sources, 0)
    # no de-duplication: hashing every VIN once more costs more than the scan's
    # probes of repeated values (the scan hashes the smaller side, see scan_for_pii)
    values = pa.chunked_array([c for p in parts for c in p.chunks], type=_TEXT).combine_chunks()
    values = values.filter(pc.and_(pc.is_valid(values), pc.not_equal(values, "")))
    vocab_parts = [
        normalize(_text(raw[t].column(c)))
        for t, cols in vocabulary.items()
        if t in raw
        for c in cols
        if c in raw[t].column_names
    ]
    exempt = 0
    if vocab_parts:
        vocab = pc.unique(pa.chunked_array([c for p in vocab_parts for c in p.chunks], type=_TEXT))
        in_vocab = pc.is_in(values, value_set=vocab.drop_null())
        if pc.any(in_vocab).as_py():
            exempt = len(pc.unique(values.filter(in_vocab)))
            values = values.filter(pc.invert(in_vocab))
    return IdentifierSet(values, sources, exempt)


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    check: str
    count: int  # cells that matched


@dataclass
class ScanReport:
    findings: list[Finding]
    tables: list[str]
    columns_scanned: int
    cells_scanned: int
    identifiers: int
    identifiers_exempt: int
    unscanned: list[str] = field(default_factory=list)  # text-like columns that could not be read as text
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def leaking_columns(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for f in self.findings:
            out.setdefault(f"{f.table}.{f.column}", {})[f.check] = f.count
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; names and counts only."""
        return {
            "ok": self.ok,
            "checks": list(CHECKS),
            "findings": [asdict(f) for f in self.findings],
            "tables": list(self.tables),
            "columns_scanned": self.columns_scanned,
            "cells_scanned": self.cells_scanned,
            "identifiers": self.identifiers,
            "identifiers_exempt": self.identifiers_exempt,
            "unscanned": list(self.unscanned),
            "seconds": round(self.seconds, 3),
        }

    def raise_if_leaking(self) -> None:
        if self.ok:
            return
        cols = self.leaking_columns()
        detail = "; ".join(
            f"{col} ({', '.join(f'{check}: {n}' for check, n in checks.items())})"
            for col, checks in cols.items()
        )
        raise PiiLeakError(
            f"PII scan failed: personal data in {len(cols)} column(s) -- {detail}; nothing may be published. "
            "Check anonymize.allow for the columns named."
        )


def _text_leaves(
    name: str, arr: pa.ChunkedArray, unscanned: list[str]
) -> Iterator[tuple[str, pa.ChunkedArray]]:
    """Every text-valued leaf of a column, as a large_string ChunkedArray."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        yield name, _text(arr)
    elif pa.types.is_dictionary(t):
        yield from _text_leaves(name, pc.cast(arr, t.value_type), unscanned)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            yield name, pc.cast(pc.cast(arr, pa.large_binary()), _TEXT)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            unscanned.append(name)
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            child = pa.chunked_array([pc.struct_field(c, [i]) for c in arr.chunks], type=t.field(i).type)
            yield from _text_leaves(f"{name}.{t.field(i).name}", child, unscanned)
    elif pa.types.is_map(t):
        keys = pa.chunked_array([c.keys for c in arr.chunks], type=t.key_type)
        items = pa.chunked_array([c.items for c in arr.chunks], type=t.item_type)
        yield from _text_leaves(f"{name}{{key}}", keys, unscanned)
        yield from _text_leaves(f"{name}{{value}}", items, unscanned)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        flat = pa.chunked_array([pc.list_flatten(c) for c in arr.chunks], type=t.value_type)
        yield from _text_leaves(f"{name}[]", flat, unscanned)


@dataclass
class _Column:
    table: str
    column: str
    values: pa.Array  # distinct, non-null, large_string
    counts: np.ndarray  # cells per distinct value


def _distinct(arr: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    vc = pc.value_counts(arr)
    values, counts = vc.field("values"), vc.field("counts")
    valid = pc.is_valid(values)
    if values.null_count:
        values, counts = values.filter(valid), counts.filter(valid)
    return values, counts.to_numpy(zero_copy_only=False).astype(np.int64)


def _field_names(fields: Iterable[pa.Field]) -> Iterator[str]:
    for f in fields:
        yield f.name
        t = f.type
        if pa.types.is_struct(t):
            yield from _field_names(t.field(i) for i in range(t.num_fields))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            yield from _field_names([t.value_field])


def structural_terms(outputs: Mapping[str, pa.Table]) -> set[str]:
    """Names of the outputs themselves: the parts of each output's name
    (``curated/sales`` -> curated, sales) and every field name. A report that
    says "sales" is not leaking the customer whose surname is Sales."""
    terms: set[str] = set()
    for name, table in outputs.items():
        terms.update(p for p in re.split(r"[/.]", name) if p)
        terms.update(_field_names(table.schema))
    return terms


def scan_for_pii(
    outputs: Mapping[str, pa.Table],
    identifiers: IdentifierSet,
    exempt_terms: Iterable[str] = (),
    key: bytes | None = None,
) -> ScanReport:
    """Search every text column of every table in ``outputs`` (keys are
    names for the report, e.g. ``curated/sales``) for e-mail, phone and VIN
    patterns and for the identifier values. The report counts matching cells
    per table, column and check.

    The identifier check skips the outputs' own names (:func:`structural_terms`)
    and ``exempt_terms`` (words such as table and column names that a report
    beside the data may contain); the pattern checks skip nothing. Keyed
    identifiers (:meth:`IdentifierSet.keyed`) need the same ``key``: the
    outputs' values are fingerprinted and compared as fingerprints."""
    started = time.perf_counter()
    unscanned: list[str] = []
    columns: list[_Column] = []
    cells = 0
    terms = normalize(pa.array(sorted(structural_terms(outputs) | set(exempt_terms)), _TEXT))
    for table in sorted(outputs):
        t = outputs[table]
        for fld in t.schema:
            leaves_unscanned: list[str] = []
            for path, arr in _text_leaves(fld.name, t.column(fld.name), leaves_unscanned):
                values, counts = _distinct(arr)
                cells += len(arr) - arr.null_count
                columns.append(_Column(table, path, values, counts))
            unscanned += [f"{table}.{c}" for c in leaves_unscanned]

    findings: list[Finding] = []
    hits: dict[tuple[int, str], int] = {}
    any_pattern = "|".join(f"(?:{p})" for p in PATTERNS.values())
    for i, col in enumerate(columns):
        if not len(col.values) or not pc.any(pc.match_substring_regex(col.values, any_pattern)).as_py():
            continue
        for check, pattern in PATTERNS.items():
            mask = pc.match_substring_regex(col.values, pattern).to_numpy(zero_copy_only=False)
            n = int(col.counts[mask].sum())
            if n:
                hits[(i, check)] = n

    if len(identifiers) and columns:
        normalized = [normalize(c.values) for c in columns]
        union = pa.chunked_array(normalized, type=_TEXT)
        if identifiers.is_keyed:
            if key is None:
                raise ValueError("keyed identifiers need the key they were fingerprinted with")
            union = pa.chunked_array([fingerprint(union, key)])
            terms = fingerprint(terms, key)
        # hash the smaller side: usually the outputs' distinct values
        if len(union) < len(identifiers):
            union_set = pc.unique(union)
            found = identifiers.values.filter(pc.is_in(identifiers.values, value_set=union_set))
            found = found.filter(pc.invert(pc.is_in(found, value_set=terms)))
            member = pc.is_in(union, value_set=found) if len(found) else None
        else:
            member = pc.and_(
                pc.is_in(union, value_set=identifiers.values),
                pc.invert(pc.is_in(union, value_set=terms)),
            )
        if member is not None:
            flags = np.concatenate(
                [c.to_numpy(zero_copy_only=False) for c in member.chunks] or [np.zeros(0, bool)]
            )
            start = 0
            for i, col in enumerate(columns):
                end = start + len(col.values)
                n = int(col.counts[flags[start:end]].sum())
                if n:
                    hits[(i, IDENTIFIER_CHECK)] = n
                start = end

    for (i, check), n in sorted(hits.items(), key=lambda kv: (kv[0][0], CHECKS.index(kv[0][1]))):
        findings.append(Finding(columns[i].table, columns[i].column, check, n))
    report = ScanReport(
        findings=findings,
        tables=sorted(outputs),
        columns_scanned=len(columns),
        cells_scanned=cells,
        identifiers=len(identifiers),
        identifiers_exempt=identifiers.exempt,
        unscanned=unscanned,
        seconds=time.perf_counter() - started,
    )
    if report.ok:
        log.info(
            "PII scan: %d column(s) of %d table(s), %d cells, %d identifier values: no findings (%.1fs)",
            report.columns_scanned,
            len(report.tables),
            report.cells_scanned,
            report.identifiers,
            report.seconds,
        )
    else:
        log.error("PII scan: personal data in %s", ", ".join(report.leaking_columns()))
    return report
