"""Reading the source database as Arrow record batches.

Two paths, same results:

* PostgreSQL: ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` streamed through
  psycopg into pyarrow's multi-threaded CSV reader with explicit column types.
  COPY is the server's fastest way out; Arrow parses in C++ without creating a
  Python object per value.
* SQLite, MySQL/MariaDB: SQLAlchemy with streaming results, ``fetchmany`` in
  batches, converted column by column.

All reads of one run happen inside one read-only transaction, so every table
comes from the same snapshot of the source (PostgreSQL: REPEATABLE READ;
MySQL: consistent snapshot; SQLite: one read transaction).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from autoroi.errors import SourceError, UnknownTableError
from autoroi.source.db import describe_db_error
from autoroi.source.schema import SIMULATOR_PREFIX

try:
    # PostgreSQL's driver and SQLAlchemy's dialect for it are imported with
    # this module, not by the first ``create_engine`` of a run (about 0.15 s
    # of every fresh process's first replication otherwise)
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg
except ImportError:  # pragma: no cover - psycopg is a dependency
    pass

log = logging.getLogger(__name__)
T = TypeVar("T")

UPDATED_AT = "updated_at"


def arrow_type(col_type: sa.types.TypeEngine[Any], dialect: str) -> pa.DataType:
    """The faithful Arrow type for a source column: decimals stay decimals,
    timestamps keep their time zone. SQLite has no zoned type; its naive
    values are taken as UTC."""
    t = col_type
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.SmallInteger):
        return pa.int16()
    if isinstance(t, sa.Integer):
        return pa.int64() if dialect == "sqlite" else pa.int32()
    if isinstance(t, sa.Float):  # before Numeric: Float subclasses it
        return pa.float64()
    if isinstance(t, sa.Numeric):
        p, s = t.precision, t.scale
        if p is not None and p <= 38:
            return pa.decimal128(p, s or 0)
        return pa.decimal128(38, 10)
    if isinstance(t, sa.DateTime):
        if t.timezone or dialect == "sqlite":
            return pa.timestamp("us", tz="UTC")
        return pa.timestamp("us")
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Time):
        return pa.time64("us")
    if isinstance(t, sa.LargeBinary) and dialect != "postgresql":
        return pa.binary()
    return pa.string()


@dataclass
class SourceTable:
    name: str
    table: sa.Table
    schema: pa.Schema
    key: str | None  # single integer primary key, else None (full reload each run)
    updated_at: bool  # has an updated_at timestamp column
    updated_at_tz: bool

    @property
    def columns(self) -> list[str]:
        return self.schema.names


class SourceReader:
    """One run's connection to the source, in one snapshot."""

    def __init__(self, engine: Engine, batch_rows: int = 250_000):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.batch_rows = batch_rows
        self._conn: Connection | None = None
        self._pg: Any = None  # the psycopg connection under _conn

    # -- lifecycle --------------------------------------------------------
    def __enter__(self) -> SourceReader:
        try:
            self._conn = self.engine.connect()
            if self.dialect == "postgresql":
                self._pg = self._conn.connection.driver_connection
                self._conn.exec_driver_sql("SET TIME ZONE 'UTC'")
                self._conn.exec_driver_sql("SET jit = off")  # compile time, no gain for these queries
                self._conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            elif self.dialect in ("mysql", "mariadb"):
                self._conn.exec_driver_sql("SET time_zone = '+00:00'")
                self._conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            elif self.dialect == "sqlite":
                self._conn.exec_driver_sql("BEGIN")
                self._conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").fetchall()
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"cannot open a read transaction on the source: {describe_db_error(e)}") from e
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use SourceReader as a context manager"
        return self._conn

    # -- schema -----------------------------------------------------------
    def table_names(self) -> list[str]:
        """The dealer system's tables; the simulator's own record is not one."""
        names = sa.inspect(self.conn).get_table_names()
        return sorted(n for n in names if not n.startswith(SIMULATOR_PREFIX))

    @contextmanager
    def table_scope(self) -> Iterator[None]:
        """A savepoint around one table's reads: on PostgreSQL an error aborts
        the whole transaction, and the other tables must still be read, in the
        same snapshot."""
        savepoint = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        else:
            if savepoint.is_active:
                savepoint.commit()

    def reflect(self, name: str) -> SourceTable:
        # only the columns and the primary key: a full reflection also reads
        # indexes, constraints, comments and every table a foreign key names
        # (at 5 M rows a fifth of a change capture's fixed cost)
        try:
            insp = sa.inspect(self.conn)
            try:
                cols = insp.get_columns(name)
            except sa.exc.NoSuchTableError:
                cols = []
            if not cols:
                raise UnknownTableError(f"table {name!r} does not exist in the source")
            pk_cols = set(insp.get_pk_constraint(name).get("constrained_columns") or [])
            table = sa.Table(
                name,
                sa.MetaData(),
                *[
                    sa.Column(c["name"], c["type"], nullable=c["nullable"], primary_key=c["name"] in pk_cols)
                    for c in cols
                ],
            )
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"cannot read the definition of table {name!r}: {describe_db_error(e)}") from e
        fields = [
            pa.field(c.name, arrow_type(c.type, self.dialect), nullable=c.nullable) for c in table.columns
        ]
        pk = [c for c in table.primary_key.columns]
        key = pk[0].name if len(pk) == 1 and isinstance(pk[0].type, sa.Integer) else None
        upd = table.columns.get(UPDATED_AT)
        has_upd = upd is not None and isinstance(upd.type, sa.DateTime | sa.Date)
        tz = bool(upd is not None and isinstance(upd.type, sa.DateTime) and upd.type.timezone)
        return SourceTable(name, table, pa.schema(fields), key, has_upd, tz)

    # -- reads ------------------------------------------------------------
    def stream(
        self, st: SourceTable, where: sa.ColumnElement[bool] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Rows of ``st`` (optionally filtered) as record batches of the
        table's Arrow schema."""
        stmt = sa.select(*[st.table.c[n] for n in st.columns])
        if where is not None:
            stmt = stmt.where(where)
        try:
            if self.dialect == "postgresql":
                yield from self._stream_copy(st, stmt)
            else:
                yield from self._stream_rows(st, stmt)
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"reading {st.name} from the source failed: {describe_db_error(e)}") from e

    def read(self, st: SourceTable, where: sa.ColumnElement[bool] | None = None) -> pa.Table:
        return pa.Table.from_batches(list(self.stream(st, where)), schema=st.schema)

    def _stream_copy(self, st: SourceTable, stmt: sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        compiled = stmt.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        sql = f"COPY ({compiled}) TO STDOUT (FORMAT csv)"
        cur = self._pg.cursor()
        types = {f.name: f.type for f in st.schema}
        with cur.copy(sql, compiled.params or None) as copy, _CopyPump(copy) as pump:
            if not pump.peek():
                return  # no rows (Arrow refuses an empty CSV stream)
            reader = pacsv.open_csv(
                io.BufferedReader(pump, 8 << 20),
                # Arrow reads up to 32 blocks ahead: 2 MiB blocks bound that to
                # 64 MiB; with 8 MiB blocks memory grew with the table (5 M rows:
                # 688 MiB against 495 MiB, for 2% more time)
                read_options=pacsv.ReadOptions(column_names=st.columns, block_size=2 << 20, use_threads=True),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            for batch in reader:
                if batch.num_rows:
                    yield batch.cast(st.schema) if batch.schema != st.schema else batch

    def _stream_rows(self, st: SourceTable, stmt: sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        result = self.conn.execution_options(stream_results=True, yield_per=self.batch_rows).execute(stmt)
        for rows in result.partitions(self.batch_rows):
            if not rows:
                continue
            cols = list(zip(*rows, strict=True))
            arrays = [_to_arrow(values, f.type) for values, f in zip(cols, st.schema, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=st.schema)

    def scalar_rows(self, stmt: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
        try:
            return self.conn.execute(stmt).fetchall()
        except Exception as e:
            raise SourceError(f"source query failed: {describe_db_error(e)}") from e

    def bucket_stats(self, st: SourceTable, width: int) -> Fingerprints:
        """Per key bucket: (row count, sum of key offsets in the bucket, sum of
        squared key residues), computed by the server; only the buckets travel.
        Three figures, so that deletes balanced by restored rows do not cancel
        out."""
        assert st.key is not None
        key = st.table.c[st.key]
        if self.dialect == "postgresql":
            return self._bucket_stats_ranges(st, width)
        # floor division from truncating division, on every dialect
        bucket = sa.case((key >= 0, key // width), else_=-((-key - 1) // width) - 1).label("b")
        offset = key - bucket * width
        residue = key % FINGERPRINT_PRIME
        stmt = sa.select(
            bucket, sa.func.count(), sa.func.sum(offset), sa.func.sum(residue * residue)
        ).group_by(sa.literal_column("b"))
        return {int(b): (int(n), int(s), int(q)) for b, n, s, q in self.scalar_rows(stmt)}

    def _bucket_stats_ranges(self, st: SourceTable, width: int) -> Fingerprints:
        """PostgreSQL: one index range scan per bucket instead of a hash
        aggregate over an expression whose group count the planner cannot
        estimate (measured at 5 M rows: 0.5 s instead of 0.9 s)."""
        t, k = st.table.name, st.key
        sql = f"""
            SELECT b, s.n, s.so, s.sq
            FROM generate_series(
                floor((SELECT min("{k}") FROM "{t}") / %(w)s::numeric)::bigint,
                floor((SELECT max("{k}") FROM "{t}") / %(w)s::numeric)::bigint) AS b,
            LATERAL (
                SELECT count(*) AS n, sum("{k}" - b * %(w)s) AS so,
                       sum(("{k}" %% %(p)s) * ("{k}" %% %(p)s)) AS sq
                FROM "{t}" WHERE "{k}" >= b * %(w)s AND "{k}" < (b + 1) * %(w)s
            ) AS s
            WHERE s.n > 0
        """
        try:
            with self._pg.cursor() as cur:
                cur.execute(sql, {"w": width, "p": FINGERPRINT_PRIME})
                rows = cur.fetchall()
        except Exception as e:
            raise SourceError(f"source query failed: {describe_db_error(e)}") from e
        return {int(b): (int(n), int(so), int(sq)) for b, n, so, sq in rows}

    def keys_in_buckets(self, st: SourceTable, buckets: Sequence[int], width: int) -> np.ndarray:
        assert st.key is not None
        key = st.table.c[st.key]
        only_key = dataclasses.replace(st, schema=pa.schema([st.schema.field(st.key)]))
        conds = [sa.and_(key >= lo, key < hi) for lo, hi in (bucket_range(b, width) for b in buckets)]
        out: list[np.ndarray] = []
        for i in range(0, len(conds), 200):
            for batch in self.stream(only_key, sa.or_(*conds[i : i + 200])):
                out.append(batch.column(0).to_numpy().astype(np.int64, copy=False))
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def rows_with_keys(self, st: SourceTable, keys: np.ndarray) -> pa.Table:
        assert st.key is not None
        key = st.table.c[st.key]
        if self.dialect == "postgresql":
            # one array literal (integers only) instead of thousands of bound literals
            step = 100_000
            conds = [
                key
                == sa.any_(
                    sa.literal_column("'{" + ",".join(map(str, keys[i : i + step].tolist())) + "}'::bigint[]")
                )
                for i in range(0, len(keys), step)
            ]
        else:
            step = 5_000
            conds = [key.in_([int(k) for k in keys[i : i + step]]) for i in range(0, len(keys), step)]
        parts = [self.read(st, c) for c in conds]
        return pa.concat_tables(parts) if parts else st.schema.empty_table()

    def snapshot_id(self) -> str:
        """PostgreSQL: the run's snapshot (``xmin:xmax:xip,...``), to tell
        which transactions it sees."""
        return str(self.conn.exec_driver_sql("SELECT txid_current_snapshot()::text").scalar_one())

    def changed_since(self, st: SourceTable, since: datetime) -> Iterator[pa.RecordBatch]:
        """Rows changed since ``since``, and rows without ``updated_at``: two
        index range scans (an OR of the two would scan the table)."""
        col = st.table.c[UPDATED_AT]
        param = since if st.updated_at_tz else since.replace(tzinfo=None)
        yield from self.stream(st, col >= param)
        if st.table.c[UPDATED_AT].nullable:
            yield from self.stream(st, col.is_(None))


# Small enough that every per-bucket sum stays exact in float64 (< 2**53) for
# bucket widths up to 1e6, so numpy's bincount can add them in any order.
FINGERPRINT_PRIME = 65_521

Fingerprints = dict[int, tuple[int, int, int]]


def bucket_fingerprints(keys: np.ndarray, width: int) -> Fingerprints:
    """What ``SourceReader.bucket_stats`` computes, for keys in any order."""
    if len(keys) == 0:
        return {}
    buckets = bucket_of(keys, width)
    lo = int(buckets.min())
    idx = buckets - lo
    if int(idx.max()) > 50_000_000:  # keys spread too far for one dense array
        parts: list[Fingerprints] = [
            bucket_fingerprints(keys[buckets == b], width) for b in np.unique(buckets)
        ]
        return merge_fingerprints(*parts)
    residue = np.fmod(keys, FINGERPRINT_PRIME).astype(np.float64)  # SQL %: sign of the dividend
    counts = np.bincount(idx)
    sums = np.bincount(idx, weights=(keys - buckets * width).astype(np.float64))
    squares = np.bincount(idx, weights=residue * residue)
    return {lo + int(i): (int(counts[i]), int(sums[i]), int(squares[i])) for i in np.flatnonzero(counts)}


def merge_fingerprints(*parts: Fingerprints, sign: int = 1) -> Fingerprints:
    """Fingerprints add up: the lake's after a run are the previous ones plus
    those of inserted keys minus those of deleted keys. ``sign=-1`` subtracts
    every part after the first."""
    out: dict[int, list[int]] = {}
    for i, part in enumerate(parts):
        f = 1 if i == 0 else sign
        for b, (c, s, q) in part.items():
            acc = out.setdefault(b, [0, 0, 0])
            acc[0] += f * c
            acc[1] += f * s
            acc[2] += f * q
    return {b: (c, s, q) for b, (c, s, q) in out.items() if c != 0 or s != 0 or q != 0}


def bucket_of(keys: np.ndarray, width: int) -> np.ndarray:
    """Bucket numbers: floor division, so bucket b holds keys [b*w, (b+1)*w)."""
    return keys // width


def bucket_range(b: int, width: int) -> tuple[int, int]:
    """Half-open key range [lo, hi) of a bucket."""
    return b * width, (b + 1) * width


def _to_arrow(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # SQLite hands back what was stored: numbers as float, dates as text.
        inferred = pa.array(values)
        if pa.types.is_decimal(typ) and pa.types.is_floating(inferred.type):
            inferred = pa.compute.round(inferred, typ.scale)
        return inferred.cast(typ)


class _CopyPump(io.RawIOBase):
    """A file-like view of a psycopg COPY for Arrow's CSV reader.

    psycopg hands over one row per chunk; a thread gathers them into large
    blocks, so the server keeps producing while Arrow parses (measured: the
    difference between 0.5x and 0.7x of ``psql \\copy``)."""

    def __init__(self, copy: Any, chunk_bytes: int = 4 << 20, depth: int = 8):
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._buf = memoryview(b"")
        self._done = False
        self._stop = threading.Event()

        def pump() -> None:
            acc = bytearray()
            try:
                for row in copy:
                    acc += row
                    if len(acc) >= chunk_bytes:
                        self._put(bytes(acc))
                        acc = bytearray()
                        if self._stop.is_set():
                            return
                if acc:
                    self._put(bytes(acc))
                self._put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread
                self._put(e)

        self._thread = threading.Thread(target=pump, name="copy-pump", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def peek(self) -> bool:
        """Is there anything to read? Waits for the first block."""
        if not self._buf and not self._done:
            item = self._q.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._buf = memoryview(item)
        return bool(self._buf)

    def readinto(self, b: Any) -> int:
        if not self._buf:
            if self._done:
                return 0
            item = self._q.get()
            if item is None:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        super().close()
        self._thread.join(timeout=5)


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Produce ``items`` in a thread, ``depth`` ahead of the consumer, so that
    reading the source overlaps with writing the lake."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(("error", e))

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=30)
