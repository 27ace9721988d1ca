"""``replicate_tables``: every source table into ``<lake>/raw/<table>/``.

A table that fails (schema drift, a read error) is reported and left at its
previous version; the others proceed. The run fails, after all tables, if any
table failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from autoroi.config import AutoroiConfig
from autoroi.errors import AutoroiError, SchemaDriftError, SourceError
from autoroi.lake import TableStore, open_lake
from autoroi.lake.tables import TableManifest
from autoroi.replication.cdc import (
    Progress,
    TableResult,
    TableTruncated,
    compare_schemas,
    full_load,
    incremental,
)
from autoroi.replication.logical import Cursor, LogicalCapture, drop_slot, lsn_int
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
    with arrow_memory_pool():
        return _replicate_tables(cfg, source_url, lake_uri, tables, full_refresh, progress)


@contextlib.contextmanager
def arrow_memory_pool() -> Iterator[None]:
    """Arrow allocates from jemalloc while replicating, unless the user chose
    a pool (``ARROW_DEFAULT_MEMORY_POOL``).

    Arrow's default, mimalloc, asks the kernel for transparent huge pages
    (``MADV_HUGEPAGE``): every 2 MiB region it touches first is zeroed whole
    on the first write. A replication run is a short process that touches
    fresh memory almost all the time; on the 2-core VM of ``bench/RESULTS.md``
    a change capture spent 25 % of its samples in ``clear_page_erms`` under
    ``mi_page_free_list_extend`` (system time 0.1-0.8 s, varying with the
    host's load, against about 0.1 s with jemalloc); full loads peak no
    higher (1 M rows: 422-458 MiB against 477 MiB). Buffers remember the pool
    they came from, so switching back afterwards is safe."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _replicate_tables(
    cfg: AutoroiConfig,
    source_url: str | None,
    lake_uri: str | None,
    tables: list[str] | None,
    full_refresh: bool,
    progress: Progress | None,
) -> ReplicationReport:
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
    capture: LogicalCapture | None = None
    stores: dict[str, TableStore] = {}
    try:
        # the slot exists, and its end position is read, before the snapshot
        capture = LogicalCapture.open(engine, lake, cfg.replication, str(url.database or ""))
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
            stores = {
                name: TableStore(
                    lake, RAW_ZONE, name, cfg.replication.compression, cfg.replication.keep_versions
                )
                for name in dict.fromkeys([*wanted, *(cfg.source.tables or available)])
                if name in available
            }
            manifests = {name: store.manifest() for name, store in stores.items()}
            if capture is not None:
                # read in a thread: tables wait for it only when they need it
                capture.collect_async(reader.snapshot_id(), _cursors(capture, manifests), wanted)
            for name in wanted:
                report.tables.append(
                    _replicate_one(
                        reader, stores[name], manifests[name], name, cfg, full_refresh, progress, capture
                    )
                )
        if capture is not None:
            capture.finish()  # advances the slot while old versions are being removed
    finally:
        for store in stores.values():
            store.wait_gc()
        if capture is not None:
            capture.close()
        engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def drop_replication_slot(
    cfg: AutoroiConfig, *, source_url: str | None = None, lake_uri: str | None = None
) -> str:
    """``autoroi replicate --drop-slot``: drop the lake's replication slot
    (and publication) on a PostgreSQL source."""
    url = resolve_url(cfg.source, source_url)
    if url.get_backend_name() != "postgresql":
        raise SourceError("only a PostgreSQL source has a replication slot")
    lake = open_lake(lake_uri or cfg.lake.uri, cfg.lake)
    engine = connect_engine(url, cfg.source.connect_timeout_s)
    try:
        message = drop_slot(engine, lake, cfg.replication, str(url.database or ""))
    finally:
        engine.dispose()
    log.info("%s", message)
    return message


def _cursors(capture: LogicalCapture, manifests: dict[str, TableManifest | None]) -> list[Cursor]:
    """Each keyed table's position in the slot, as its manifest has it."""
    out = []
    for name, m in manifests.items():
        key = m.state.get("key") if m is not None else None
        if m is None or not key:
            continue
        cdc = m.state.get("cdc") or {}
        lsn = lsn_int(cdc["lsn"]) if cdc.get("slot") == capture.slot and cdc.get("lsn") else None
        out.append(Cursor(name, str(key), m.version, lsn))
    return out


def _replicate_one(
    reader: SourceReader,
    store: TableStore,
    current: TableManifest | None,
    name: str,
    cfg: AutoroiConfig,
    full_refresh: bool,
    progress: Progress | None,
    capture: LogicalCapture | None,
) -> TableResult:
    t0 = time.perf_counter()
    try:
        with reader.table_scope():
            result = _replicate_in_scope(reader, store, current, name, cfg, full_refresh, progress, capture)
        if capture is not None and result.deletes:
            capture.record(name, result.version, result.deletes)
        return result
    except (SchemaDriftError, SourceError) as e:
        if capture is not None and e is capture.collect_error:
            raise  # reading the slot failed: the whole run fails, as it would have before any table
        log.error("%s: %s", name, e)
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
    current: TableManifest | None,
    name: str,
    cfg: AutoroiConfig,
    full_refresh: bool,
    progress: Progress | None,
    capture: LogicalCapture | None,
) -> TableResult:
    rc = cfg.replication
    st = reader.reflect(name)
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
        elif st.key != current.state.get("key"):
            reload_reason = f"primary key changed to {st.key}"
    result: TableResult | None = None
    if not reload_reason:
        assert current is not None
        # the slot's plan (a truncate among it) is waited for only once the
        # changed rows are read: the server decodes the slot meanwhile
        try:
            result = incremental(
                reader,
                store,
                st,
                rc,
                current,
                (lambda: capture.plan(name)) if capture is not None else None,
                (lambda: capture.state(name)) if capture is not None else None,
            )
        except TableTruncated:
            reload_reason = "the table was truncated at the source"
        else:
            plan = capture.plan(name) if capture is not None else None
            if plan is not None and plan.note:
                result.message = f"deletes by key reconciliation: {plan.note}"
    if result is None:
        log.info("%s: full load (%s)", name, reload_reason)
        cdc = None
        if capture is not None:
            capture.plan(name)  # waits for the slot: if reading it failed, the run fails before a publish
            cdc = capture.state(name) if st.key is not None else None
        result = full_load(reader, store, st, rc, progress, current, cdc)
        if st.key is None:
            result.deletes = ""
    if reload_reason:
        result.message = reload_reason
    if result.status == "full_load" and current is not None:
        result.message += "; a reload counts inserts and deletes by key, not updates"
    log.info(
        "%s: %s (deletes: %s), %d rows in lake, %d extracted (+%d ~%d -%d) in %.2fs (%.0f rows/s)",
        name,
        result.status,
        result.deletes or "-",
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
