"""``replicate_tables``: every source table into ``<lake>/raw/<table>/``.

A table that fails (schema drift, a read error) is reported and left at its
previous version; the others proceed. The run fails, after all tables, if any
table failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoroi.config import AutoroiConfig
from autoroi.errors import AutoroiError, SchemaDriftError, SourceError
from autoroi.lake import Lake, TableStore, open_lake
from autoroi.replication.cdc import Progress, TableResult, compare_schemas, full_load, incremental
from autoroi.replication.source import SourceReader
from autoroi.source.db import connect_engine, redact, resolve_url

log = logging.getLogger(__name__)

RAW_ZONE = "raw"


@dataclass
class ReplicationReport:
    source: str  # redacted URL
    lake: str
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TableResult]:
        return [t for t in self.tables if t.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "lake": self.lake,
            "seconds": self.seconds,
            "tables": [asdict(t) for t in self.tables],
        }


def replicate_tables(
    cfg: AutoroiConfig,
    *,
    source_url: str | None = None,
    lake_uri: str | None = None,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    progress: Progress | None = None,
) -> ReplicationReport:
    """Bring ``raw/`` up to date with the source. Raises for problems that
    concern the whole run (unreachable source, unwritable lake, unknown table);
    per-table problems are in the report."""
    started = time.perf_counter()
    url = resolve_url(cfg.source, source_url)
    sqlite_file = url.database if url.get_backend_name() == "sqlite" else None
    if sqlite_file not in (None, "", ":memory:") and not Path(str(sqlite_file)).is_file():
        raise SourceError(f"SQLite database file {url.database} does not exist")
    lake = open_lake(lake_uri or cfg.lake.uri, cfg.lake)
    engine = connect_engine(url, cfg.source.connect_timeout_s)
    try:
        lake.check_writable()
    except AutoroiError:
        engine.dispose()
        raise
    report = ReplicationReport(source=redact(url), lake=lake.uri)
    try:
        with SourceReader(engine, cfg.replication.batch_rows) as reader:
            available = reader.table_names()
            if not available:
                raise SourceError(f"source {report.source} has no tables (wrong database or file?)")
            wanted = tables or cfg.source.tables or available
            unknown = [t for t in wanted if t not in available]
            if unknown:
                raise SourceError(
                    f"unknown table(s) {', '.join(unknown)} in source {report.source};"
                    f" available: {', '.join(available) or 'none'}"
                )
            for name in wanted:
                report.tables.append(_replicate_one(reader, lake, name, cfg, full_refresh, progress))
    finally:
        engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def _replicate_one(
    reader: SourceReader,
    lake: Lake,
    name: str,
    cfg: AutoroiConfig,
    full_refresh: bool,
    progress: Progress | None,
) -> TableResult:
    rc = cfg.replication
    store = TableStore(lake, RAW_ZONE, name, rc.compression, rc.keep_versions)
    t0 = time.perf_counter()
    try:
        with reader.table_scope():
            return _replicate_in_scope(reader, store, name, cfg, full_refresh, progress)
    except (SchemaDriftError, SourceError) as e:
        log.error("%s: %s", name, e)
        current = store.manifest()
        result = TableResult(
            name,
            "failed",
            rows=current.rows if current else 0,
            message=str(e),
            version=current.version if current else None,
        )
        result.seconds = time.perf_counter() - t0
        return result


def _replicate_in_scope(
    reader: SourceReader,
    store: TableStore,
    name: str,
    cfg: AutoroiConfig,
    full_refresh: bool,
    progress: Progress | None,
) -> TableResult:
    rc = cfg.replication
    st = reader.reflect(name)
    current = store.manifest()
    reload_reason = ""
    if current is None:
        reload_reason = "first load"
    elif full_refresh:
        reload_reason = "full refresh requested"
    else:
        added, needs_reload = compare_schemas(name, current.schema, st.schema)
        if needs_reload:
            reload_reason = f"schema changed (added: {', '.join(added) or 'none'})"
        elif st.key is None or not st.updated_at:
            reload_reason = "no integer primary key or updated_at column"
    if reload_reason:
        log.info("%s: full load (%s)", name, reload_reason)
        result = full_load(reader, store, st, rc, progress, current)
    else:
        assert current is not None
        result = incremental(reader, store, st, rc, current)
    result.message = reload_reason
    if result.status == "full_load" and current is not None:
        result.message += "; a reload counts inserts and deletes by key, not updates"
    log.info(
        "%s: %s, %d rows in lake, %d extracted (+%d ~%d -%d) in %.2fs (%.0f rows/s)",
        name,
        result.status,
        result.rows,
        result.extracted,
        result.inserted,
        result.updated,
        result.deleted,
        result.seconds,
        result.rows_per_second,
    )
    return result


def report_from_dict(doc: dict[str, Any]) -> ReplicationReport:
    """The inverse of ``to_dict``: a report that crossed a process boundary."""
    tables = [TableResult(**t) for t in doc.get("tables", [])]
    return ReplicationReport(
        source=str(doc["source"]),
        lake=str(doc["lake"]),
        tables=tables,
        seconds=float(doc.get("seconds", 0.0)),
    )
