"""A read error on one table fails that table only: it is reported and keeps
its previous version, the other tables of the run still replicate, and the
command exits non-zero with one line (the contract in
``autoroi.replication.replicate``)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from test_replication_support import (
    assert_lake_equals,
    config,
    error_lines,
    execute,
    generate,
    run_cli,
    source_snapshot,
)

from autoroi.replication import replicate_tables
from autoroi.source import schema

TABLES = sorted(schema.TABLE_ORDER)


@pytest.mark.postgres
def test_a_table_the_replication_user_may_not_read(pg_url: str, postgres_server: Any, tmp_path: Path) -> None:
    """The replication account lacks SELECT on one table (a forgotten grant).
    The server refuses that read, which on PostgreSQL also aborts the run's
    snapshot transaction: the tables after it must not be lost with it."""
    generate(pg_url, seed=4, sales_rows=3_000)
    role, pw = f"replicator_{uuid.uuid4().hex[:8]}", "rpw-" + uuid.uuid4().hex[:8]
    execute(
        pg_url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        f"REVOKE SELECT ON incentive_programs FROM {role}",
    )
    host, port, db = postgres_server.host, postgres_server.port, pg_url.rsplit("/", 1)[1]
    url = f"postgresql+psycopg://{role}:{pw}@{host}:{port}/{db}"
    try:
        lake = tmp_path / "lake"
        report = replicate_tables(config(), source_url=url, lake_uri=str(lake))
        by = {t.table: t for t in report.tables}
        assert [t.table for t in report.failed] == ["incentive_programs"]
        assert "incentive_programs" in by["incentive_programs"].message
        assert "permission denied" in by["incentive_programs"].message
        assert all(by[t].status == "full_load" for t in TABLES if t != "incentive_programs"), by
        expected = source_snapshot(pg_url)
        assert_lake_equals(expected, lake, [t for t in TABLES if t != "incentive_programs"])
        assert not (lake / "raw" / "incentive_programs").exists()

        proc = run_cli("replicate", "--source-url", url, "--lake", str(lake))
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        lines = error_lines(proc.stderr)
        assert len(lines) == 1 and "incentive_programs" in lines[0], proc.stderr[-2000:]
        assert pw not in proc.stdout + proc.stderr
    finally:
        execute(pg_url, f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}", f"DROP ROLE {role}")
