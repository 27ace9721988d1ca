"""Deletes from PostgreSQL's logical decoding (a replication slot), against
the test server (``wal_level=logical``, the fixture's superuser).

Each test checks the lake row by row against the source, as the CDC suite
does, and what the slot did: its plugin, its position, and which mechanism
each table used (``TableResult.deletes``).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_replication_support import (
    FAILPOINT_EXIT,
    assert_lake_equals,
    cli_env,
    config,
    execute,
    generate,
    insert_rows,
    lake_snapshot,
    manifest_versions,
    mutate,
    run_cli,
    source_snapshot,
    tree_state,
    write_config,
)

from autoroi.config import AutoroiConfig
from autoroi.errors import SourceError
from autoroi.lake import TableStore, open_lake
from autoroi.replication import ReplicationReport, replicate_tables
from autoroi.replication.cdc import TableResult
from autoroi.replication.logical import LogicalCapture, lsn_int
from autoroi.source import schema

pytestmark = pytest.mark.postgres

TABLES = sorted(schema.TABLE_ORDER)
SEED = 13


def _replicate(
    cfg: AutoroiConfig, url: str, lake: Path, **kw: Any
) -> tuple[ReplicationReport, dict[str, TableResult]]:
    report = replicate_tables(cfg, source_url=url, lake_uri=str(lake), **kw)
    return report, {t.table: t for t in report.tables}


def _ok(cfg: AutoroiConfig, url: str, lake: Path, **kw: Any) -> dict[str, TableResult]:
    report, by = _replicate(cfg, url, lake, **kw)
    assert report.ok, [(t.table, t.message) for t in report.failed]
    return by


def _slots(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT slot_name, plugin, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots"
                    " WHERE database = current_database()"
                )
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def _cdc_lsn(lake: Path, table: str) -> int:
    manifest = TableStore(open_lake(str(lake)), "raw", table).manifest()
    assert manifest is not None
    return lsn_int(manifest.state["cdc"]["lsn"])


@pytest.mark.parametrize("plugin", ["pgoutput", "test_decoding"])
def test_deletes_come_from_the_slot(pg_url: str, tmp_path: Path, plugin: str) -> None:
    """Old rows deleted (nothing for the watermark to see), and a row deleted
    and then restored with its old ``updated_at`` in a later transaction: the
    slot names both keys; only the first are deletes."""
    generate(pg_url, seed=SEED, sales_rows=4_000)
    cfg = config(file_rows=1_500, lookback_seconds=0, logical_plugin=plugin)
    lake = tmp_path / "lake"
    by = _ok(cfg, pg_url, lake)
    assert all(by[t].status == "full_load" and by[t].deletes == "reload" for t in TABLES), by
    (slot,) = _slots(pg_url)
    assert slot["plugin"] == plugin and slot["slot_name"].startswith("autoroi_")
    assert lsn_int(slot["lsn"]) == _cdc_lsn(lake, "sales")

    original = source_snapshot(pg_url, ["sales"])["sales"]
    gone = [1, 2, 3, 700, 2_001, 3_999]
    execute(pg_url, f"DELETE FROM sales WHERE sale_id IN ({', '.join(map(str, gone))}, 50)")
    insert_rows(pg_url, "sales", [original.row(50)])  # restored from a backup, old updated_at
    execute(pg_url, "DELETE FROM program_eligibility WHERE eligibility_id = 1")
    expected = source_snapshot(pg_url)
    assert 50 in expected["sales"].rows

    by = _ok(cfg, pg_url, lake)
    sales = by["sales"]
    assert (sales.status, sales.deletes) == ("incremental", "logical"), sales
    assert (sales.inserted, sales.updated, sales.deleted) == (0, 0, len(gone)), sales
    assert (by["program_eligibility"].deleted, by["program_eligibility"].deletes) == (1, "logical")
    assert_lake_equals(expected, lake)
    (slot,) = _slots(pg_url)
    assert lsn_int(slot["lsn"]) == _cdc_lsn(lake, "sales")

    # nothing changed: nothing is published, yet the slot's position moves on
    versions = manifest_versions(str(lake), TABLES)
    files = tree_state(lake / "raw")
    execute(pg_url, "CREATE TABLE unrelated (id int PRIMARY KEY)", "INSERT INTO unrelated VALUES (1)")
    by = _ok(cfg, pg_url, lake, tables=TABLES)
    assert {t: by[t].status for t in TABLES} == dict.fromkeys(TABLES, "unchanged")
    assert {t: by[t].deletes for t in TABLES} == dict.fromkeys(TABLES, "logical")
    assert manifest_versions(str(lake), TABLES) == versions
    assert tree_state(lake / "raw") == files
    (after,) = _slots(pg_url)
    assert lsn_int(after["lsn"]) > lsn_int(slot["lsn"])
    assert_lake_equals(expected, lake)


def test_a_crash_between_the_lake_commit_and_the_slot_advance_is_harmless(
    pg_url: str, tmp_path: Path
) -> None:
    generate(pg_url, seed=SEED, sales_rows=4_000)
    mutate(pg_url, seed=SEED)  # the column migration is behind us: the next sales run is incremental
    lake = tmp_path / "lake"
    cfg_file = write_config(tmp_path / "cfg.yaml", file_rows=1_500)
    args = ("replicate", "--config", str(cfg_file), "--source-url", pg_url, "--lake", str(lake))
    assert run_cli(*args).returncode == 0
    v0 = manifest_versions(str(lake), TABLES)
    (slot0,) = _slots(pg_url)
    mutate(pg_url, seed=SEED)
    execute(pg_url, "DELETE FROM sales WHERE sale_id IN (5, 6, 7)")
    s1 = source_snapshot(pg_url)

    proc = run_cli(*args, env=cli_env(AUTOROI_FAILPOINT="replicate.before_slot_advance"))
    assert proc.returncode == FAILPOINT_EXIT, proc.stderr[-2000:]
    # every table is published, the slot was not advanced
    assert_lake_equals(s1, lake)
    assert manifest_versions(str(lake), TABLES)["sales"] == v0["sales"] + 1
    (slot,) = _slots(pg_url)
    assert slot["lsn"] == slot0["lsn"]
    assert _cdc_lsn(lake, "sales") > lsn_int(slot0["lsn"])

    # the next run reads the same deletes again: applying them twice changes nothing
    by = _ok(config(file_rows=1_500), pg_url, lake)
    assert {t: by[t].status for t in TABLES} == dict.fromkeys(TABLES, "unchanged"), by
    assert by["sales"].deletes == "logical"
    assert_lake_equals(s1, lake)
    lake_now = lake_snapshot(lake, {t: s1[t].key for t in TABLES})
    assert all(lake_now[t].duplicates == 0 for t in TABLES)
    (slot,) = _slots(pg_url)
    assert lsn_int(slot["lsn"]) >= _cdc_lsn(lake, "sales")


def test_a_table_that_failed_gets_its_deletes_on_the_next_run(pg_url: str, tmp_path: Path) -> None:
    """The slot only moves to the smallest position over all tables: while
    ``sales`` fails (an incompatible type change), the slot keeps its
    deletes, which arrive once the table replicates again."""
    generate(pg_url, seed=SEED, sales_rows=3_000)
    cfg = config(file_rows=1_500, lookback_seconds=0)
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    sales_lsn = _cdc_lsn(lake, "sales")
    execute(
        pg_url,
        "DELETE FROM sales WHERE sale_id IN (10, 20, 30)",
        "DELETE FROM program_eligibility WHERE eligibility_id IN (1, 2)",
        "ALTER TABLE sales ALTER COLUMN is_fleet TYPE integer USING is_fleet::int",
    )
    report, by = _replicate(cfg, pg_url, lake)
    assert [t.table for t in report.failed] == ["sales"]
    assert (by["program_eligibility"].deleted, by["program_eligibility"].deletes) == (2, "logical")
    (slot,) = _slots(pg_url)
    assert lsn_int(slot["lsn"]) == sales_lsn, "the failed table holds the slot"
    assert _cdc_lsn(lake, "program_eligibility") > sales_lsn

    execute(pg_url, "ALTER TABLE sales ALTER COLUMN is_fleet TYPE boolean USING is_fleet <> 0")
    by = _ok(cfg, pg_url, lake)
    assert (by["sales"].status, by["sales"].deletes, by["sales"].deleted) == ("incremental", "logical", 3)
    assert by["program_eligibility"].status == "unchanged"
    assert_lake_equals(source_snapshot(pg_url), lake)
    (slot,) = _slots(pg_url)
    assert lsn_int(slot["lsn"]) == _cdc_lsn(lake, "sales") > sales_lsn


def test_a_lost_slot_falls_back_to_reconciliation_with_a_warning(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    generate(pg_url, seed=SEED, sales_rows=3_000)
    cfg = config(file_rows=1_500, lookback_seconds=0)
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    (slot,) = _slots(pg_url)
    # the documented way to stop the server keeping WAL for the lake
    proc = run_cli("replicate", "--drop-slot", "--source-url", pg_url, "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"dropped replication slot {slot['slot_name']} and publication" in proc.stdout
    assert _slots(pg_url) == []
    execute(pg_url, "DELETE FROM sales WHERE sale_id IN (11, 12)")

    with caplog.at_level(logging.WARNING, logger="autoroi.replication"):
        by = _ok(cfg, pg_url, lake)
    assert (by["sales"].deletes, by["sales"].deleted) == ("reconcile", 2), by["sales"]
    assert "no longer holds" in by["sales"].message
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sales" in m and "no longer holds" in m for m in warned), warned
    assert_lake_equals(source_snapshot(pg_url), lake)

    # the slot is back, and the next run uses it
    assert [s["slot_name"] for s in _slots(pg_url)] == [slot["slot_name"]]
    execute(pg_url, "DELETE FROM sales WHERE sale_id = 13")
    by = _ok(cfg, pg_url, lake)
    assert (by["sales"].deletes, by["sales"].deleted) == ("logical", 1), by["sales"]
    assert_lake_equals(source_snapshot(pg_url), lake)


def test_reconcile_mode_uses_no_slot(pg_url: str, tmp_path: Path) -> None:
    generate(pg_url, seed=SEED, sales_rows=3_000)
    cfg = config(file_rows=1_500, delete_capture="reconcile")
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    execute(pg_url, "DELETE FROM sales WHERE sale_id IN (14, 15)")
    by = _ok(cfg, pg_url, lake)
    assert (by["sales"].deletes, by["sales"].deleted) == ("reconcile", 2), by["sales"]
    assert_lake_equals(source_snapshot(pg_url), lake)
    assert _slots(pg_url) == []
    assert not (lake / "_replication").exists()


def test_truncate_reloads_the_table(pg_url: str, tmp_path: Path) -> None:
    generate(pg_url, seed=SEED, sales_rows=2_000)
    cfg = config(file_rows=1_500, lookback_seconds=0)
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    old = source_snapshot(pg_url, ["program_eligibility"])["program_eligibility"]
    keep = sorted(old.rows)[:2]
    execute(pg_url, "TRUNCATE program_eligibility")
    insert_rows(pg_url, "program_eligibility", [old.row(k) for k in keep])  # their old updated_at

    by = _ok(cfg, pg_url, lake)
    result = by["program_eligibility"]
    assert result.status == "full_load" and "truncated" in result.message, result
    assert (result.rows, result.deleted) == (2, len(old.rows) - 2)
    assert_lake_equals(source_snapshot(pg_url), lake)


def test_a_slot_that_cannot_be_read_fails_the_run_before_any_publish(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot is read in a thread while the tables read their changed rows;
    when reading it fails, the run fails as a whole, with that error, and no
    table publishes (each waits for the slot before it publishes)."""
    generate(pg_url, seed=SEED, sales_rows=2_000)
    cfg = config(file_rows=1_500)
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    execute(pg_url, "DELETE FROM sales WHERE sale_id IN (1, 2)", "UPDATE dealers SET updated_at = now()")
    versions = manifest_versions(str(lake), TABLES)
    files = tree_state(lake / "raw")

    def broken(self: LogicalCapture, *args: Any) -> None:
        raise SourceError("logical decoding on the source failed: boom")

    monkeypatch.setattr(LogicalCapture, "collect", broken)
    with pytest.raises(SourceError, match="boom"):
        replicate_tables(cfg, source_url=pg_url, lake_uri=str(lake))
    assert manifest_versions(str(lake), TABLES) == versions
    assert tree_state(lake / "raw") == files
    monkeypatch.undo()
    _ok(cfg, pg_url, lake)
    assert_lake_equals(source_snapshot(pg_url), lake)


def test_verification_runs_reconcile_keys(pg_url: str, tmp_path: Path) -> None:
    """A row inserted with an old ``updated_at`` is invisible to the watermark
    and is no delete: with deletes from the slot, the periodic verification
    (``verify_every_runs``) is what finds it."""
    generate(pg_url, seed=SEED, sales_rows=2_000)
    cfg = config(file_rows=1_500, verify_every_runs=2)
    lake = tmp_path / "lake"
    _ok(cfg, pg_url, lake)
    row = source_snapshot(pg_url, ["sales"])["sales"].row(10)
    insert_rows(pg_url, "sales", [{**row, "sale_id": 9_000_001}])  # row 10's old updated_at

    by = _ok(cfg, pg_url, lake)
    assert (by["sales"].status, by["sales"].deletes) == ("unchanged", "logical"), by["sales"]
    by = _ok(cfg, pg_url, lake)
    assert (by["sales"].deletes, by["sales"].inserted) == ("reconcile", 1), by["sales"]
    assert "verification" in by["sales"].message
    assert_lake_equals(source_snapshot(pg_url), lake)
    by = _ok(cfg, pg_url, lake)
    assert by["sales"].deletes == "logical"


def test_logical_mode_is_refused_where_the_source_cannot_do_it(
    pg_url: str, postgres_server: Any, tmp_path: Path
) -> None:
    generate(pg_url, seed=SEED, sales_rows=500)
    role, pw = f"reader_{uuid.uuid4().hex[:8]}", "rpw-" + uuid.uuid4().hex[:8]
    execute(
        pg_url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
    )
    host, port, db = postgres_server.host, postgres_server.port, pg_url.rsplit("/", 1)[1]
    url = f"postgresql+psycopg://{role}:{pw}@{host}:{port}/{db}"
    try:
        with pytest.raises(SourceError, match="REPLICATION"):
            replicate_tables(config(delete_capture="logical"), source_url=url, lake_uri=str(tmp_path / "a"))
        # auto: reconciliation, no slot
        by = _ok(config(), url, tmp_path / "b")
        assert by["sales"].status == "full_load"
        assert _slots(pg_url) == []
    finally:
        execute(pg_url, f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}", f"DROP ROLE {role}")
    sqlite = f"sqlite:///{tmp_path / 'dms.sqlite'}"
    generate(sqlite, seed=SEED, sales_rows=200)
    with pytest.raises(SourceError, match="PostgreSQL"):
        replicate_tables(config(delete_capture="logical"), source_url=sqlite, lake_uri=str(tmp_path / "c"))
