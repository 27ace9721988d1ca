"""Pieces of the copy-on-write merge: reading a lake file by row group, and
the choice of dictionary-encoded columns for rewritten files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autoroi.lake import TableStore, open_lake
from autoroi.replication.cdc import _dictionary_columns, _RowGroups


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
