"""Pieces of the copy-on-write merge: reading a lake file by row group, the
choice of dictionary-encoded columns for rewritten files, and how a full load
keeps rows out of key order apart (strays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoroi.lake import TableStore, open_lake
from autoroi.replication.cdc import _dictionary_columns, _RowGroups, _write_batches, stray_rows


def _file(tmp_path: Path) -> tuple[str, TableStore, pa.Table]:
    table = pa.table(
        {
            "id": pa.array(np.arange(10_000), pa.int64()),
            "region": pa.array([f"r{i % 7}" for i in range(10_000)]),
            "price": pa.array(np.arange(10_000) * 1.5),
            "fleet": pa.array([i % 2 == 0 for i in range(10_000)]),
        }
    )
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, row_group_size=3_000)  # groups of 3000, 3000, 3000, 1000
    return str(path), TableStore(open_lake(str(tmp_path / "lake")), "raw", "t"), table


def test_rows_are_read_by_row_group_and_kept_in_file_order(tmp_path: Path) -> None:
    path, store, table = _file(tmp_path)
    mask = np.zeros(10_000, dtype=bool)
    mask[[5, 3_100, 3_200]] = True
    f = _RowGroups(path, store, table.schema)
    assert f.rows(mask, whole=False).column("id").to_pylist() == [5, 3_100, 3_200]
    assert sorted(f.groups) == [0, 1]  # only the row groups that hold a wanted row were read
    rest = f.rows(~mask, whole=True)
    assert sorted(f.groups) == [0, 1, 2, 3]
    assert rest.num_rows == 9_997
    assert rest.column("id").to_pylist() == [i for i in range(10_000) if i not in (5, 3_100, 3_200)]
    assert f.rows(np.zeros(10_000, dtype=bool), whole=False).num_rows == 0


def test_dictionary_only_for_columns_with_few_values(tmp_path: Path) -> None:
    _, _, table = _file(tmp_path)
    assert _dictionary_columns(table) == ["region", "fleet"]


# -- strays -----------------------------------------------------------------------
def test_keys_far_outside_their_batch_are_strays() -> None:
    keys = np.arange(1, 10_001, dtype=np.int64)
    keys[[3, 500, 9_000]] = [5_000_000, 4_999_000, 7]  # new rows in free space; 7 is in range
    mask = stray_rows(keys)
    assert mask is not None
    assert np.flatnonzero(mask).tolist() == [3, 500]


@pytest.mark.parametrize(
    "keys",
    [
        np.arange(10_000, dtype=np.int64),  # in key order
        np.random.default_rng(1).permutation(10_000_000)[:10_000].astype(np.int64),  # no order at all
        np.arange(10_000, dtype=np.int64) * 1_000 - 2**62,  # sparse keys, near the int64 limit
        np.full(10_000, 42, dtype=np.int64),  # no spread
        np.arange(999, dtype=np.int64) * 0 + np.r_[np.arange(998), 10**9],  # too few keys to tell
    ],
)
def test_no_strays_without_keys_far_out(keys: np.ndarray) -> None:
    assert stray_rows(keys) is None


def test_extreme_keys_do_not_overflow() -> None:
    keys = np.r_[np.arange(5_000, dtype=np.int64), np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    mask = stray_rows(keys)
    assert mask is not None and np.flatnonzero(mask).tolist() == [5_000, 5_001]


def _heap(n: int, strays: dict[int, int]) -> pa.Table:
    """Rows in the order a table stored in key order gives them, except that
    ``strays`` (position -> key) sit where free space was."""
    keys = np.arange(1, n + 1, dtype=np.int64)
    keys[list(strays)] = list(strays.values())
    return pa.table({"id": keys, "v": keys * 10})


def _full_load(tmp_path: Path, table: pa.Table, file_rows: int, batch: int = 2_500) -> TableStore:
    store = TableStore(open_lake(str(tmp_path / "lake")), "raw", "t")
    writer = store.begin()
    written = _write_batches(writer, table.schema, table.to_batches(batch), "id", file_rows)
    assert written == table.num_rows
    writer.commit(table.schema)
    return store


def _every_row_once(store: TableStore, table: pa.Table) -> None:
    got = store.read().sort_by("id")
    assert got.num_rows == table.num_rows
    assert got.equals(table.sort_by("id"))


def test_full_load_writes_strays_apart_and_every_row_once(tmp_path: Path) -> None:
    n = 20_000
    # keys of rows inserted later, stored in free space early in the table
    high = {7: 10 * n, 1_234: 10 * n + 1, 2_000: 10 * n + 2, 12_345: 10 * n + 3}
    table = _heap(n, high)
    store = _full_load(tmp_path, table, file_rows=5_000)
    manifest = store.manifest()
    assert manifest is not None
    _every_row_once(store, table)
    ranges = [(f.rows, f.key_min, f.key_max) for f in manifest.files]
    # the files keep tight key ranges; the strays come last, in key order, in a file of their own
    assert ranges == [
        (5_000, 1, 5_003),
        (5_000, 5_004, 10_003),
        (5_000, 10_004, 15_004),
        (4_996, 15_005, 20_000),
        (4, 10 * n, 10 * n + 3),
    ]
    last = store.read(manifest, files=[manifest.files[-1].name])
    assert last.column("id").to_pylist() == sorted(high.values())


def test_rows_near_their_batch_are_not_strays(tmp_path: Path) -> None:
    """Only keys far beyond the batch's own spread are held back: a row a few
    thousand keys out of place stays where it is."""
    table = _heap(20_000, {10: 25_000})
    store = _full_load(tmp_path, table, file_rows=5_000)
    manifest = store.manifest()
    assert manifest is not None
    assert [f.rows for f in manifest.files] == [5_000, 5_000, 5_000, 5_000]
    assert store.read().column("id").to_pylist() == table.column("id").to_pylist()


def test_strays_are_written_out_once_a_file_of_them_is_held(tmp_path: Path) -> None:
    """Held strays stay below ``file_rows``: a table with many of them streams
    them into files as it goes."""
    n, file_rows = 30_000, 2_000
    rng = np.random.default_rng(3)
    where = rng.choice(n, 4_500, replace=False)
    table = _heap(n, {int(p): 10_000_000 + int(p) for p in where})  # 15 % strays
    store = _full_load(tmp_path, table, file_rows=file_rows, batch=5_000)
    manifest = store.manifest()
    assert manifest is not None
    _every_row_once(store, table)
    assert all(f.rows <= file_rows for f in manifest.files)
    stray_files = [f for f in manifest.files if f.key_min is not None and f.key_min >= 10_000_000]
    assert sum(f.rows for f in stray_files) == 4_500
    assert len(stray_files) >= 3  # written as they came, not held to the end
    for f in manifest.files:
        if f not in stray_files:
            assert f.key_max is not None and f.key_max <= n


def test_a_table_without_key_order_is_written_as_it_comes(tmp_path: Path) -> None:
    keys = np.random.default_rng(4).permutation(12_000).astype(np.int64)
    table = pa.table({"id": keys, "v": keys})
    store = _full_load(tmp_path, table, file_rows=5_000)
    manifest = store.manifest()
    assert manifest is not None
    assert [f.rows for f in manifest.files] == [5_000, 5_000, 2_000]
    assert store.read().column("id").to_pylist() == keys.tolist()  # same order, nothing held back
