"""Replication benchmark: a full load of ``sales`` from PostgreSQL, three ways.

Contenders, each in a fresh subprocess of its own so that its peak memory is
its own (``VmHWM``, the high-water mark of the process's resident set):

* **autoroi**: ``autoroi.replication.replicate_tables(cfg, tables=["sales"])``
  with the default configuration, into a fresh local lake (Parquet, zstd);
* **psql \\copy**: ``\\copy (SELECT * FROM sales) TO 'file' WITH (FORMAT csv)``
  with the psql binary: the server's fastest way out, the near limit;
* **pandas.read_sql**: ``pd.read_sql("SELECT * FROM sales", engine)`` with a
  SQLAlchemy engine (psycopg 3): what most people write.

Then, at the largest size, a change capture: a copy of the database is loaded
in full, gets ``autoroi.source.mutate.mutate_source(engine, seed=..., batches=1)``
and ``replicate_tables`` runs again against that lake, for ``sales`` only. A
batch changes about 1.5 % of ``sales`` (1 % inserts, 0.4 % updates, 0.1 %
deletes); the first batch on a fresh database also adds a column, which
reloads the table in full by design, so it is applied (and reported) first and
the batch after it is the one measured.

The source is a throw-away PostgreSQL server (``fsync=off``,
``wal_level=logical``, so that change capture reads deletes from a
replication slot) with one database per size, filled by
``autoroi.source.generate.generate_source(seed=7, scale="large")``;
generation is timed and printed apart from the comparison. Each full-load run
of autoroi creates the slot (and publication) of its fresh lake, as a first
run does; they are dropped after the run, outside the timing.

Usage::

    .venv/bin/python bench/replication.py                      # 1M and 5M rows
    .venv/bin/python bench/replication.py --quick              # 100k and 500k rows
    .venv/bin/python bench/replication.py --skip-pandas-at 5000000 --json var/bench.json
    .venv/bin/python bench/replication.py --keep-server /tmp/autoroi-bench   # reuse the data
    .venv/bin/python bench/replication.py --rev HEAD --repeat 3   # the committed code, best of 3
    .venv/bin/python bench/replication.py --rev WORKTREE          # uncommitted work, copied at the start

``--keep-server DIR`` keeps the cluster and its generated databases in DIR
(``--generate-only`` just prepares them). Every run notes the CPU that other
processes used meanwhile ("others' cores"): on a shared machine, a run with
a high figure there is disturbed and should be repeated. The incremental
capture also reports its CPU (client and PostgreSQL) against the fastest
full load's, a ratio that other processes do not stretch.

Targets (printed PASS/FAIL): autoroi >= 0.5x the psql COPY rate and >= 5x the
pandas.read_sql rate at every size; autoroi's peak memory at the largest size
<= 1.3x that at the smallest; the incremental capture of a 1 % change < 10 % of
the full load's time. Results of a full run: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cpuload import machine_busy_s  # bench/, the script's own folder

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "
SPEC_ENV = "BENCH_WORKER_SPEC"
SEED = 7
SCALE = "large"
DEFAULT_SIZES = (1_000_000, 5_000_000)
QUICK_SIZES = (100_000, 500_000)
TARGET_COPY = 0.5
TARGET_PANDAS = 5.0
TARGET_MEMORY = 1.3
TARGET_INCREMENTAL = 0.10
MIB = 1 << 20

AUTOROI = "autoroi"
PSQL = "psql_copy"
PANDAS = "pandas"
LABELS = {
    AUTOROI: "autoroi replicate_tables",
    PSQL: "psql \\copy -> CSV",
    PANDAS: "pandas.read_sql",
}


# =========================================================================== memory


def hwm_bytes(pid: int | str = "self") -> int | None:
    """Peak resident set of a live process (``VmHWM``). Unlike ``ru_maxrss``
    it starts afresh at exec, so a child does not inherit its parent's peak."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    t = os.times()
    return t.user + t.system


def self_peak_bytes() -> int:
    peak = hwm_bytes()
    if peak is not None:
        return peak
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


@dataclasses.dataclass
class Measured:
    wall_s: float
    peak_bytes: int  # the process's own figure when it reports one, else polled
    cpu_s: float
    returncode: int
    stdout: str
    result: dict[str, Any]


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` and watch its peak resident set (polled every 5 ms; a Python
    worker of this file reports its exact ``VmHWM`` itself) and its CPU time
    (user + system, all threads; the server's backend is not included)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            value = hwm_bytes(proc.pid)
            if value is not None:
                peak[0] = max(peak[0], value)
            done.wait(0.005)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        wall = time.perf_counter() - started
        done.set()
        watcher.join()
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    reported = result.get("peak_bytes")
    return Measured(
        wall_s=wall,
        peak_bytes=int(reported) if reported else peak[0],
        cpu_s=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        stdout=stdout,
        result=result,
    )


# =========================================================================== PostgreSQL server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path:
    def version_key(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", Path(path).parent.parent.name)) or (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise SystemExit("PostgreSQL server binaries not found (make system-deps)")


def server_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise SystemExit("running as root and there is neither a 'postgres' nor a 'nobody' user")


def clean_env() -> dict[str, str]:
    """The environment without PG* and AUTOROI_* variables (defaults apply)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AUTOROI_"))}


# logical decoding, so that change capture reads deletes from a replication slot
LOGICAL_WAL = {"wal_level": "logical", "max_wal_senders": 4, "max_replication_slots": 16}
LOGICAL_WAL_CONF = "".join(f"{k} = {v}\n" for k, v in LOGICAL_WAL.items())


class PgServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (superuser ``postgres``).

    ``base`` holds ``data/``, the log, the socket and the password; with
    ``keep=True`` the cluster (and its databases) survive for the next run."""

    user = "postgres"

    def __init__(self, base: Path, keep: bool):
        self.base = base
        self.keep = keep
        self.bindir = pg_bindir()
        self.os_user = server_os_user()
        self.port = 0
        self.password = ""
        self.version = ""
        self.running = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def conninfo(self, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={db} connect_timeout=10"

    def _run(self, args: list[str], timeout: float = 300) -> None:
        env = clean_env() | {"LC_ALL": "C", "LANG": "C"}
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            env["HOME"] = str(self.base)
        proc = subprocess.run(
            args,
            cwd=self.base,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode})\n{proc.stdout}\n{proc.stderr}")

    def _chown(self, path: Path) -> None:
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # the server's OS user must traverse it
        self._chown(self.base)
        secret = self.base / "password"
        if (self.data / "PG_VERSION").exists():
            self.password = secret.read_text().strip()
            return
        self.password = "pw-" + secrets.token_hex(8)
        secret.write_text(self.password + "\n")
        secret.chmod(0o600)
        self._chown(secret)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={secret}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# autoroi bench\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                f"{LOGICAL_WAL_CONF}max_wal_size = '4GB'\n"
            )

    def start(self, attempts: int = 3) -> None:
        self.init()
        last: Exception | None = None
        for _ in range(attempts):
            self.port = free_port()
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-o",
                        # -c also switches a cluster kept from a run made with wal_level=minimal
                        f"-p {self.port} " + " ".join(f"-c {k}={v}" for k, v in LOGICAL_WAL.items()),
                        "-w",
                        "-t",
                        "120",
                        "start",
                    ],
                    timeout=180,
                )
                self.running = True
                self.version = self.query("postgres", "SHOW server_version")[0][0]
                return
            except (RuntimeError, subprocess.TimeoutExpired) as e:  # e.g. lost the port race
                last = e
                self.stop()
        raise SystemExit(f"PostgreSQL did not start: {last}\n{self.log_tail()}")

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        with contextlib.suppress(Exception):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], 120)
        self.running = False

    def close(self) -> None:
        self.stop()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def cpu_s(self) -> float:
        """CPU seconds of the postmaster and of every backend it has reaped."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return 0.0
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no server log>"

    def connect(self, db: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(db), password=self.password, autocommit=True)

    def query(self, db: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect(db) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def execute(self, db: str, sql: str) -> None:
        with self.connect(db) as conn:
            conn.execute(sql)

    def databases(self) -> set[str]:
        return {r[0] for r in self.query("postgres", "SELECT datname FROM pg_database")}

    def create_database(self, name: str, template: str | None = None) -> None:
        self.drop_database(name)
        extra = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        self.execute("postgres", f'CREATE DATABASE "{name}"{extra}')

    def drop_replication_state(self, db: str) -> None:
        """Drop the replication slots and publications autoroi made in ``db``
        (one per lake; every full-load run uses a fresh lake)."""
        self.query(
            db,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = current_database() AND slot_name LIKE 'autoroi%'",
        )
        for (pub,) in self.query(db, "SELECT pubname FROM pg_publication WHERE pubname LIKE 'autoroi%'"):
            self.execute(db, f'DROP PUBLICATION "{pub}"')

    def drop_database(self, name: str) -> None:
        # a database with a replication slot cannot be dropped: the slots go first
        self.query(
            "postgres",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            (name,),
        )
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# =========================================================================== workers (subprocesses)


def _report(payload: dict[str, Any]) -> None:
    payload["peak_bytes"] = self_peak_bytes()
    print(RESULT_PREFIX + json.dumps(payload, default=str), flush=True)


def worker_generate(spec: dict[str, Any]) -> dict[str, Any]:
    import sqlalchemy as sa

    from autoroi.source.generate import generate_source

    engine = sa.create_engine(spec["url"])
    t0 = time.perf_counter()
    rep = generate_source(engine, seed=spec["seed"], sales_rows=spec["rows"], scale=spec["scale"])
    t1 = time.perf_counter()
    # set hint bits and the visibility map now, so that no contender pays for
    # the first read after a bulk load
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE) sales")
        rows = conn.exec_driver_sql("SELECT count(*) FROM sales").scalar_one()
    t2 = time.perf_counter()
    engine.dispose()
    return {
        "generate_s": t1 - t0,
        "vacuum_s": t2 - t1,
        "rows": int(rows),
        "table_rows": rep.rows,
        "simulate_s": rep.simulate_seconds,
        "load_s": rep.load_seconds,
    }


def worker_autoroi(spec: dict[str, Any]) -> dict[str, Any]:
    import autoroi
    from autoroi.config import load_config
    from autoroi.replication import replicate_tables

    cfg = load_config()
    base_rss = rss_bytes()
    c0, t0 = cpu_seconds(), time.perf_counter()
    report = replicate_tables(
        cfg,
        source_url=spec["url"],
        lake_uri=spec["lake"],
        tables=["sales"],
        full_refresh=bool(spec.get("full_refresh", False)),
    )
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if not report.ok:
        raise SystemExit(f"replicate_tables failed: {report.to_dict()}")
    t = report.tables[0]
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "rows": t.extracted if t.status == "full_load" else t.rows,
        "status": t.status,
        "lake_rows": t.rows,
        "extracted": t.extracted,
        "inserted": t.inserted,
        "updated": t.updated,
        "deleted": t.deleted,
        "table_seconds": t.seconds,
        "deletes": getattr(t, "deletes", ""),
        "version": t.version,
        "base_rss_bytes": base_rss,
        "replication_config": cfg.replication.model_dump(),
        "autoroi_path": str(Path(autoroi.__file__).parent),
    }


def worker_pandas(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    base_rss = rss_bytes()
    c0, t0 = cpu_seconds(), time.perf_counter()
    engine = sa.create_engine(spec["url"])
    df = pd.read_sql("SELECT * FROM sales", engine)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    rows = len(df)
    engine.dispose()
    return {"seconds": seconds, "cpu_s": cpu, "rows": rows, "base_rss_bytes": base_rss}


def worker_mutate(spec: dict[str, Any]) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(spec["url"])
    t0 = time.perf_counter()
    if spec["how"] == "mutate_source":
        from autoroi.source.mutate import mutate_source

        out: Any = mutate_source(engine, seed=spec["seed"], batches=spec["batches"])
        summary = dataclasses.asdict(out) if dataclasses.is_dataclass(out) else out  # type: ignore[arg-type]
    else:  # --change sql: 1 % of the rows, spread over the whole key range
        with engine.begin() as conn:
            n = conn.exec_driver_sql(
                "UPDATE sales SET trade_in_value = coalesce(trade_in_value, 0) + 1, updated_at = now()"
                " WHERE mod(sale_id, 100) = 37"
            ).rowcount
        summary = {"updated": n}
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {"seconds": seconds, "summary": summary}


WORKERS = {
    "generate": worker_generate,
    "autoroi": worker_autoroi,
    "pandas": worker_pandas,
    "mutate": worker_mutate,
}


def worker_main(kind: str) -> None:
    # the spec (with the server's password) travels in the environment, not on the command line
    _report(WORKERS[kind](json.loads(os.environ[SPEC_ENV])))


# the autoroi code the workers import: the working tree, or a snapshot of --rev
CODE: dict[str, Any] = {"root": REPO, "rev": None, "worktree": False}
WORKTREE = "WORKTREE"


def export_revision(rev: str) -> tempfile.TemporaryDirectory[str]:
    """``git archive REV autoroi`` into a temporary folder, for the workers to
    import (read-only for the repository: no checkout, index untouched).
    ``WORKTREE``: a copy of the working tree's ``autoroi/`` as it is now, so
    that uncommitted work is measured and edits made during the run are not."""
    if rev == WORKTREE:
        tmp = tempfile.TemporaryDirectory(prefix="autoroi-bench-src-")
        shutil.copytree(
            REPO / "autoroi", Path(tmp.name) / "autoroi", ignore=shutil.ignore_patterns("__pycache__")
        )
        CODE.update(root=Path(tmp.name), rev=None, worktree=True)
        log(f"measuring the working tree's autoroi as it is now (copied to {tmp.name})")
        return tmp
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if resolved.returncode != 0:
        raise SystemExit(f"unknown revision {rev!r}: {resolved.stderr.strip()}")
    rev = resolved.stdout.strip()
    tmp = tempfile.TemporaryDirectory(prefix="autoroi-bench-src-")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "autoroi"], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        tmp.cleanup()
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", tmp.name], input=archive.stdout, check=True)
    CODE.update(root=Path(tmp.name), rev=rev)
    log(f"measuring autoroi as of {rev} (exported to {tmp.name})")
    return tmp


def run_worker(kind: str, spec: dict[str, Any]) -> Measured:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind]
    env = clean_env() | {SPEC_ENV: json.dumps(spec)}
    root = str(CODE["root"])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    m = run_measured(cmd, env=env)
    if m.returncode != 0 or not m.result:
        raise RuntimeError(f"worker {kind} failed with exit code {m.returncode}\n{m.stdout[-3000:]}")
    return m


# =========================================================================== contenders


@dataclasses.dataclass
class Run:
    contender: str
    size: int
    rows: int
    seconds: float
    peak_bytes: int
    wall_s: float
    cpu_s: float  # client process only, during ``seconds``
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def psql_binary(server: PgServer) -> str:
    own = server.bindir / "psql"
    return str(own) if own.exists() else (shutil.which("psql") or "psql")


def run_psql_copy(server: PgServer, db: str, dest: str) -> Measured:
    env = clean_env() | {"PGPASSWORD": server.password}
    cmd = [
        psql_binary(server),
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        server.conninfo(db),
        "-c",
        f"\\copy (SELECT * FROM sales) TO '{dest}' WITH (FORMAT csv)",
    ]
    m = run_measured(cmd, env=env)
    if m.returncode != 0:
        raise RuntimeError(f"psql failed with exit code {m.returncode}: {m.stdout}")
    return m


def _measure(contender: str, server: PgServer, db: str, size: int, work: Path) -> tuple[Run, Measured]:
    if contender == PSQL:
        dest = work / f"{db}.csv"
        m = run_psql_copy(server, db, str(dest))
        found = re.search(r"COPY (\d+)", m.stdout)
        rows = int(found.group(1)) if found else size
        extra = {"csv_bytes": dest.stat().st_size}
        dest.unlink(missing_ok=True)
        return Run(contender, size, rows, m.wall_s, m.peak_bytes, m.wall_s, m.cpu_s, extra), m
    if contender == AUTOROI:
        lake = Path(tempfile.mkdtemp(prefix="lake-", dir=work))
        try:
            m = run_worker("autoroi", {"url": server.url(db), "lake": str(lake)})
            extra = {k: m.result[k] for k in ("status", "table_seconds", "base_rss_bytes")}
            extra["lake_bytes"] = sum(p.stat().st_size for p in lake.rglob("*") if p.is_file())
            extra["replication_config"] = m.result["replication_config"]
            extra["autoroi_path"] = m.result["autoroi_path"]
        finally:
            shutil.rmtree(lake, ignore_errors=True)
            server.drop_replication_state(db)  # the slot and publication of that lake
    else:
        m = run_worker("pandas", {"url": server.url(db)})
        extra = {"base_rss_bytes": m.result["base_rss_bytes"]}
    r = m.result
    return Run(contender, size, r["rows"], r["seconds"], m.peak_bytes, m.wall_s, r["cpu_s"], extra), m


def _with_others(server: PgServer, run: Any) -> tuple[Measured, float, float]:
    """``run()`` (a worker), the cores other processes used meanwhile, and
    the CPU seconds the PostgreSQL server used."""
    busy0, pg0 = machine_busy_s(), server.cpu_s()
    m = run()
    time.sleep(0.05)
    pg = server.cpu_s() - pg0
    other = (machine_busy_s() - busy0) - m.cpu_s - pg
    return m, (round(max(other, 0.0) / m.wall_s, 2) if m.wall_s > 0 else 0.0), round(pg, 2)


def measure(contender: str, server: PgServer, db: str, size: int, work: Path) -> Run:
    """One run, with the CPU that neither the contender nor the PostgreSQL
    server used meanwhile (``other_cores``: other people's work on a shared
    machine, in cores; a disturbed run shows up there)."""
    busy0, pg0 = machine_busy_s(), server.cpu_s()
    run, m = _measure(contender, server, db, size, work)
    time.sleep(0.05)  # let the postmaster reap the backend, so its CPU is counted
    pg = server.cpu_s() - pg0
    other = (machine_busy_s() - busy0) - m.cpu_s - pg
    run.extra["other_cores"] = round(max(other, 0.0) / m.wall_s, 2) if m.wall_s > 0 else 0.0
    run.extra["server_cpu_s"] = round(pg, 2)
    return run


# =========================================================================== the benchmark


def db_name(size: int) -> str:
    return f"sales_{size}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prepare_sources(server: PgServer, sizes: Sequence[int], seed: int) -> dict[int, dict[str, Any]]:
    """One database per size; reused when a kept server already has it."""
    meta_path = server.base / "bench_meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    present = server.databases()
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        name = db_name(size)
        known = meta.get(name)
        if known and name in present and known.get("seed") == seed and known.get("scale") == SCALE:
            out[size] = known | {"reused": True}
            log(f"{name}: reusing the kept database (generated in {known['generate_s']:.1f} s)")
            continue
        log(f"{name}: generating {size:,} sales rows (seed={seed}, scale={SCALE}) ...")
        server.create_database(name)
        m = run_worker("generate", {"url": server.url(name), "seed": seed, "rows": size, "scale": SCALE})
        info = {
            k: m.result[k] for k in ("generate_s", "vacuum_s", "rows", "table_rows", "simulate_s", "load_s")
        }
        info |= {"seed": seed, "scale": SCALE, "peak_bytes": m.peak_bytes}
        size_row = server.query(name, "SELECT pg_total_relation_size('sales')")[0][0]
        info["sales_bytes"] = int(size_row)
        meta[name] = info
        meta_path.write_text(json.dumps(meta, indent=2))
        out[size] = info | {"reused": False}
        log(f"{name}: generated in {info['generate_s']:.1f} s (+ VACUUM FREEZE {info['vacuum_s']:.1f} s)")
    return out


def best_of(runs: list[Run]) -> Run:
    best = min(runs, key=lambda r: r.seconds)
    return dataclasses.replace(best, peak_bytes=max(r.peak_bytes for r in runs))


def full_loads(
    server: PgServer, sizes: Sequence[int], repeat: int, skip_pandas: set[int], work: Path
) -> dict[int, dict[str, Run]]:
    results: dict[int, dict[str, Run]] = {}
    for size in sizes:
        db = db_name(size)
        contenders = [PSQL, AUTOROI] + ([] if size in skip_pandas else [PANDAS])
        log(f"{db}: warming the cache (one untimed psql \\copy)")
        run_psql_copy(server, db, "/dev/null")
        runs: dict[str, list[Run]] = {c: [] for c in contenders}
        for i in range(repeat):
            for c in contenders:  # interleaved, so a disturbance does not hit one contender only
                r = measure(c, server, db, size, work)
                runs[c].append(r)
                log(
                    f"{db}: {LABELS[c]} run {i + 1}/{repeat}: {r.rows:,} rows in {r.seconds:.2f} s"
                    f" ({r.rate:,.0f} rows/s), peak {r.peak_bytes / MIB:,.0f} MiB,"
                    f" other processes {r.extra['other_cores']:.2f} cores"
                )
        results[size] = {c: best_of(rs) for c, rs in runs.items()}
        for c, rs in runs.items():
            results[size][c].extra["all_seconds"] = [round(r.seconds, 3) for r in rs]
            results[size][c].extra["all_peak_mib"] = [round(r.peak_bytes / MIB) for r in rs]
            results[size][c].extra["all_other_cores"] = [r.extra["other_cores"] for r in rs]
    return results


def incremental_capture(
    server: PgServer, size: int, how: str, seed: int, batches: int, work: Path
) -> dict[str, Any]:
    """Full load of a copy of the ``size`` database, change it, capture the change.

    The first ``mutate_source`` batch on a fresh database also migrates the
    schema (it adds ``sales.delivery_date``), which makes the next replication
    a full reload by design. That batch is applied and replicated first (its
    time is reported as well); the measured change is the batch after it."""
    src, db = db_name(size), f"incr_{size}"
    log(f"{db}: copying {src} (CREATE DATABASE ... TEMPLATE)")
    server.create_database(db, template=src)
    lake = Path(tempfile.mkdtemp(prefix="lake-incr-", dir=work))
    url = server.url(db)
    spec = {"url": url, "seed": seed, "batches": batches, "how": how}
    migration: dict[str, Any] | None = None
    try:
        full = run_worker("autoroi", {"url": url, "lake": str(lake)})
        log(f"{db}: full load {full.result['seconds']:.2f} s")
        has_column = server.query(
            db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'sales'"
            " AND column_name = 'delivery_date'",
        )[0][0]
        if how == "mutate_source" and not has_column:
            log(f"{db}: first mutate batch (it adds sales.delivery_date)")
            m1 = run_worker("mutate", spec)
            r1 = run_worker("autoroi", {"url": url, "lake": str(lake)})
            migration = {
                "mutate_seconds": m1.result["seconds"],
                "mutate_summary": m1.result["summary"],
                "replicate_seconds": r1.result["seconds"],
                "replicate_status": r1.result["status"],
                "rows": r1.result["lake_rows"],
                "peak_bytes": r1.peak_bytes,
            }
            log(f"{db}: replication after the migration: {r1.result['status']} {r1.result['seconds']:.2f} s")
        before = server.query(db, "SELECT count(*), max(updated_at), max(sale_id) FROM sales")[0]
        log(f"{db}: applying the measured change ({how})")
        mut = run_worker("mutate", spec)
        count, changed, new_keys = server.query(
            db,
            "SELECT count(*), count(*) FILTER (WHERE updated_at > %s), count(*) FILTER (WHERE sale_id > %s)"
            " FROM sales",
            (before[1], before[2]),
        )[0]
        inc, inc_other, inc_pg = _with_others(
            server, lambda: run_worker("autoroi", {"url": url, "lake": str(lake)})
        )
        log(
            f"{db}: incremental {inc.result['seconds']:.2f} s ({inc.result['status']},"
            f" deletes: {inc.result.get('deletes')}), other processes {inc_other:.2f} cores"
        )
        again, again_other, again_pg = _with_others(
            server, lambda: run_worker("autoroi", {"url": url, "lake": str(lake)})
        )
        log(
            f"{db}: incremental with nothing changed {again.result['seconds']:.2f} s,"
            f" other processes {again_other:.2f} cores"
        )
    finally:
        shutil.rmtree(lake, ignore_errors=True)
        server.drop_database(db)
    r = inc.result
    touched = r["inserted"] + r["updated"] + r["deleted"]
    full_loads_s = [full.result["seconds"]]
    if migration and migration["replicate_status"] == "full_load":
        full_loads_s.append(migration["replicate_seconds"])
    return {
        "size": size,
        "change": how,
        "mutate_seed": seed,
        "mutate_batches": batches,
        "migration_batch": migration,
        "mutate_seconds": mut.result["seconds"],
        "mutate_summary": mut.result["summary"],
        "rows_before": int(before[0]),
        "rows_after": int(count),
        "source_rows_newer_than_watermark": int(changed),
        "source_new_keys": int(new_keys),
        "full_load_seconds": min(full_loads_s),
        "full_load_peak_bytes": full.peak_bytes,
        "incremental_seconds": r["seconds"],
        "incremental_status": r["status"],
        "incremental_deletes": r.get("deletes", ""),
        "incremental_other_cores": inc_other,
        # CPU of the call (client) and of the server: a measure other processes do not stretch
        "incremental_client_cpu_s": round(r["cpu_s"], 2),
        "incremental_server_cpu_s": inc_pg,
        "unchanged_client_cpu_s": round(again.result["cpu_s"], 2),
        "unchanged_server_cpu_s": again_pg,
        "unchanged_other_cores": again_other,
        "incremental_peak_bytes": inc.peak_bytes,
        "extracted": r["extracted"],
        "inserted": r["inserted"],
        "updated": r["updated"],
        "deleted": r["deleted"],
        "changed_rows": touched,
        "changed_fraction": touched / max(int(before[0]), 1),
        "unchanged_seconds": again.result["seconds"],
        "unchanged_status": again.result["status"],
        "unchanged_deletes": again.result.get("deletes", ""),
    }


# =========================================================================== report


def git_revision() -> str:
    """The commit the benchmark ran on, ``+dirty`` when autoroi/ has local changes."""
    root = REPO
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", CODE["rev"] or "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if CODE["rev"]:
            return rev  # an exported snapshot: clean by construction
        if CODE["worktree"]:
            return rev + "+worktree"  # a copy of the working tree taken at the start
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "autoroi"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def source_digest() -> str:
    """A digest of autoroi/'s Python sources: the code a run measured, even
    with uncommitted changes (workers import it afresh, so it must not change
    during a run)."""
    import hashlib

    pkg = Path(CODE["root"]) / "autoroi"
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def machine_info(server: PgServer) -> dict[str, Any]:
    import pyarrow

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        mem = int(f.readline().split()[1]) * 1024
    osname = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"') + f" (kernel {platform.release()})"
    versions = {"python": platform.python_version(), "pyarrow": pyarrow.__version__}
    for mod in ("numpy", "pandas", "sqlalchemy", "psycopg"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    return {
        "autoroi_revision": git_revision(),
        "autoroi_digest": source_digest(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": mem,
        "os": osname,
        "postgresql": server.version,
        "psql": psql_binary(server),
        "versions": versions,
    }


def fmt_rows(n: int) -> str:
    return f"{n:,}"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def analyse(
    results: dict[int, dict[str, Run]], incr: dict[str, Any] | None, sizes: Sequence[int]
) -> dict[str, Any]:
    """Ratios and targets. A size without pandas borrows the pandas rate of
    the largest size that has one (pandas' rate does not improve with size)."""
    ratios: dict[int, dict[str, Any]] = {}
    measured_pandas = [s for s in sizes if PANDAS in results[s]]
    for size in sizes:
        runs = results[size]
        a = runs[AUTOROI].rate
        copy_ratio = a / runs[PSQL].rate if runs[PSQL].rate else None
        pandas_from = size if size in measured_pandas else (max(measured_pandas) if measured_pandas else None)
        pandas_rate = results[pandas_from][PANDAS].rate if pandas_from is not None else None
        ratios[size] = {
            "autoroi_over_copy": copy_ratio,
            "autoroi_over_pandas": a / pandas_rate if pandas_rate else None,
            "pandas_rate_from": pandas_from,
        }
    small, large = min(sizes), max(sizes)
    mem_ratio = (
        results[large][AUTOROI].peak_bytes / results[small][AUTOROI].peak_bytes if large != small else None
    )
    targets = []

    def check(name: str, values: dict[str, float | None], ok: bool | None) -> None:
        targets.append({"target": name, "values": values, "pass": ok})

    copies = {fmt_rows(s): ratios[s]["autoroi_over_copy"] for s in sizes}
    check(
        f"autoroi >= {TARGET_COPY}x psql COPY rate (every size)",
        copies,
        all(v is not None and v >= TARGET_COPY for v in copies.values()),
    )
    pandas = {fmt_rows(s): ratios[s]["autoroi_over_pandas"] for s in sizes}
    check(
        f"autoroi >= {TARGET_PANDAS:g}x pandas.read_sql rate (every size)",
        pandas,
        None
        if all(v is None for v in pandas.values())
        else all(v is not None and v >= TARGET_PANDAS for v in pandas.values()),
    )
    check(
        f"autoroi peak memory {fmt_rows(large)} / {fmt_rows(small)} <= {TARGET_MEMORY}x",
        {"ratio": mem_ratio},
        None if mem_ratio is None else mem_ratio <= TARGET_MEMORY,
    )
    incr_ratio = None
    if incr is not None:
        full = min([incr["full_load_seconds"], results[incr["size"]][AUTOROI].seconds])
        incr["full_load_reference_seconds"] = full
        best = results[incr["size"]][AUTOROI]
        incr["full_load_reference_cpu_s"] = round(best.cpu_s + best.extra.get("server_cpu_s", 0.0), 2)
        incr_ratio = incr["incremental_seconds"] / full
        incr["ratio_to_full_load"] = incr_ratio
    check(
        f"incremental capture of a ~1% change < {TARGET_INCREMENTAL:.0%} of the full load",
        {"ratio": incr_ratio},
        None if incr_ratio is None else incr_ratio < TARGET_INCREMENTAL,
    )
    return {"ratios": ratios, "memory_ratio": mem_ratio, "targets": targets}


def render(
    info: dict[str, Any],
    sources: dict[int, dict[str, Any]],
    results: dict[int, dict[str, Run]],
    incr: dict[str, Any] | None,
    analysis: dict[str, Any],
    sizes: Sequence[int],
    repeat: int,
) -> str:
    out: list[str] = []
    if info.get("autoroi_digest_after", info["autoroi_digest"]) != info["autoroi_digest"]:
        out.append("WARNING: autoroi's sources changed during this run; the figures mix two versions")
    mem_gib = info["memory_bytes"] / (1 << 30)
    out.append(
        f"Full load of table `sales` from PostgreSQL {info['postgresql']} (127.0.0.1, fsync=off),"
        f" best of {repeat} run(s)"
    )
    out.append(
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {mem_gib:.1f} GiB RAM, {info['os']};"
        f" Python {info['versions']['python']}, pyarrow {info['versions']['pyarrow']},"
        f" pandas {info['versions'].get('pandas', '?')}; autoroi at {info['autoroi_revision']}"
        f" (sources {info['autoroi_digest']})"
    )
    out.append("")
    rows = []
    for size in sizes:
        runs = results[size]
        for c in (AUTOROI, PSQL, PANDAS):
            if c not in runs:
                rows.append([fmt_rows(size), LABELS[c], "skipped", "", "", "", "", "", ""])
                continue
            r = runs[c]
            speedup = "" if c == AUTOROI else fmt_ratio(runs[AUTOROI].rate / r.rate if r.rate else None)
            rows.append(
                [
                    fmt_rows(size),
                    LABELS[c],
                    fmt_rows(r.rows),
                    f"{r.seconds:.2f}",
                    f"{r.rate:,.0f}",
                    f"{r.peak_bytes / MIB:,.0f}",
                    f"{r.cpu_s:.1f}",
                    f"{r.extra.get('other_cores', 0.0):.2f}",
                    speedup,
                ]
            )
    out.append(
        table(
            [
                "size",
                "contender",
                "rows",
                "seconds",
                "rows/s",
                "peak RSS MiB",
                "client CPU s",
                "others' cores",
                "autoroi/this",
            ],
            rows,
            right={0, 2, 3, 4, 5, 6, 7, 8},
        )
    )
    others = [
        x for runs in results.values() for r in runs.values() for x in r.extra.get("all_other_cores", [])
    ]
    if others:
        out.append(
            f"others' cores: CPU used by other processes (not the contender, not PostgreSQL) during the run;"
            f" over all {len(others)} runs mean {sum(others) / len(others):.2f}, max {max(others):.2f}"
            f" of {info['cpus']} cores"
        )
    out.append("")
    ratio_rows = []
    for size in sizes:
        ratio = analysis["ratios"][size]
        note = ""
        if ratio["pandas_rate_from"] is not None and ratio["pandas_rate_from"] != size:
            note = f"pandas skipped at this size: its {fmt_rows(ratio['pandas_rate_from'])}-row rate is used"
        ratio_rows.append(
            [
                fmt_rows(size),
                fmt_ratio(ratio["autoroi_over_copy"]),
                fmt_ratio(ratio["autoroi_over_pandas"]),
                note,
            ]
        )
    out.append(table(["size", "autoroi / COPY", "autoroi / pandas", "note"], ratio_rows, right={0, 1, 2}))
    small, large = min(sizes), max(sizes)
    out.append(
        f"autoroi peak RSS {fmt_rows(large)} / {fmt_rows(small)}: {fmt_ratio(analysis['memory_ratio'])}"
        f" ({results[large][AUTOROI].peak_bytes / MIB:,.0f} MiB"
        f" / {results[small][AUTOROI].peak_bytes / MIB:,.0f} MiB)"
    )
    if incr is not None:
        out.append("")
        out.append(
            f"Incremental capture at {fmt_rows(incr['size'])} rows: change = "
            + (
                f"mutate_source (seed={incr['mutate_seed']}, batches={incr['mutate_batches']}, "
                if incr["change"] == "mutate_source"
                else "UPDATE of the rows with sale_id mod 100 = 37 (in "
            )
            + f"{incr['mutate_seconds']:.1f} s)"
        )
        mig = incr.get("migration_batch")
        if mig:
            out.append(
                f"  first batch (adds sales.delivery_date): replicated as {mig['replicate_status']}"
                f" in {mig['replicate_seconds']:.2f} s (a schema change reloads in full by design);"
                " the measured change is the next batch"
            )
        out.append(
            f"  change seen by autoroi: +{incr['inserted']:,} ~{incr['updated']:,} -{incr['deleted']:,}"
            f" = {incr['changed_rows']:,} rows ({incr['changed_fraction']:.2%}"
            f" of {fmt_rows(incr['rows_before'])});"
            f" {incr['extracted']:,} rows extracted"
        )
        out.append(
            f"  incremental {incr['incremental_seconds']:.2f} s"
            f" vs full load {incr['full_load_reference_seconds']:.2f} s"
            f" = {incr['ratio_to_full_load']:.1%}; with nothing changed: {incr['unchanged_seconds']:.2f} s"
            f" ({incr['unchanged_status']})"
        )
        if "incremental_client_cpu_s" in incr and incr.get("full_load_reference_cpu_s"):
            inc_cpu = incr["incremental_client_cpu_s"] + incr["incremental_server_cpu_s"]
            out.append(
                f"  CPU (client + PostgreSQL): incremental {incr['incremental_client_cpu_s']:.2f}"
                f" + {incr['incremental_server_cpu_s']:.2f} s, nothing changed"
                f" {incr['unchanged_client_cpu_s']:.2f} + {incr['unchanged_server_cpu_s']:.2f} s,"
                f" fastest full load {incr['full_load_reference_cpu_s']:.2f} s;"
                f" incremental / full load in CPU: {inc_cpu / incr['full_load_reference_cpu_s']:.1%}"
            )
        out.append(
            f"  deletes found by: {incr.get('incremental_deletes') or '?'}; others' cores during the"
            f" incremental run {incr.get('incremental_other_cores', 0.0):.2f},"
            f" during the nothing-changed run {incr.get('unchanged_other_cores', 0.0):.2f}"
        )
    out.append("")
    out.append("Targets")
    for t in analysis["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        vals = ", ".join(
            f"{k}: {v:.2f}x" if k != "ratio" or "incremental" not in t["target"] else f"{v:.1%}"
            for k, v in t["values"].items()
            if v is not None
        )
        out.append(f"  {verdict}  {t['target']}  [{vals or 'not measured'}]")
    out.append("")
    gen = "; ".join(
        f"{fmt_rows(s)}: {sources[s]['generate_s']:.1f} s + VACUUM {sources[s]['vacuum_s']:.1f} s"
        + (" (kept from an earlier run)" if sources[s].get("reused") else "")
        for s in sizes
    )
    out.append(f"Source generation (setup, not compared): {gen}")
    return "\n".join(out)


# =========================================================================== main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s.replace("_", "")) for s in text.split(",") if s.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"sizes must be integers separated by commas: {text!r}") from e
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="sales rows (1000000,5000000)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run at 100k and 500k rows")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender and size; the fastest counts")
    p.add_argument("--skip-pandas-at", type=parse_sizes, default=[], help="sizes without pandas.read_sql")
    p.add_argument("--seed", type=int, default=SEED, help="generate_source seed")
    p.add_argument(
        "--change",
        choices=["mutate_source", "sql"],
        default="mutate_source",
        help="the ~1%% change: autoroi.source.mutate, or a plain UPDATE of 1%% of the rows",
    )
    p.add_argument("--mutate-seed", type=int, default=SEED + 1)
    p.add_argument("--mutate-batches", type=int, default=1)
    p.add_argument("--no-incremental", action="store_true", help="skip the change-capture measurement")
    p.add_argument(
        "--keep-server",
        metavar="DIR",
        type=Path,
        help="keep the PostgreSQL cluster (and its generated databases) in DIR for the next run",
    )
    p.add_argument("--work-dir", type=Path, help="where lakes and CSV files go (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--generate-only", action="store_true", help="prepare the sources (with --keep-server) and stop"
    )
    p.add_argument(
        "--rev",
        help="measure autoroi as committed at REV (exported with git archive), or WORKTREE: a copy of"
        " the working tree taken at the start (uncommitted work, unaffected by later edits)",
    )
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    sizes = list(QUICK_SIZES) if args.quick else args.sizes
    skip_pandas = set(args.skip_pandas_at)

    snapshot = export_revision(args.rev) if args.rev else None
    how = args.change
    if how == "mutate_source" and not (Path(CODE["root"]) / "autoroi" / "source" / "mutate.py").exists():
        log("autoroi.source.mutate does not exist; using --change sql instead")
        how = "sql"
    server_dir = (
        args.keep_server.resolve() if args.keep_server else Path(tempfile.mkdtemp(prefix="autoroi-bench-pg-"))
    )
    server = PgServer(server_dir, keep=args.keep_server is not None)
    work_ctx: Any = (
        contextlib.nullcontext(str(args.work_dir))
        if args.work_dir
        else tempfile.TemporaryDirectory(prefix="autoroi-bench-")
    )
    started = datetime.now(UTC)
    try:
        log(f"starting PostgreSQL in {server_dir}")
        server.start()
        log(f"PostgreSQL {server.version} on 127.0.0.1:{server.port}")
        info = machine_info(server)
        with work_ctx as work_name:
            work = Path(work_name)
            work.mkdir(parents=True, exist_ok=True)
            sources = prepare_sources(server, sizes, args.seed)
            if args.generate_only:
                print(json.dumps({str(k): v for k, v in sources.items()}, indent=2, default=str))
                return 0
            results = full_loads(server, sizes, max(1, args.repeat), skip_pandas, work)
            incr = (
                None
                if args.no_incremental
                else incremental_capture(server, max(sizes), how, args.mutate_seed, args.mutate_batches, work)
            )
    finally:
        server.close()
        digest_after = source_digest()
        if snapshot is not None:
            snapshot.cleanup()
    info["autoroi_digest_after"] = digest_after
    if info["autoroi_digest_after"] != info["autoroi_digest"]:
        log("WARNING: autoroi's sources changed during the run; the figures mix two versions")
    analysis = analyse(results, incr, sizes)
    text = render(info, sources, results, incr, analysis, sizes, max(1, args.repeat))
    print(text)
    if args.json:
        doc = {
            "started": started.isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": info,
            "sizes": sizes,
            "repeat": max(1, args.repeat),
            "sources": {str(k): v for k, v in sources.items()},
            "full_loads": {
                str(s): {c: dataclasses.asdict(r) | {"rate": r.rate} for c, r in runs.items()}
                for s, runs in results.items()
            },
            "incremental": incr,
            "analysis": {
                "ratios": {str(k): v for k, v in analysis["ratios"].items()},
                "memory_ratio": analysis["memory_ratio"],
                "targets": analysis["targets"],
            },
            "table": text,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        log(f"results written to {args.json}")
    missed = any(t["pass"] is False for t in analysis["targets"])
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
