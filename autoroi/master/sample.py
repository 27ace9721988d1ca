"""Curated-like tables from the simulator, for tests and benchmarks.

A stand-in for ``autoroi.anonymize`` with the same output shape: the allowed
columns of each table, ``dealer_id``/``customer_id`` as 32-character hex
pseudonyms (an unkeyed bijection here -- fine for synthetic data, never for
real data, which goes through the keyed HMAC of ``autoroi.anonymize``),
numerics as decimals with the scale of ``schema.py``. Columns whose
treatment generalizes a value (``age_band``, ``zip3``) are left out: the
master table does not read them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from autoroi.config import DEFAULT_ALLOW_LIST, Treatment
from autoroi.source import schema

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64, so pseudonyms never collide."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN * np.uint64(salt + 1)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hex_pseudonyms(ids: pa.Array | pa.ChunkedArray, salt: int = 0) -> pa.Array:
    """32 hex characters per integer id (two mixed 64-bit words), vectorized."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    x = np.asarray(ids.fill_null(0), dtype=np.int64).view(np.uint64)
    words = np.stack([_mix(x, salt), _mix(x, salt + 7)], axis=1).astype(">u8")
    raw = words.view(np.uint8).reshape(len(x), 16)
    out = np.empty((len(x), 32), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 0x0F]
    offsets = np.arange(0, 32 * (len(x) + 1), 32, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(len(x), pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))
    arr = arr.cast(pa.string())
    if ids.null_count:
        arr = pc.if_else(ids.is_null(), pa.scalar(None, pa.string()), arr)
    return arr


def _decimal_type(table: str, column: str) -> pa.DataType | None:
    col = schema.metadata.tables[table].c.get(column) if table in schema.metadata.tables else None
    if col is not None and isinstance(col.type, sa.Numeric) and not isinstance(col.type, sa.Float):
        return pa.decimal128(col.type.precision or 18, col.type.scale or 0)
    return None


def with_decimals(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Simulator tables with their ``Numeric`` columns as decimals (the
    simulator builds them as doubles), as the raw zone holds them when
    replicated from PostgreSQL."""
    out: dict[str, pa.Table] = {}
    for name, table in tables.items():
        for i, col in enumerate(table.column_names):
            dt = _decimal_type(name, col)
            if dt is not None and pa.types.is_floating(table.schema.field(i).type):
                table = table.set_column(
                    i, pa.field(col, dt, table.schema.field(i).nullable), table.column(i).cast(dt)
                )
        out[name] = table
    return out


def curated_like(
    tables: Mapping[str, pa.Table],
    allow: Mapping[str, Mapping[str, Treatment]] = DEFAULT_ALLOW_LIST,
) -> dict[str, pa.Table]:
    """The curated form of simulator (or raw) tables: allowed columns only, ids
    pseudonymized, numerics as decimals."""
    out: dict[str, pa.Table] = {}
    for name, table in with_decimals(tables).items():
        treatments = allow.get(name)
        if treatments is None:
            continue
        cols: dict[str, pa.Array | pa.ChunkedArray] = {}
        for col in table.column_names:
            treatment = treatments.get(col)
            if treatment is None or treatment in ("age_band", "zip3"):
                continue
            arr = table.column(col)
            if treatment == "pseudonymize":
                arr = hex_pseudonyms(arr, salt=sum(col.encode()))
            cols[col] = arr
        out[name] = pa.table(cols)
    return out
