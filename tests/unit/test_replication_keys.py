"""Change capture on small hand-made SQLite tables: keys of every sign and
size, narrow key buckets, tables without an integer key or an ``updated_at``,
rows without a timestamp. Each test compares the lake with the source row by
row (``pyarrow.dataset`` on ``<lake>/raw/<table>``)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa

from autoroi.config import load_config
from autoroi.replication import replicate_tables
from autoroi.replication.source import SourceReader, bucket_fingerprints

OLD = "2024-01-01 00:00:00.000000"


def _db(tmp_path: Path, ddl: str, rows: list[tuple[Any, ...]], insert: str) -> Path:
    path = tmp_path / "src.sqlite"
    with sqlite3.connect(path) as c:
        c.execute(ddl)
        c.executemany(insert, rows)
    return path


def _sql(path: Path, *statements: tuple[str, tuple[Any, ...]] | str) -> None:
    with sqlite3.connect(path) as c:
        for s in statements:
            if isinstance(s, tuple):
                c.execute(*s)
            else:
                c.execute(s)


def _replicate(path: Path, lake: Path, **replication: Any) -> dict[str, Any]:
    cfg = load_config(overrides={"replication": {"lookback_seconds": 0, **replication}})
    report = replicate_tables(cfg, source_url=f"sqlite:///{path}", lake_uri=str(lake))
    return {t.table: t for t in report.tables}


def _source_rows(path: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as c:
        return [tuple(r) for r in c.execute(f"SELECT * FROM {table} ORDER BY {order}")]


def _lake_rows(lake: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    t = pads.dataset(str(lake / "raw" / table), format="parquet").to_table().sort_by(order)
    out = []
    for r in t.to_pylist():
        values = []
        for v in r.values():
            if isinstance(v, datetime):  # SQLite holds naive UTC text
                v = v.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
            values.append(v)
        out.append(tuple(values))
    return out


def _assert_equal(path: Path, lake: Path, table: str, order: str) -> None:
    assert _lake_rows(lake, table, order) == _source_rows(path, table, order)


EVENTS = "CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at DATETIME)"
INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?)"


def test_lake_fingerprints_match_the_servers_for_keys_of_both_signs(tmp_path: Path) -> None:
    keys = np.array([-70_000, -65_537, -65_536, -65_535, -17, -16, -15, -1, 0, 1, 15, 16, 17, 65_535, 65_536])
    path = _db(tmp_path, EVENTS, [(int(k), "x", OLD) for k in keys], INSERT_EVENT)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with SourceReader(engine) as reader:
            st = reader.reflect("events")
            for width in (16, 65_536):
                assert reader.bucket_stats(st, width) == bucket_fingerprints(keys.astype(np.int64), width)
    finally:
        engine.dispose()


def test_negative_keys_and_narrow_buckets(tmp_path: Path) -> None:
    path = _db(tmp_path, EVENTS, [(k, f"p{k}", OLD) for k in range(-300, 301)], INSERT_EVENT)
    lake = tmp_path / "lake"
    assert _replicate(path, lake, key_bucket_width=16)["events"].status == "full_load"
    # deletes in negative, zero and positive buckets, nothing newer than the watermark ...
    _sql(path, "DELETE FROM events WHERE id IN (-300, -17, -16, -1, 0, 1, 16, 299)")
    # ... a late insert with an old timestamp, and a real update
    _sql(
        path,
        (INSERT_EVENT, (-1_000, "late", "2020-01-01 00:00:00.000000")),
        ("UPDATE events SET payload = 'new', updated_at = ? WHERE id = -5", ("2025-01-01 00:00:00.000000",)),
    )
    res = _replicate(path, lake, key_bucket_width=16)["events"]
    assert res.status == "incremental", res
    assert (res.inserted, res.updated, res.deleted) == (1, 1, 8)
    _assert_equal(path, lake, "events", "id")


def test_large_keys_do_not_break_reconciliation(tmp_path: Path) -> None:
    """Snowflake-style ids (about 1.8e18) are ordinary BIGINT keys; the key
    fingerprints must not overflow (SQLite's sum() raises on overflow)."""
    base = 1_800_000_000_000_000_000
    path = _db(tmp_path, EVENTS, [(base + i * 1_000, f"p{i}", OLD) for i in range(50)], INSERT_EVENT)
    lake = tmp_path / "lake"
    _replicate(path, lake)
    _sql(path, f"DELETE FROM events WHERE id = {base + 3_000}")
    res = _replicate(path, lake)["events"]
    assert res.status == "incremental", res.message
    assert res.deleted == 1
    _assert_equal(path, lake, "events", "id")


@pytest.mark.parametrize(
    ("ddl", "order"),
    [
        ("CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT, updated_at DATETIME)", "code"),
        ("CREATE TABLE codes (code TEXT, label TEXT, updated_at DATETIME)", "code"),  # no key at all
        ("CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT, label TEXT)", "id"),  # no updated_at
    ],
    ids=["text-key", "no-key", "no-updated-at"],
)
def test_tables_without_integer_key_or_timestamp_are_reloaded_when_they_change(
    tmp_path: Path, ddl: str, order: str
) -> None:
    with_id = "id INTEGER" in ddl
    cols = "(id, code, label)" if with_id else "(code, label, updated_at)"
    rows = [
        ((i, f"c{i:03d}", f"label {i}") if with_id else (f"c{i:03d}", f"label {i}", OLD)) for i in range(40)
    ]
    path = _db(tmp_path, ddl, rows, f"INSERT INTO codes {cols} VALUES (?, ?, ?)")
    lake = tmp_path / "lake"
    first = _replicate(path, lake, key_bucket_width=16)["codes"]
    assert first.status == "full_load" and first.rows == 40
    again = _replicate(path, lake)["codes"]
    assert again.status == "unchanged" and again.version == first.version
    # a change without any timestamp: only a full comparison can see it
    _sql(
        path,
        "UPDATE codes SET label = 'changed' WHERE code = 'c007'",
        "DELETE FROM codes WHERE code = 'c010'",
    )
    changed = _replicate(path, lake)["codes"]
    assert changed.status == "full_load" and changed.version == first.version + 1
    assert changed.rows == 39
    _assert_equal(path, lake, "codes", order)


def test_rows_without_updated_at_are_followed(tmp_path: Path) -> None:
    rows = [(i, f"p{i}", None if i % 4 == 0 else OLD) for i in range(1, 41)]
    path = _db(tmp_path, EVENTS, rows, INSERT_EVENT)
    lake = tmp_path / "lake"
    _replicate(path, lake)
    assert _replicate(path, lake)["events"].status == "unchanged"
    _sql(path, "UPDATE events SET payload = 'edited' WHERE id = 8")  # its updated_at is NULL
    res = _replicate(path, lake)["events"]
    assert (res.status, res.updated) == ("incremental", 1)
    _assert_equal(path, lake, "events", "id")


def test_sorted_union_matches_numpy():
    import numpy as np

    from autoroi.replication.cdc import sorted_union

    rng = np.random.default_rng(3)
    a = np.unique(rng.integers(-1000, 1000, 700))
    b = rng.permutation(np.unique(rng.integers(-1500, 500, 300)))
    assert np.array_equal(sorted_union(a, b), np.union1d(a, b))
    assert np.array_equal(sorted_union(a[:0], b[:0]), np.union1d(a[:0], b[:0]))
    assert np.array_equal(sorted_union(a[:1], b[:0]), a[:1])


def test_member_matches_isin():
    import numpy as np

    from autoroi.replication.cdc import member

    rng = np.random.default_rng(9)
    a = rng.integers(-50, 50, 400)
    b = rng.integers(-30, 80, 60)
    assert np.array_equal(member(a, b), np.isin(a, b))
    assert not member(a, b[:0]).any() and len(member(a[:0], b)) == 0
    big = np.array([2**62, -(2**62), 7], dtype=np.int64)
    assert member(big, big[:1]).tolist() == [True, False, False]
