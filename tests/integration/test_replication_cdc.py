"""Replication into ``<lake>/raw``: full load, then change capture, checked row by
row against the source, on SQLite and on PostgreSQL (the same tests for both).

The lake is read the way any downstream tool reads it (``pyarrow.dataset`` on
``<lake>/raw/<table>``), the source with SQLAlchemy; see
``test_replication_support`` for the normalization.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_replication_support import (
    assert_lake_equals,
    config,
    describe_diff,
    diff_counts,
    execute,
    generate,
    insert_rows,
    lake_snapshot,
    lake_table,
    manifest_versions,
    mutate,
    source_snapshot,
    tree_state,
)

from autoroi.config import AutoroiConfig
from autoroi.lake import TableStore, open_lake
from autoroi.replication import ReplicationReport, replicate_tables
from autoroi.replication.cdc import TableResult
from autoroi.source import schema

TABLES = sorted(schema.TABLE_ORDER)
SEED = 11


def _replicate(
    cfg: AutoroiConfig, source_url: str, lake: Path, **kw: Any
) -> tuple[ReplicationReport, dict[str, TableResult]]:
    report = replicate_tables(cfg, source_url=source_url, lake_uri=str(lake), **kw)
    failed = [(t.table, t.message) for t in report.tables if t.status == "failed"]
    assert not failed, failed
    return report, {t.table: t for t in report.tables}


@pytest.mark.parametrize("lookback", [0, None], ids=["lookback0", "lookback-default"])
def test_full_load_then_cdc_keeps_lake_equal_to_source(
    source_url: str, tmp_path: Path, lookback: float | None
) -> None:
    generate(source_url, seed=SEED, sales_rows=6_000)
    cfg = config(file_rows=2_000, **({} if lookback is None else {"lookback_seconds": lookback}))
    lake = tmp_path / "lake"

    before = source_snapshot(source_url)
    assert sorted(before) == TABLES
    _, by = _replicate(cfg, source_url, lake)
    assert sorted(by) == TABLES
    for t in TABLES:
        assert by[t].status == "full_load", (t, by[t])
        assert by[t].rows == by[t].inserted == len(before[t].rows), t
        assert by[t].version == 1
    assert_lake_equals(before, lake)

    # the types are faithful: decimals stay decimals, timestamps are zoned (UTC), dates are dates
    sales_schema = lake_table(lake, "sales").schema
    assert sales_schema.field("sale_price").type == pa.decimal128(10, 2)
    assert sales_schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert sales_schema.field("sale_date").type == pa.date32()
    assert sales_schema.field("is_fleet").type == pa.bool_()
    # small file_rows: the sales table spans several files, each within the limit
    manifest = TableStore(open_lake(str(lake)), "raw", "sales").manifest()
    assert manifest is not None
    assert len(manifest.files) >= 3
    assert all(f.rows <= 2_000 for f in manifest.files)

    versions = {t: 1 for t in TABLES}
    for round_no in range(1, 4):
        mutate(source_url, seed=SEED)
        after = source_snapshot(source_url)
        _, by = _replicate(cfg, source_url, lake)
        assert_lake_equals(after, lake)

        lake_now = lake_snapshot(lake, {t: after[t].key for t in TABLES})
        assert all(lake_now[t].duplicates == 0 for t in TABLES)
        assert "delivery_date" in lake_table(lake, "sales").schema.names

        for t in TABLES:
            res = by[t]
            assert res.rows == len(after[t].rows), (round_no, t, res)
            expected = diff_counts(before[t], after[t])
            if round_no == 1 and t == "sales":
                # the first batch adds sales.delivery_date: the table is reloaded in full
                assert res.status == "full_load", res
                assert res.added_columns == ["delivery_date"], res
                # a reload counts inserts and deletes by key (every row is rewritten, updates are not told)
                assert (res.inserted, res.deleted) == (expected[0], expected[2]), res
            elif expected == (0, 0, 0):
                assert res.status == "unchanged", (round_no, t, res)
                assert res.version == versions[t]
            else:
                assert res.status == "incremental", (round_no, t, res)
                assert (res.inserted, res.updated, res.deleted) == expected, (round_no, t, res)
            if res.status != "unchanged":
                assert res.version == versions[t] + 1, (round_no, t, res)
            assert res.version is not None
            versions[t] = res.version
        sales_diff = diff_counts(before["sales"], after["sales"])
        assert all(n > 0 for n in sales_diff), f"mutate should insert, update and delete sales: {sales_diff}"
        before = after

    # nothing changed at the source: nothing changes in the lake
    assert manifest_versions(str(lake), TABLES) == versions
    files = tree_state(lake / "raw")
    _, by = _replicate(cfg, source_url, lake)
    assert {t: by[t].status for t in TABLES} == {t: "unchanged" for t in TABLES}
    assert {t: by[t].version for t in TABLES} == versions
    assert manifest_versions(str(lake), TABLES) == versions
    assert tree_state(lake / "raw") == files
    assert_lake_equals(before, lake)


def test_deletes_of_old_rows_are_found(source_url: str, tmp_path: Path) -> None:
    """Rows deleted long after their last update leave no trace for the
    watermark. PostgreSQL (wal_level=logical here) has them from the
    replication slot; SQLite by comparing keys per bucket (narrow buckets
    here, so that several differ and several do not)."""
    generate(source_url, seed=SEED, sales_rows=5_000)
    cfg = config(file_rows=2_000, lookback_seconds=0, key_bucket_width=512)
    lake = tmp_path / "lake"
    _replicate(cfg, source_url, lake)
    versions = manifest_versions(str(lake), TABLES)

    gone = [1, 2, 3, 700, 2_001, 4_999]
    execute(source_url, f"DELETE FROM sales WHERE sale_id IN ({', '.join(map(str, gone))})")
    expected = source_snapshot(source_url)
    assert not set(gone) & set(expected["sales"].rows)

    _, by = _replicate(cfg, source_url, lake)
    sales = by["sales"]
    assert sales.status == "incremental", sales
    assert sales.deletes == ("logical" if source_url.startswith("postgresql") else "reconcile"), sales
    assert (sales.inserted, sales.updated, sales.deleted) == (0, 0, len(gone))
    assert sales.rows == 5_000 - len(gone)
    assert_lake_equals(expected, lake)
    for t in TABLES:
        if t != "sales":
            assert by[t].status == "unchanged", by[t]
    assert manifest_versions(str(lake), TABLES) == {**versions, "sales": versions["sales"] + 1}


def test_late_insert_older_than_the_look_back_is_caught(source_url: str, tmp_path: Path) -> None:
    """A transaction that commits late carries an ``updated_at`` far behind the
    watermark (beyond the default look-back): reconciliation fetches it by key.
    (With deletes from the replication slot, only a verification run sees it:
    test_replication_logical.)"""
    generate(source_url, seed=SEED, sales_rows=5_000)
    cfg = config(file_rows=2_000, delete_capture="reconcile")  # default look-back
    lake = tmp_path / "lake"
    _replicate(cfg, source_url, lake)
    store = TableStore(open_lake(str(lake)), "raw", "sales")
    manifest = store.manifest()
    assert manifest is not None
    watermark = datetime.fromisoformat(manifest.state["watermark"])

    late = datetime(2020, 1, 6, 12, 0, 0, tzinfo=UTC)  # years before the watermark
    assert watermark - late > timedelta(seconds=cfg.replication.lookback_seconds)
    row = source_snapshot(source_url, ["sales"])["sales"].row(10)
    insert_rows(source_url, "sales", [{**row, "sale_id": 9000001, "created_at": late, "updated_at": late}])
    expected = source_snapshot(source_url)
    assert 9000001 in expected["sales"].rows

    _, by = _replicate(cfg, source_url, lake)
    sales = by["sales"]
    assert sales.status == "incremental", sales
    assert (sales.inserted, sales.updated, sales.deleted) == (1, 0, 0)
    assert_lake_equals(expected, lake)
    # the late row does not move the watermark backwards
    manifest = store.manifest()
    assert manifest is not None
    assert datetime.fromisoformat(manifest.state["watermark"]) == watermark


def test_restored_and_cancelled_rows_with_equal_key_sums_are_reconciled(
    source_url: str, tmp_path: Path
) -> None:
    """Two cancelled sales (100, 103) are restored from a backup (their old
    ``updated_at`` kept), while two others (101, 102) are cancelled. Both the
    row count and the key sum of the bucket are unchanged (100 + 103 = 101 +
    102), and nothing is newer than the watermark, yet the lake must follow."""
    generate(source_url, seed=SEED, sales_rows=3_000)
    cfg = config(file_rows=2_000, lookback_seconds=0, delete_capture="reconcile")
    lake = tmp_path / "lake"
    _replicate(cfg, source_url, lake)
    original = source_snapshot(source_url, ["sales"])["sales"]

    execute(source_url, "DELETE FROM sales WHERE sale_id IN (100, 103)")
    _, by = _replicate(cfg, source_url, lake)
    assert by["sales"].deleted == 2

    insert_rows(source_url, "sales", [original.row(100), original.row(103)], delete_keys=[101, 102])
    expected = source_snapshot(source_url)
    assert {100, 103} <= set(expected["sales"].rows) and not {101, 102} & set(expected["sales"].rows)

    _, by = _replicate(cfg, source_url, lake)
    diff = describe_diff(expected["sales"], lake_snapshot(lake, {"sales": "sale_id"})["sales"])
    assert not diff, diff
    assert (by["sales"].inserted, by["sales"].deleted) == (2, 2), by["sales"]
