"""Helpers shared by the replication and CLI integration tests (this module holds no tests).

Imported by its sibling test modules as ``test_replication_support`` (pytest's default
``prepend`` import mode puts this folder on ``sys.path``).

The comparison reads the source with SQLAlchemy and the lake with plain
``pyarrow.dataset`` (the layout contract in DESIGN.md), normalizes both sides to
Python values (``Decimal``, aware UTC ``datetime``, ``date``, ``bool``, ``int``,
``str``) keyed by primary key, and compares them row by row.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from autoroi.config import AutoroiConfig, load_config
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.schema import SIMULATOR_PREFIX

REPO = Path(__file__).resolve().parents[2]
FAILPOINT_EXIT = 86


# --------------------------------------------------------------------------- source


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def engine_for(url: str) -> Engine:
    return connect_engine(parse_url(url))


def generate(url: str, *, seed: int = 7, sales_rows: int = 5_000) -> dict[str, int]:
    from autoroi.source.generate import generate_source

    engine = engine_for(url)
    try:
        return dict(generate_source(engine, seed=seed, sales_rows=sales_rows).rows)
    finally:
        engine.dispose()


def mutate(url: str, *, seed: int = 7, batches: int = 1) -> Any:
    from autoroi.source.mutate import mutate_source

    engine = engine_for(url)
    try:
        return mutate_source(engine, seed=seed, batches=batches)
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run raw SQL statements in one transaction (plain SQLAlchemy engine: on
    SQLite, foreign keys stay off, as for any ad-hoc client)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(sa.text(s))
    finally:
        engine.dispose()


def insert_rows(url: str, table: str, rows: list[dict[str, Any]], delete_keys: Sequence[int] = ()) -> None:
    """In one transaction: delete ``delete_keys`` (by primary key), then insert
    ``rows`` with the reflected column types (so timestamps bind correctly on
    every backend)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            key = next(iter(t.primary_key.columns))
            if delete_keys:
                conn.execute(sa.delete(t).where(key.in_(list(delete_keys))))
            if rows:
                conn.execute(sa.insert(t), rows)
    finally:
        engine.dispose()


def update_rows(url: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Update rows by primary key (each dict holds the key and the new values),
    with the reflected column types."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            key = next(iter(t.primary_key.columns))
            for row in rows:
                values = {k: v for k, v in row.items() if k != key.name}
                conn.execute(sa.update(t).where(key == row[key.name]).values(**values))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- snapshots


def norm(value: Any) -> Any:
    """One Python form per value: naive timestamps (SQLite) are UTC, aware ones
    are converted to UTC; everything else compares as is (Decimal('1.5') ==
    Decimal('1.50'))."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@dataclass
class TableSnap:
    name: str
    key: str
    columns: tuple[str, ...]
    rows: dict[int, tuple[Any, ...]]
    duplicates: int = 0  # rows that repeated a key already seen

    def row(self, key: int) -> dict[str, Any]:
        return dict(zip(self.columns, self.rows[key], strict=True))

    def as_dicts(self) -> dict[int, dict[str, Any]]:
        return {k: self.row(k) for k in self.rows}


Snapshot = dict[str, TableSnap]


def source_snapshot(url: str, tables: list[str] | None = None) -> Snapshot:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            # the simulator's own record is not the dealer system's, and never replicated
            found = sa.inspect(conn).get_table_names()
            names = tables or sorted(n for n in found if not n.startswith(SIMULATOR_PREFIX))
            out: Snapshot = {}
            for name in names:
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                pk = [c.name for c in table.primary_key.columns]
                assert len(pk) == 1, f"{name}: expected a single-column primary key, got {pk}"
                cols = tuple(c.name for c in table.columns)
                snap = TableSnap(name, pk[0], cols, {})
                ki = cols.index(pk[0])
                for r in conn.execute(sa.select(table)):
                    values = tuple(norm(v) for v in r)
                    if values[ki] in snap.rows:
                        snap.duplicates += 1
                    snap.rows[values[ki]] = values
                out[name] = snap
            return out
    finally:
        engine.dispose()


def lake_table(lake_dir: Path | str, table: str, zone: str = "raw") -> Any:
    """The table as any Parquet reader sees it: ``pyarrow.dataset`` on the folder."""
    return pads.dataset(f"{lake_dir}/{zone}/{table}", format="parquet").to_table()


def snap_from_arrow(name: str, key: str, table: Any) -> TableSnap:
    cols = tuple(table.column_names)
    snap = TableSnap(name, key, cols, {})
    ki = cols.index(key)
    for r in table.to_pylist():
        values = tuple(norm(r[c]) for c in cols)
        if values[ki] in snap.rows:
            snap.duplicates += 1
        snap.rows[values[ki]] = values
    return snap


def lake_snapshot(lake_dir: Path | str, keys: Mapping[str, str]) -> Snapshot:
    """``keys``: table -> primary key column (take them from a source snapshot)."""
    return {t: snap_from_arrow(t, k, lake_table(lake_dir, t)) for t, k in keys.items()}


def describe_diff(expected: TableSnap, actual: TableSnap, limit: int = 3) -> str:
    """Empty when equal; else a short account of the first differences."""
    problems: list[str] = []
    if actual.duplicates:
        problems.append(f"{actual.duplicates} duplicate key(s) in the lake")
    if set(expected.columns) != set(actual.columns):
        problems.append(
            f"columns differ: missing {sorted(set(expected.columns) - set(actual.columns))},"
            f" extra {sorted(set(actual.columns) - set(expected.columns))}"
        )
        return f"{expected.name}: " + "; ".join(problems)
    missing = sorted(set(expected.rows) - set(actual.rows))
    extra = sorted(set(actual.rows) - set(expected.rows))
    if missing:
        problems.append(f"{len(missing)} key(s) missing from the lake, e.g. {missing[:limit]}")
    if extra:
        problems.append(f"{len(extra)} key(s) in the lake but not the source, e.g. {extra[:limit]}")
    changed = []
    for k in sorted(set(expected.rows) & set(actual.rows)):
        e, a = expected.row(k), actual.row(k)
        cols = [c for c in expected.columns if e[c] != a[c]]
        if cols:
            changed.append((k, {c: (e[c], a[c]) for c in cols}))
    if changed:
        shown = "; ".join(f"key {k}: {d}" for k, d in changed[:limit])
        problems.append(f"{len(changed)} row(s) differ (source, lake): {shown}")
    return f"{expected.name}: " + "; ".join(problems) if problems else ""


def assert_lake_equals(expected: Snapshot, lake_dir: Path | str, tables: list[str] | None = None) -> None:
    names = tables or sorted(expected)
    lake = lake_snapshot(lake_dir, {t: expected[t].key for t in names})
    problems = [p for t in names if (p := describe_diff(expected[t], lake[t]))]
    assert not problems, "lake differs from the source:\n" + "\n".join(problems)


def matches(expected: TableSnap, actual: TableSnap) -> bool:
    return not describe_diff(expected, actual)


def diff_counts(before: TableSnap, after: TableSnap) -> tuple[int, int, int]:
    """(inserted, updated, deleted) between two snapshots of one table, by key
    and content (columns absent on one side count as NULL)."""
    cols = list(dict.fromkeys([*before.columns, *after.columns]))

    def full(s: TableSnap, k: int) -> tuple[Any, ...]:
        r = s.row(k)
        return tuple(r.get(c) for c in cols)

    inserted = len(set(after.rows) - set(before.rows))
    deleted = len(set(before.rows) - set(after.rows))
    updated = sum(1 for k in set(before.rows) & set(after.rows) if full(before, k) != full(after, k))
    return inserted, updated, deleted


# --------------------------------------------------------------------------- lake files


def tree_state(root: Path, *, content: bool = False) -> dict[str, tuple[Any, ...]]:
    """Every file and symbolic link under ``root`` (links not followed):
    kind, and mtime plus size (or a content hash); folders are left out, since
    staging a version and dropping it touches their mtime only."""
    out: dict[str, tuple[Any, ...]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*filenames, *dirnames]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                st = p.stat()
                if content:
                    out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                else:
                    out[rel] = ("file", st.st_mtime_ns, st.st_size)
    return out


def manifest_versions(lake_uri: str, tables: list[str], cfg: AutoroiConfig | None = None) -> dict[str, Any]:
    from autoroi.lake import TableStore, open_lake

    lake = open_lake(lake_uri, (cfg or load_config()).lake)
    out: dict[str, Any] = {}
    for t in tables:
        m = TableStore(lake, "raw", t).manifest()
        out[t] = m.version if m else None
    return out


# --------------------------------------------------------------------------- config and CLI


def config(**replication: Any) -> AutoroiConfig:
    return load_config(overrides={"replication": replication} if replication else None)


def write_config(path: Path, **replication: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"replication": replication}))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOROI_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoroi.cli.main", *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_cmd(*args),
        cwd=REPO,
        env=dict(env) if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("autoroi: error:")]
