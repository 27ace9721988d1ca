"""Source schema changes: the lake follows what it can hold without losing or
reinterpreting data (an added column), and refuses, table by table, what it
cannot (an incompatible type change), while the other tables go on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from test_replication_support import (
    assert_lake_equals,
    config,
    error_lines,
    execute,
    generate,
    lake_table,
    manifest_versions,
    matches,
    run_cli,
    snap_from_arrow,
    source_snapshot,
    tree_state,
    update_rows,
)

from autoroi.replication import replicate_tables
from autoroi.source import schema

TABLES = sorted(schema.TABLE_ORDER)
SEED = 9


def test_added_column_arrives_with_its_values_for_every_row(source_url: str, tmp_path: Path) -> None:
    generate(source_url, seed=SEED, sales_rows=4_000)
    cfg = config(file_rows=2_000, lookback_seconds=0)
    lake = tmp_path / "lake"
    assert replicate_tables(cfg, source_url=source_url, lake_uri=str(lake)).ok

    # a migration adds a column and back-fills it without touching updated_at
    execute(
        source_url,
        "ALTER TABLE customers ADD COLUMN loyalty_tier VARCHAR(16)",
        "UPDATE customers SET loyalty_tier = CASE WHEN customer_id % 5 = 0 THEN NULL"
        " WHEN customer_id % 3 = 0 THEN 'gold' ELSE 'basic' END",
    )
    expected = source_snapshot(source_url)
    report = replicate_tables(cfg, source_url=source_url, lake_uri=str(lake))
    assert report.ok, [(t.table, t.message) for t in report.failed]
    by = {t.table: t for t in report.tables}
    assert by["customers"].status == "full_load", by["customers"]
    assert by["customers"].added_columns == ["loyalty_tier"]
    assert (by["customers"].inserted, by["customers"].deleted) == (0, 0)
    assert all(by[t].status == "unchanged" for t in TABLES if t != "customers")
    assert_lake_equals(expected, lake)
    customers = lake_table(lake, "customers")
    assert customers.schema.field("loyalty_tier").type == pa.string()
    tiers = customers.column("loyalty_tier").to_pylist()
    assert tiers.count(None) == len([k for k in expected["customers"].rows if k % 5 == 0])
    assert {"gold", "basic"} <= set(tiers)

    # later changes to the new column are ordinary change capture
    update_rows(
        source_url,
        "customers",
        [{"customer_id": 7, "loyalty_tier": "platinum", "updated_at": datetime(2031, 1, 1, tzinfo=UTC)}],
    )
    report = replicate_tables(cfg, source_url=source_url, lake_uri=str(lake))
    by = {t.table: t for t in report.tables}
    assert by["customers"].status == "incremental"
    assert (by["customers"].inserted, by["customers"].updated, by["customers"].deleted) == (0, 1, 0)
    assert_lake_equals(source_snapshot(source_url), lake)


def _break_a_column(source_url: str) -> tuple[str, str]:
    """An incompatible type change; returns (table, column)."""
    if source_url.startswith("sqlite"):
        # SQLite cannot alter a column's type: the table is rebuilt, as migration tools do
        execute(
            source_url,
            "CREATE TABLE regions_new (region_id INTEGER NOT NULL PRIMARY KEY, name INTEGER NOT NULL,"
            " super_region VARCHAR(64) NOT NULL, updated_at DATETIME NOT NULL)",
            "INSERT INTO regions_new SELECT region_id, region_id, super_region, updated_at FROM regions",
            "DROP TABLE regions",
            "ALTER TABLE regions_new RENAME TO regions",
        )
        return "regions", "name"
    execute(source_url, "ALTER TABLE dealers ALTER COLUMN size_class TYPE integer USING 1")
    return "dealers", "size_class"


def test_incompatible_type_change_fails_that_table_only(source_url: str, tmp_path: Path) -> None:
    generate(source_url, seed=SEED, sales_rows=4_000)
    cfg = config(file_rows=2_000)
    lake = tmp_path / "lake"
    assert replicate_tables(cfg, source_url=source_url, lake_uri=str(lake)).ok
    old = source_snapshot(source_url)
    versions = manifest_versions(str(lake), TABLES)

    table, column = _break_a_column(source_url)
    assert table != "vehicle_models"
    # ... and in the same run another table changes
    price = old["vehicle_models"].row(1)["msrp"] + 1
    update_rows(
        source_url,
        "vehicle_models",
        [{"model_id": 1, "msrp": price, "updated_at": datetime(2031, 1, 1, tzinfo=UTC)}],
    )
    new = source_snapshot(source_url)
    broken_files = tree_state(lake / "raw" / "_versions" / table)

    report = replicate_tables(cfg, source_url=source_url, lake_uri=str(lake))
    by = {t.table: t for t in report.tables}
    assert not report.ok
    assert [t.table for t in report.failed] == [table]
    failed = by[table]
    assert table in failed.message and column in failed.message, failed.message
    assert "\n" not in failed.message
    assert failed.version == versions[table]
    # the other tables replicate; the change made alongside arrives
    assert by["vehicle_models"].status == "incremental"
    assert by["vehicle_models"].updated == 1
    assert_lake_equals(new, lake, [t for t in TABLES if t != table])
    # the failed table keeps its last good version, untouched
    assert manifest_versions(str(lake), TABLES)[table] == versions[table]
    assert tree_state(lake / "raw" / "_versions" / table) == broken_files
    assert matches(old[table], snap_from_arrow(table, old[table].key, lake_table(lake, table)))

    # the command line says so and fails
    proc = run_cli("replicate", "--source-url", source_url, "--lake", str(lake))
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and table in lines[0] and column in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr

    # a full refresh of that table is the way out the message names
    assert "--full-refresh" in failed.message
    report = replicate_tables(
        cfg, source_url=source_url, lake_uri=str(lake), tables=[table], full_refresh=True
    )
    assert report.ok, [(t.table, t.message) for t in report.failed]
    assert_lake_equals(new, lake)
    assert pa.types.is_integer(lake_table(lake, table).schema.field(column).type)
