"""Write a simulated world (``autoroi.source.simulator``) into the source database.

The schema is dropped and recreated, so a run always leaves exactly one seed's
world behind. Each backend gets its fast path: one SQLite transaction of
driver-level ``executemany``, PostgreSQL ``COPY`` fed with CSV that Arrow
writes, plain SQLAlchemy batches elsewhere. Secondary indexes are built after
the load because maintaining them row by row is what makes bulk loads slow.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from autoroi.errors import ConfigError, SourceError
from autoroi.source import schema
from autoroi.source.db import describe_db_error
from autoroi.source.simulator import SourceData, simulate

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]

SQLITE_CHUNK = 50_000
COPY_CHUNK = 200_000
GENERIC_CHUNK = 10_000


@dataclass
class GenerateReport:
    seed: int
    scale: str
    backend: str
    rows: dict[str, int]
    truth_rows: int
    truth_path: Path | None
    simulate_seconds: float
    load_seconds: float
    seconds: float


def generate_source(
    engine: Engine,
    *,
    seed: int,
    sales_rows: int | None = None,
    scale: str = "small",
    truth_path: Path | None = None,
    progress: Progress | None = None,
) -> GenerateReport:
    """Replace the source database's contents with the world of ``seed`` and,
    if asked, write its ground truth to ``truth_path`` (Parquet)."""
    t0 = perf_counter()
    if truth_path is not None:
        truth_path = Path(truth_path)
        try:
            truth_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # fail before minutes of loading, not after
            raise ConfigError(
                f"cannot create the folder for the truth file {truth_path}: {e.strerror}"
            ) from e
    data = simulate(seed, sales_rows=sales_rows, scale=scale)
    t1 = perf_counter()
    backend = engine.dialect.name
    log.info("loading seed %d (%s sales) into %s", data.seed, f"{data.rows['sales']:,}", backend)
    dbapi_error: type[BaseException] = getattr(
        getattr(engine.dialect, "loaded_dbapi", None), "Error", sa.exc.DBAPIError
    )
    try:
        if backend == "sqlite":
            _load_sqlite(engine, data, progress)
        elif backend == "postgresql" and engine.dialect.driver == "psycopg":
            _load_postgres(engine, data, progress)
        else:
            _load_generic(engine, data, progress)
    except (sa.exc.SQLAlchemyError, dbapi_error) as e:
        raise SourceError(
            f"loading the simulated source into {backend} failed: {describe_db_error(e)}"
        ) from e
    t2 = perf_counter()
    if truth_path is not None:
        write_truth(data.truth, truth_path)
    report = GenerateReport(
        seed=data.seed,
        scale=scale,
        backend=backend,
        rows=data.rows,
        truth_rows=data.truth.num_rows,
        truth_path=truth_path,
        simulate_seconds=round(t1 - t0, 3),
        load_seconds=round(t2 - t1, 3),
        seconds=round(perf_counter() - t0, 3),
    )
    log.info(
        "generated %s rows in %.1f s (simulate %.1f s, load %.1f s)",
        f"{sum(report.rows.values()):,}",
        report.seconds,
        report.simulate_seconds,
        report.load_seconds,
    )
    return report


def write_truth(truth: pa.Table, path: Path) -> None:
    """Atomically: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(truth, tmp, compression="zstd")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the truth file {path}: {e.strerror}") from e


# --------------------------------------------------------------------------- schema


def _recreate(conn: Connection, *, foreign_keys: bool = True) -> None:
    """Without ``foreign_keys`` they are added by ``_finish``: one set-based check
    per constraint instead of a trigger per row, which dominates a COPY."""
    schema.metadata.drop_all(conn, checkfirst=True)
    schema.simulator_metadata.drop_all(conn, checkfirst=True)
    for table in schema.metadata.sorted_tables:
        conn.execute(CreateTable(table, include_foreign_key_constraints=None if foreign_keys else []))
    schema.simulator_metadata.create_all(conn)


def _record_world(conn: Connection, data: SourceData) -> None:
    """What ``autoroi mutate`` needs to continue this world week by week."""
    record = {"seed": data.seed, "sales_rows": data.rows["sales"], "dealers": data.rows["dealers"]}
    conn.execute(schema.simulation.insert(), [{"key": "world", "value": json.dumps(record)}])


def _finish(conn: Connection, *, foreign_keys: bool = False) -> None:
    for table in schema.metadata.sorted_tables:
        if foreign_keys:
            for fk in sorted(table.foreign_key_constraints, key=lambda c: list(c.column_keys)):
                conn.execute(AddConstraint(fk))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            conn.execute(CreateIndex(index))


def _batches(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(i, rows) for i in range(0, max(table.num_rows, 1), rows) if table.num_rows]


# --------------------------------------------------------------------------- SQLite


def _sqlite_columns(batch: pa.Table) -> list[list[Any]]:
    """Python values in the text forms SQLAlchemy's SQLite types write and read
    back (dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC)."""
    out = []
    for col in batch.columns:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us")).cast(pa.string())
        elif pa.types.is_date(col.type):
            col = col.cast(pa.string())
        out.append(col.to_pylist())
    return out


def _load_sqlite(engine: Engine, data: SourceData, progress: Progress | None) -> None:
    with engine.connect() as conn:
        # outside a transaction: SQLite refuses to change the journal mode inside one
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        conn.commit()
        conn.exec_driver_sql("BEGIN")
        _recreate(conn)
        for name, table in data.tables.items():
            cols = ", ".join(f'"{c}"' for c in table.column_names)
            sql = f'INSERT INTO "{name}" ({cols}) VALUES ({", ".join("?" * table.num_columns)})'
            done = 0
            for batch in _batches(table, SQLITE_CHUNK):
                conn.exec_driver_sql(sql, list(zip(*_sqlite_columns(batch), strict=True)))
                done += batch.num_rows
                if progress:
                    progress(name, done)
        _record_world(conn, data)
        _finish(conn)
        conn.commit()
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.commit()


# --------------------------------------------------------------------------- PostgreSQL


def _csv_ready(table: pa.Table, sa_table: sa.Table) -> pa.Table:
    """Numeric columns as exact decimals, so COPY never sees ``1e+07``."""
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        typ = sa_table.c[f.name].type
        if isinstance(typ, sa.Numeric) and not isinstance(typ, sa.Float) and pa.types.is_floating(f.type):
            col = col.cast(pa.decimal128(typ.precision or 18, typ.scale or 0))
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _load_postgres(engine: Engine, data: SourceData, progress: Progress | None) -> None:
    quote = engine.dialect.identifier_preparer.quote
    options = pacsv.WriteOptions(include_header=False, batch_size=16_384)
    with engine.connect() as conn:
        # tables created in this transaction: with wal_level=minimal COPY skips the WAL
        _recreate(conn, foreign_keys=False)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            for name, table in data.tables.items():
                sa_table = schema.metadata.tables[name]
                cols = ", ".join(quote(c) for c in table.column_names)
                done = 0
                with cur.copy(f"COPY {quote(name)} ({cols}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in _batches(table, COPY_CHUNK):
                        buf = io.BytesIO()
                        pacsv.write_csv(_csv_ready(batch, sa_table), buf, options)
                        copy.write(buf.getbuffer())
                        done += batch.num_rows
                        if progress:
                            progress(name, done)
        _record_world(conn, data)
        _finish(conn, foreign_keys=True)
        conn.commit()
        for name in data.tables:
            conn.exec_driver_sql(f"ANALYZE {quote(name)}")
        conn.commit()


# --------------------------------------------------------------------------- anything else


def _load_generic(engine: Engine, data: SourceData, progress: Progress | None) -> None:
    """Plain SQLAlchemy batches (MySQL, MariaDB): timestamps as naive UTC, since
    their DATETIME has no time zone."""
    with engine.begin() as conn:
        _recreate(conn)
        for name, table in data.tables.items():
            sa_table = schema.metadata.tables[name]
            naive = pa.schema(
                pa.field(f.name, pa.timestamp("us"), f.nullable) if pa.types.is_timestamp(f.type) else f
                for f in table.schema
            )
            done = 0
            for batch in _batches(table, GENERIC_CHUNK):
                conn.execute(sa_table.insert(), batch.cast(naive).to_pylist())
                done += batch.num_rows
                if progress:
                    progress(name, done)
        _record_world(conn, data)
        _finish(conn)
