"""Deletes from PostgreSQL's write-ahead log: logical decoding through a
replication slot, read with SQL functions (what AWS DMS does; no replication
connection needed).

Key reconciliation (``cdc._reconcile``) has the server fingerprint every key
bucket of every table on every run, so its cost grows with the table. A
logical replication slot instead keeps the changes since the slot's position;
reading the deletes since the last run costs in proportion to the change.

* **The slot** is created before the snapshot of the first full load, so no
  delete committed after that snapshot is missed. Its name is
  ``replication.slot_name``, by default ``autoroi_`` and a hash of the lake URI
  and the database (two lakes never share one).
* **Output plugin.** ``pgoutput`` with a publication of the same name that
  publishes only ``delete`` and ``truncate``: the server formats the key of
  each deleted row and nothing else. ``test_decoding`` formats every column of
  every inserted and updated row as text, which at 5 M rows and a 1.5 %
  change costs 0.47-1.02 s against pgoutput's 0.05-0.11 s (server time); it
  is the fallback when the user may not create the publication (that needs
  superuser, for ``FOR ALL TABLES``, or ownership of the tables).
* **Positions.** Each table keeps, in its manifest state (published with its
  data), the LSN up to which its deletes are applied; a table left unchanged
  by a run records its new position in ``<lake>/_replication/<slot>.json``
  instead, so that an unchanged table publishes no version. After every
  table is done, the slot is advanced to the smallest position over all
  tables: a table that failed this run still finds its deletes next run. A
  crash between a table's publish and the slot's advance re-reads changes
  already applied: applying a delete twice changes nothing.
* **Consistency with the snapshot.** The run flushes the WAL and reads its
  end (``upto``) before its snapshot; a transaction up to ``upto`` that the
  snapshot does not see (it committed between the two) is left for the next
  run, with every transaction after it. A deleted key that is present in the
  snapshot (deleted, then inserted again) is fetched as a row, not deleted.
* **Deletes and truncates only** are read from the slot; changed rows still
  come by watermark. A TRUNCATE reloads the table.
* **Not usable** (the caller falls back to key reconciliation, with a
  warning where deletes could otherwise be lost): ``wal_level`` is not
  ``logical``, the user has neither ``REPLICATION`` nor superuser, the slot
  belongs to another database or is in use, a table is partitioned or
  unlogged (their changes do not appear under the table's name), or the slot
  no longer holds the changes since a table's position (it was dropped,
  recreated or advanced by someone else).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection, Engine

from autoroi.config import ReplicationConfig
from autoroi.errors import SourceError
from autoroi.lake import Lake, failpoints
from autoroi.source.db import describe_db_error

log = logging.getLogger(__name__)

PGOUTPUT = "pgoutput"
TEST_DECODING = "test_decoding"
STATE_DIR = "_replication"


def lsn_int(text: str) -> int:
    """``'16/B374D848'`` as an integer (``pg_lsn``'s text form)."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_str(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def default_slot_name(lake_uri: str, database: str) -> str:
    digest = hashlib.sha256(f"{lake_uri}\0{database}".encode()).hexdigest()[:20]
    return f"autoroi_{digest}"


@dataclass
class Cursor:
    """Where one table stands in the slot: its deletes are applied for every
    transaction that committed before ``lsn``."""

    table: str
    key: str
    version: int  # the lake version the position belongs to
    lsn: int | None  # None: never captured through this slot
    runs: int = 0  # incremental runs since keys were last reconciled


@dataclass
class TablePlan:
    """How one table's deletes are found in this run."""

    deletes: str  # "logical" | "reconcile"
    deleted: np.ndarray | None = None  # logical: keys deleted since the table's position
    truncated: bool = False
    note: str = ""  # why reconcile, when it is a fall-back


@dataclass
class _Txn:
    xid: int
    end: int  # end of the commit record
    deletes: list[tuple[str, int]] = field(default_factory=list)
    truncates: set[str] = field(default_factory=set)


class Unusable(Exception):
    """Logical decoding cannot be used for this source (the reason)."""


class LogicalCapture:
    """One run's use of the slot: opened before the run's snapshot, read
    after it (``collect``), advanced after every table (``finish``)."""

    def __init__(self, conn: Connection, lake: Lake, cfg: ReplicationConfig, slot: str) -> None:
        self.conn = conn
        self.pg: Any = conn.connection.driver_connection
        self.lake, self.cfg, self.slot = lake, cfg, slot
        self.plugin = ""
        self.schema = "public"
        self.created = False
        self.start = 0  # the slot's position when the run began
        self.upto = 0  # end of the WAL flushed when the run began (before its snapshot)
        self.cut = 0  # every table processed in this run is consumed up to here
        self.cursors: dict[str, Cursor] = {}
        self.plans: dict[str, TablePlan] = {}
        self._done: dict[str, tuple[int, int]] = {}  # table -> (version, runs) after this run
        self._state_path = lake.path(STATE_DIR, f"{slot}.json")
        self._collector: threading.Thread | None = None
        self.collect_error: BaseException | None = None  # what collect_async's thread raised

    # -- opening ----------------------------------------------------------------
    @classmethod
    def open(cls, engine: Engine, lake: Lake, cfg: ReplicationConfig, database: str) -> LogicalCapture | None:
        """The run's slot, created when missing; None when deletes are to be
        reconciled instead (``delete_capture=reconcile``, a source that is
        not PostgreSQL, or one that does not allow it under ``auto``). Must
        be called before the run's snapshot is taken."""
        mode = cfg.delete_capture
        if mode == "reconcile":
            return None
        if engine.dialect.name != "postgresql":
            if mode == "logical":
                raise SourceError(
                    f"replication.delete_capture=logical needs a PostgreSQL source, not {engine.dialect.name}"
                )
            return None
        slot = cfg.slot_name or default_slot_name(lake.uri, database)
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as e:
            raise SourceError(f"cannot connect to the source: {describe_db_error(e)}") from e
        capture = cls(conn, lake, cfg, slot)
        try:
            capture._prepare()
        except Unusable as e:
            conn.close()
            if mode == "logical":
                raise SourceError(f"replication.delete_capture=logical: {e}") from None
            log.info("deletes are found by key reconciliation: %s", e)
            return None
        except BaseException:
            conn.close()
            raise
        return capture

    def close(self) -> None:
        if self._collector is not None:
            self._collector.join()
            self._collector = None
        self.conn.close()

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            cur = self.pg.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        except Exception as e:
            raise SourceError(f"logical decoding on the source failed: {describe_db_error(e)}") from e

    def _prepare(self) -> None:
        (wal_level, max_slots, may_replicate, superuser, schema, database, *slot) = self._query(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,"
            " r.rolsuper OR r.rolreplication, r.rolsuper, current_schema(), current_database(),"
            " s.plugin, s.database, s.confirmed_flush_lsn::text, s.active,"
            " (SELECT p.pubdelete AND p.pubtruncate FROM pg_publication p WHERE p.pubname = %s)"
            " FROM pg_roles r"
            " LEFT JOIN pg_replication_slots s ON s.slot_name = %s AND s.slot_type = 'logical'"
            " WHERE r.rolname = current_user",
            (self.slot, self.slot),
        )[0]
        self.schema = str(schema)
        if wal_level != "logical":
            raise Unusable(f"the source runs with wal_level={wal_level}, not logical")
        if not may_replicate:
            raise Unusable("the source user has neither the REPLICATION attribute nor superuser")
        if int(max_slots) == 0:
            raise Unusable("the source allows no replication slots (max_replication_slots=0)")
        want = None if self.cfg.logical_plugin == "auto" else self.cfg.logical_plugin
        plugin, slot_db, position, active, publication_ok = slot
        if plugin is not None:
            if slot_db != database:
                raise Unusable(f"replication slot {self.slot} belongs to database {slot_db}")
            if active:
                raise Unusable(f"replication slot {self.slot} is in use by another process")
            problem = ""
            if plugin not in (PGOUTPUT, TEST_DECODING):
                problem = f"it uses the output plugin {plugin}"
            elif want is not None and plugin != want:
                problem = f"it uses {plugin}, not replication.logical_plugin={want}"
            elif plugin == PGOUTPUT and not publication_ok:
                problem = f"its publication {self.slot} (publishing delete and truncate) is missing"
            if problem:
                log.warning("replication slot %s is recreated: %s", self.slot, problem)
                self._query("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                plugin = None
        if plugin is None:
            plugin, position = self._create(want, bool(superuser), bool(publication_ok))
            self.created = True
        self.plugin = str(plugin)
        self.start = lsn_int(str(position))
        self.upto = max(self._flushed(), self.start)
        self.cut = self.upto

    def _flushed(self) -> int:
        """The end of the WAL on disk, after flushing. Decoding stops at the
        WAL flushed to disk, and under ``synchronous_commit=off`` a
        transaction is visible before its commit is flushed: a delete the
        snapshot already shows could wait for the next run. A transaction of
        our own that writes WAL (a logical decoding message, which our
        decoding ignores) and commits synchronously, to local disk only,
        flushes everything before it. One round trip."""
        try:
            cur = self.pg.execute(
                "BEGIN; SET LOCAL synchronous_commit = local;"
                " SELECT pg_logical_emit_message(true, 'autoroi', ''); COMMIT;"
                " SELECT pg_current_wal_flush_lsn()::text"
            )
            while cur.nextset():
                pass
            return lsn_int(cur.fetchone()[0])
        except Exception as e:  # noqa: BLE001 - e.g. a read-only source: decoding then waits for the flush
            log.debug("cannot force a WAL flush: %s", describe_db_error(e))
            with contextlib.suppress(Exception):
                self.pg.execute("ROLLBACK")
            return lsn_int(self._query("SELECT pg_current_wal_flush_lsn()::text")[0][0])

    def _create(self, want: str | None, superuser: bool, publication_ok: bool) -> tuple[str, str]:
        """Create the slot (for pgoutput, its publication first: the slot can
        only decode changes made after the publication exists); (plugin,
        position)."""
        plugin = want or PGOUTPUT
        if plugin == PGOUTPUT and not publication_ok:
            try:
                self._query(f'DROP PUBLICATION IF EXISTS "{self.slot}"')
                if superuser:
                    tables = "ALL TABLES"
                else:
                    names = self._query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                    tables = "TABLE " + ", ".join(f'"{self.schema}"."{t}"' for (t,) in names)
                self._query(
                    f"CREATE PUBLICATION \"{self.slot}\" FOR {tables} WITH (publish = 'delete, truncate')"
                )
            except SourceError as e:
                if want == PGOUTPUT:
                    raise Unusable(f"cannot create the publication {self.slot} for pgoutput: {e}") from None
                log.info("no publication for pgoutput (%s); using test_decoding", e)
                plugin = TEST_DECODING
        try:
            rows = self._query(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (self.slot, plugin)
            )
        except SourceError as e:
            raise Unusable(f"cannot create the replication slot {self.slot}: {e}") from None
        log.info("created the logical replication slot %s (%s)", self.slot, plugin)
        return plugin, str(rows[0][0])

    # -- reading ------------------------------------------------------------------
    def collect_async(self, snapshot: str, cursors: Iterable[Cursor], tables: Sequence[str]) -> None:
        """``collect`` in a thread of its own, on the slot's own connection:
        the server decodes the slot (0.05-0.15 s for a batch of 90 000
        changes) while the run reflects the tables and reads their changed
        rows. ``plan``, ``state`` and ``finish`` wait for it and raise what
        it raised."""
        cursors = list(cursors)

        def run() -> None:
            try:
                self.collect(snapshot, cursors, tables)
            except BaseException as e:  # noqa: BLE001 - raised again by _wait, in the caller's thread
                self.collect_error = e

        self._collector = threading.Thread(target=run, name="slot-collect", daemon=True)
        self._collector.start()

    def _wait(self) -> None:
        if self._collector is not None:
            self._collector.join()
            self._collector = None
        if self.collect_error is not None:
            raise self.collect_error

    def collect(self, snapshot: str, cursors: Iterable[Cursor], tables: Sequence[str]) -> None:
        """Read the slot once for the whole run and plan each table in
        ``tables``. ``snapshot`` is ``txid_current_snapshot()`` of the run's
        read transaction; ``cursors`` are the positions of every table the
        lake holds for this source (also those not replicated in this run)."""
        stored = self._read_state()
        for c in cursors:
            extra = stored.get(c.table) or {}
            if extra.get("version") == c.version and extra.get("lsn"):
                sidecar = lsn_int(extra["lsn"])
                c.lsn = sidecar if c.lsn is None else max(c.lsn, sidecar)
            c.runs = int(extra.get("runs", 0))
            self.cursors[c.table] = c
        kinds, published = self._tables(tables)
        txns = self._peek()
        log.debug(
            "slot %s from %s to %s: %d transactions with deletes or truncates",
            self.slot,
            lsn_str(self.start),
            lsn_str(self.upto),
            len(txns),
        )
        hidden = _Invisible(snapshot)
        first_hidden = next((i for i, t in enumerate(txns) if hidden(t.xid)), None)
        if first_hidden is not None:
            self.cut = txns[first_hidden - 1].end if first_hidden > 0 else self.start
            log.info(
                "a transaction that committed while the run began waits for the next run (slot %s)", self.slot
            )
            txns = txns[:first_hidden]
        names = {f"{self.schema}.{t}": t for t in tables}
        logged: dict[str, list[tuple[int, list[int], bool]]] = {}  # table -> (commit end, keys, truncated)
        for txn in txns:
            mine: dict[str, tuple[list[int], bool]] = {}
            for rel, key in txn.deletes:
                if rel in names:
                    mine.setdefault(names[rel], ([], False))[0].append(key)
            for rel in txn.truncates:
                if rel in names:
                    mine[names[rel]] = (mine.get(names[rel], ([], False))[0], True)
            for t, (keys, truncated) in mine.items():
                logged.setdefault(t, []).append((txn.end, keys, truncated))
        for t in tables:
            cursor = self.cursors.get(t)
            if cursor is None:
                continue  # first load, or a table without a key: nothing to plan
            note = self._unusable(t, cursor, kinds, published)
            if note:
                self.plans[t] = TablePlan("reconcile", note=note)
                continue
            since = [
                (keys, truncated) for end, keys, truncated in logged.get(t, []) if end > (cursor.lsn or 0)
            ]
            self.plans[t] = TablePlan(
                "logical",
                deleted=np.array([k for keys, _ in since for k in keys], dtype=np.int64),
                truncated=any(truncated for _, truncated in since),
            )

    def _unusable(self, table: str, cursor: Cursor, kinds: dict[str, str], published: set[str] | None) -> str:
        """Why this table's deletes cannot come from the slot in this run."""
        verify = self.cfg.verify_every_runs
        if kinds.get(table) not in (None, "r"):
            return "the table is partitioned or unlogged: its changes cannot be read from the slot"
        if published is not None and table not in published:
            log.warning(
                "%s: not in the publication %s; deletes are found by key reconciliation", table, self.slot
            )
            return f"the table is not in the publication {self.slot}"
        if cursor.lsn is None:
            return "first run with the replication slot"
        if cursor.lsn < self.start:
            note = (
                f"the replication slot {self.slot} no longer holds the changes since the table's last run"
                " (it was dropped, recreated or advanced by someone else)"
            )
            log.warning("%s: %s; deletes are found by key reconciliation this run", table, note)
            return note
        if verify and cursor.runs + 1 >= verify:
            return f"verification, every {verify} runs"
        return ""

    def plan(self, table: str) -> TablePlan | None:
        self._wait()
        return self.plans.get(table)

    def _tables(self, tables: Sequence[str]) -> tuple[dict[str, str], set[str] | None]:
        """(kind: "r" for a plain logged table, else "x"; the tables in the
        publication, for pgoutput)."""
        rows = self._query(
            "SELECT c.relname, CASE WHEN c.relkind = 'r' AND c.relpersistence = 'p' THEN 'r' ELSE 'x' END,"
            " EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = %s"
            " AND p.schemaname = n.nspname AND p.tablename = c.relname)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)",
            (self.slot, list(tables)),
        )
        kinds = {str(n): str(k) for n, k, _ in rows}
        published = {str(n) for n, _, p in rows if p} if self.plugin == PGOUTPUT else None
        return kinds, published

    def _peek(self) -> list[_Txn]:
        """Transactions with deletes or truncates since the slot's position,
        up to ``upto``, in commit order."""
        upto = lsn_str(self.upto)
        keys = {f"{self.schema}.{c.table}": c.key for c in self.cursors.values()}
        if self.plugin == PGOUTPUT:
            rows = self._query(
                "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_binary_changes("
                "%s, %s::pg_lsn, NULL, 'proto_version', '1', 'publication_names', %s)",
                (self.slot, upto, self.slot),
            )
            return _PgOutput(keys).transactions(rows)
        rows = self._query(
            "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes("
            "%s, %s::pg_lsn, NULL, 'skip-empty-xacts', '1', 'include-xids', '0')"
            " WITH ORDINALITY AS c(lsn, xid, data, n)"
            " WHERE data = 'COMMIT' OR data LIKE 'table %%: DELETE:%%' OR data LIKE 'table %%: TRUNCATE:%%'"
            " ORDER BY n",
            (self.slot, upto),
        )
        return _TestDecoding(keys).transactions(rows)

    # -- after the tables ----------------------------------------------------------
    def record(self, table: str, version: int | None, deletes: str) -> None:
        """A table of this run is consumed up to ``cut`` (not called for a
        table that failed)."""
        self._wait()
        if version is None:
            return
        c = self.cursors.get(table)
        runs = 0 if deletes != "logical" else (c.runs + 1 if c else 1)
        self._done[table] = (version, runs)

    def state(self, table: str) -> dict[str, Any]:
        """What a table's manifest keeps about the slot, when published."""
        self._wait()
        return {"slot": self.slot, "lsn": lsn_str(self.cut)}

    def finish(self) -> None:
        """Record every table's position, then advance the slot to the
        smallest of them."""
        self._wait()
        tables: dict[str, dict[str, Any]] = {}
        held: list[int] = []
        for name, c in self.cursors.items():
            if name in self._done:
                continue
            if c.lsn is not None and c.lsn >= self.start:
                tables[name] = {"version": c.version, "lsn": lsn_str(c.lsn), "runs": c.runs}
                held.append(c.lsn)
        for name, (version, runs) in self._done.items():
            tables[name] = {"version": version, "lsn": lsn_str(self.cut), "runs": runs}
            held.append(self.cut)
        self.lake.sweep(self._state_path.rsplit("/", 1)[0])
        self.lake.write_json(self._state_path, {"slot": self.slot, "plugin": self.plugin, "tables": tables})
        target = min(held, default=self.cut)
        failpoints.hit("replicate.before_slot_advance")
        if target > self.start:
            self._query(
                "SELECT pg_replication_slot_advance(slot_name, %s::pg_lsn) FROM pg_replication_slots"
                " WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn",
                (lsn_str(target), self.slot, lsn_str(target)),
            )
        log.info("replication slot %s at %s", self.slot, lsn_str(max(target, self.start)))

    def _read_state(self) -> dict[str, dict[str, Any]]:
        doc = self.lake.read_json(self._state_path) or {}
        return dict(doc.get("tables") or {}) if doc.get("slot") == self.slot else {}


class _Invisible:
    """Is a transaction (by its 32-bit xid) invisible to a snapshot
    (``txid_current_snapshot()`` text: ``xmin:xmax:xip,...``, 64-bit ids)?"""

    def __init__(self, snapshot: str) -> None:
        xmin, xmax, xip = snapshot.split(":")
        self.xmin, self.xmax = int(xmin), int(xmax)
        self.xip = {int(x) for x in xip.split(",") if x}

    def __call__(self, xid: int) -> bool:
        d = (xid - self.xmax) % (1 << 32)
        if d < (1 << 31):  # at or after xmax: started after the snapshot
            return True
        full = self.xmax - ((1 << 32) - d)
        return full in self.xip


class _PgOutput:
    """pgoutput's binary protocol (version 1), the messages a delete and
    truncate publication sends: Begin, Relation, Delete, Truncate, Commit.
    Table names are ``schema.table``, unquoted."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys  # schema.table -> key column, for the tables followed
        self.relations: dict[int, tuple[str, int | None]] = {}  # oid -> (name, index of the key column)

    def transactions(self, rows: Iterable[tuple[str, str, bytes]]) -> list[_Txn]:
        out: list[_Txn] = []
        pending: dict[int, _Txn] = {}
        for lsn, xid_text, data in rows:
            xid = int(xid_text)
            kind = data[:1]
            if kind == b"C":
                txn = pending.pop(xid, None)
                if txn is not None and (txn.deletes or txn.truncates):
                    txn.end = lsn_int(lsn)
                    out.append(txn)
            elif kind == b"R":
                self._relation(data)
            elif kind == b"D":
                (oid,) = struct.unpack_from("!I", data, 1)
                name, index = self.relations.get(oid, ("", None))
                if index is not None:
                    pending.setdefault(xid, _Txn(xid, 0)).deletes.append(
                        (name, _key_value(data, index, name))
                    )
            elif kind == b"T":
                n, _ = struct.unpack_from("!IB", data, 1)
                txn = pending.setdefault(xid, _Txn(xid, 0))
                oids = struct.unpack_from(f"!{n}I", data, 6)
                txn.truncates.update(self.relations[oid][0] for oid in oids if oid in self.relations)
        return out

    def _relation(self, data: bytes) -> None:
        (oid,) = struct.unpack_from("!I", data, 1)
        nsp, pos = _cstring(data, 5)
        rel, pos = _cstring(data, pos)
        pos += 1  # replica identity setting
        (ncols,) = struct.unpack_from("!H", data, pos)
        pos += 2
        cols = []
        for _ in range(ncols):
            col, pos = _cstring(data, pos + 1)  # after the flags
            pos += 8  # type oid, type modifier
            cols.append(col)
        name = f"{nsp or 'pg_catalog'}.{rel}"
        key = self.keys.get(name)
        self.relations[oid] = (name, cols.index(key) if key in cols else None)


def _key_value(data: bytes, index: int, table: str) -> int:
    """The key column's value in a Delete's old tuple ('K': the replica
    identity, by default the primary key, other columns null; 'O': the whole
    row), sent as text."""
    (ncols,) = struct.unpack_from("!H", data, 6)  # after 'D', the oid, 'K'/'O'
    pos = 8
    for i in range(min(ncols, index + 1)):
        kind = data[pos : pos + 1]
        pos += 1
        if kind in (b"t", b"b"):
            (size,) = struct.unpack_from("!I", data, pos)
            pos += 4
            if i == index:
                return int(data[pos : pos + size])
            pos += size
    raise SourceError(f"a delete from {table} in the replication slot carries no key value")


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode(), end + 1


_IDENT = r'(?:"(?:[^"]|"")*"|[^."\s,]+)'
_QUALIFIED = re.compile(rf"({_IDENT})\.({_IDENT})")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


class _TestDecoding:
    """test_decoding's text output, the DELETE, TRUNCATE and COMMIT lines:
    ``table public.sales: DELETE: sale_id[bigint]:42``. The key is the first
    ``key[type]:value`` of the old tuple: with the default replica identity
    the old tuple holds the primary key only."""

    _delete = re.compile(r"^table (.+?): DELETE: (.*)$", re.S)
    _truncate = re.compile(r"^table (.+): TRUNCATE:", re.S)

    def __init__(self, keys: dict[str, str]) -> None:
        self.key_re = {
            name: re.compile(rf'(?:^| )"?{re.escape(key)}"?\[[^\]]*\]:(-?\d+)') for name, key in keys.items()
        }

    @staticmethod
    def _names(printed: str) -> list[str]:
        return [f"{_unquote(a)}.{_unquote(b)}" for a, b in _QUALIFIED.findall(printed)]

    def transactions(self, rows: Iterable[tuple[str, str, str]]) -> list[_Txn]:
        out: list[_Txn] = []
        pending: dict[int, _Txn] = {}
        for lsn, xid_text, data in rows:
            xid = int(xid_text)
            if data == "COMMIT":
                txn = pending.pop(xid, None)
                if txn is not None:
                    txn.end = lsn_int(lsn)
                    out.append(txn)
                continue
            m = self._delete.match(data)
            if m:
                names = self._names(m.group(1))
                pattern = self.key_re.get(names[0]) if len(names) == 1 else None
                if pattern is None:
                    continue  # a table this run does not follow
                k = pattern.search(m.group(2))
                if k is None:
                    raise SourceError(
                        f"a delete from {names[0]} in the replication slot carries no key value"
                    )
                pending.setdefault(xid, _Txn(xid, 0)).deletes.append((names[0], int(k.group(1))))
                continue
            m = self._truncate.match(data)
            if m:
                pending.setdefault(xid, _Txn(xid, 0)).truncates.update(self._names(m.group(1)))
        return out


def drop_slot(engine: Engine, lake: Lake, cfg: ReplicationConfig, database: str) -> str:
    """Drop this lake's replication slot and its publication (the server
    then stops keeping WAL for it); a later run falls back to key
    reconciliation once and creates them again. Returns what was done."""
    slot = cfg.slot_name or default_slot_name(lake.uri, database)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            pg: Any = conn.connection.driver_connection
            active = pg.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchall()
            if active and active[0][0] is not None:
                raise SourceError(f"replication slot {slot} is in use by process {active[0][0]}")
            if active:
                pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            publication = pg.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,)).fetchall()
            if publication:
                pg.execute(f'DROP PUBLICATION "{slot}"')
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(f"cannot drop the replication slot {slot}: {describe_db_error(e)}") from e
    lake.delete_file(lake.path(STATE_DIR, f"{slot}.json"))
    done = [f"replication slot {slot}"] if active else []
    done += [f"publication {slot}"] if publication else []
    return f"dropped {' and '.join(done)}" if done else f"no replication slot {slot} on the source"
