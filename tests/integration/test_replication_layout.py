"""Where rows land in the lake's files: rows that PostgreSQL stores out of
key order (new rows in free space early in the table) get a file of their own
at a full load, so that later changes of recent rows do not rewrite old files;
a lake laid out before that heals at its first rewrite. Every check also
compares the lake with the source row by row: each row exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from test_replication_support import (
    assert_lake_equals,
    config,
    engine_for,
    execute,
    generate,
    mutate,
    source_snapshot,
)

from autoroi.config import AutoroiConfig
from autoroi.lake import TableStore, open_lake
from autoroi.lake.tables import TableManifest
from autoroi.replication import cdc, replicate_tables

pytestmark = pytest.mark.postgres

SEED = 17
FAR = 10_000_000  # keys of the rows put into free space: far beyond the table's
# the simulator's clock runs ahead of the real one: a change must come after its latest
LATER = "(SELECT max(updated_at) + interval '1 minute' FROM sales)"


def _sales(lake: Path) -> TableManifest:
    manifest = TableStore(open_lake(str(lake)), "raw", "sales").manifest()
    assert manifest is not None
    return manifest


def _replicate(cfg: AutoroiConfig, url: str, lake: Path) -> cdc.TableResult:
    report = replicate_tables(cfg, source_url=url, lake_uri=str(lake), tables=["sales"])
    assert report.ok, [(t.table, t.message) for t in report.failed]
    return report.tables[0]


def _rows_into_free_space(url: str, n: int = 60) -> list[int]:
    """Delete the first rows of ``sales``, vacuum, and insert ``n`` copies of
    other rows under new keys: PostgreSQL puts them into the freed space in the
    first pages. Returns the new keys, after checking where they landed."""
    execute(url, "DELETE FROM sales WHERE sale_id IN (SELECT sale_id FROM sales ORDER BY sale_id LIMIT 400)")
    engine = engine_for(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM sales")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TEMP TABLE moved ON COMMIT DROP AS SELECT * FROM sales"
                f" WHERE sale_id IN (SELECT sale_id FROM sales ORDER BY sale_id DESC LIMIT {n})"
            )
            conn.exec_driver_sql(f"UPDATE moved SET sale_id = sale_id + {FAR}, updated_at = {LATER}")
            conn.exec_driver_sql("INSERT INTO sales SELECT * FROM moved")
            rows = conn.execute(
                sa.text(f"SELECT sale_id, (ctid::text::point)[0] FROM sales WHERE sale_id > {FAR} ORDER BY 1")
            ).all()
    finally:
        engine.dispose()
    assert max(page for _, page in rows) < 20, "the test's premise: the new rows sit in the first pages"
    return [int(key) for key, _ in rows]


def _correct(url: str, keys: list[int]) -> None:
    ids = ", ".join(str(k) for k in keys)
    execute(
        url, f"UPDATE sales SET sale_price = sale_price + 1, updated_at = {LATER} WHERE sale_id IN ({ids})"
    )


def test_full_load_gives_rows_out_of_key_order_a_file_of_their_own(pg_url: str, tmp_path: Path) -> None:
    generate(pg_url, seed=SEED, sales_rows=20_000)
    mutate(pg_url, seed=SEED)  # the column migration is behind us: later runs are incremental
    far_keys = _rows_into_free_space(pg_url)
    cfg = config(file_rows=4_000)
    lake = tmp_path / "lake"

    assert _replicate(cfg, pg_url, lake).status == "full_load"
    assert_lake_equals(source_snapshot(pg_url, ["sales"]), lake, ["sales"])
    m1 = _sales(lake)
    first, strays = m1.files[0], m1.files[-1]
    assert first.key_max is not None and first.key_max < 5_000, "the first file keeps its own key range"
    assert (strays.key_min, strays.key_max, strays.rows) == (far_keys[0], far_keys[-1], len(far_keys))

    # a correction of those recent rows rewrites their small file, not the first one
    _correct(pg_url, far_keys[:5])
    result = _replicate(cfg, pg_url, lake)
    assert (result.status, result.updated, result.inserted, result.deleted) == ("incremental", 5, 0, 0)
    assert_lake_equals(source_snapshot(pg_url, ["sales"]), lake, ["sales"])
    m2 = _sales(lake)
    assert {f.name for f in m2.files} ^ {f.name for f in m1.files} == {strays.name, m2.files[-1].name}


def test_a_lake_laid_out_before_heals_at_its_first_rewrite(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(pg_url, seed=SEED, sales_rows=20_000)
    mutate(pg_url, seed=SEED)
    far_keys = _rows_into_free_space(pg_url)
    cfg = config(file_rows=4_000)
    lake = tmp_path / "lake"
    with monkeypatch.context() as m:  # the full load of an earlier version: rows where the heap had them
        m.setattr(cdc, "stray_rows", lambda keys: None)
        _replicate(cfg, pg_url, lake)
    m1 = _sales(lake)
    first = m1.files[0]
    assert first.key_max is not None and first.key_max > FAR  # the old layout: one wide first file

    _correct(pg_url, far_keys[:3])
    result = _replicate(cfg, pg_url, lake)
    assert (result.status, result.updated, result.inserted) == ("incremental", 3, 0)
    assert_lake_equals(source_snapshot(pg_url, ["sales"]), lake, ["sales"])
    m2 = _sales(lake)
    assert first.name not in {f.name for f in m2.files}  # rewritten once ...
    new_first = m2.files[0]
    assert new_first.key_max is not None and new_first.key_max < 5_000  # ... without the strays
    holding = [f for f in m2.files if f.key_max is not None and f.key_max >= far_keys[0]]
    assert len(holding) == 1  # moved out with the inserts: into the last file, topped up

    # the next correction of those rows leaves the first file alone
    _correct(pg_url, far_keys[3:6])
    assert _replicate(cfg, pg_url, lake).updated == 3
    assert_lake_equals(source_snapshot(pg_url, ["sales"]), lake, ["sales"])
    m3 = _sales(lake)
    assert new_first.name in {f.name for f in m3.files}
    assert m3.rows == m1.rows
