"""Shared fixtures: a real PostgreSQL server, a moto S3 server, markers and e2e opt-in.

Fixtures
--------
postgres_server (session)  PostgresServer: a throw-away PostgreSQL cluster on 127.0.0.1
pg_url (function)          str: SQLAlchemy URL of a fresh database on that server, dropped afterwards
s3_server (session)        str: endpoint URL (http://127.0.0.1:PORT) of a moto S3 server
s3_lake (function)         S3Lake: a fresh bucket, AWS_* env vars set for the test

Tests using postgres_server/pg_url are marked ``postgres``, tests using an ``s3_*`` fixture ``s3``.
Tests marked ``e2e`` are skipped unless pytest runs with ``--run-e2e``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# --------------------------------------------------------------------------- options and markers

POSTGRES_FIXTURES = frozenset({"postgres_server", "pg_url"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-e2e",
        action="store_true",
        default=False,
        help="run tests marked e2e (they need a Kubernetes cluster)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: markers are added before pytest's own -m deselection runs.
    run_e2e = config.getoption("--run-e2e")
    skip_e2e = pytest.mark.skip(reason="e2e test: needs a cluster, run with --run-e2e")
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & POSTGRES_FIXTURES and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)
        if any(n.startswith("s3_") for n in names) and item.get_closest_marker("s3") is None:
            item.add_marker(pytest.mark.s3)
        if not run_e2e and item.get_closest_marker("e2e") is not None:
            item.add_marker(skip_e2e)


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it loses the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    """The bin directory of the newest PostgreSQL under /usr/lib/postgresql (or on PATH)."""

    def version_key(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version_key)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL server (superuser ``user``/``password``, TCP on ``host:port``)."""

    host: str
    port: int
    user: str
    password: str
    bindir: Path
    base_dir: Path  # temp root: data/, server.log, the unix socket
    os_user: str | None  # the OS account the server runs as (None: the current user)
    version: str = ""

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL: postgresql+psycopg://user:pw@127.0.0.1:port/dbname."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string for psycopg.connect()."""
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={dbname} connect_timeout=10"
        )

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg 3 connection as the superuser (the caller closes it)."""
        import psycopg

        return psycopg.connect(self.conninfo(dbname), **kwargs)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; returns its SQLAlchemy URL."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS name, closing any connections still open to it
        and dropping its replication slots first (they would block the drop)."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE database = %s AND active_pid IS NOT NULL",
                (name,),
            )
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"<no server log: {exc}>"


def _run_as(os_user: str | None, args: list[str], cwd: Path, timeout: float = 120) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    kwargs: dict[str, Any] = {}
    if os_user is not None:
        pw = pwd.getpwnam(os_user)
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env["HOME"] = str(cwd)
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )


def _server_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, use `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _start_postgres(bindir: Path, attempts: int = 3, ready_timeout: float = 60.0) -> PostgresServer:
    os_user = _server_os_user()
    base = Path(tempfile.mkdtemp(prefix="autoroi-pg-", dir="/tmp"))
    base.chmod(0o755)  # the server user must be able to traverse it
    server = PostgresServer(
        host="127.0.0.1",
        port=0,
        user="postgres",
        password="pw-" + secrets.token_hex(8),
        bindir=bindir,
        base_dir=base,
        os_user=os_user,
    )
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(server.password + "\n")
        pwfile.chmod(0o600)
        if os_user is not None:
            pw = pwd.getpwnam(os_user)
            os.chown(base, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        _run_as(
            os_user,
            [
                str(bindir / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                server.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=base,
        )
        pwfile.unlink()
        last_error: Exception | None = None
        for _ in range(attempts):
            server.port = free_port()
            with open(server.data_dir / "postgresql.conf", "a") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {server.port}\n"
                    f"unix_socket_directories = '{server.socket_dir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                    # logical decoding: change capture reads deletes from a replication slot
                    "wal_level = logical\nmax_replication_slots = 64\nmax_wal_senders = 8\n"
                )
            try:
                _run_as(
                    os_user,
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(server.data_dir),
                        "-l",
                        str(server.log_path),
                        "-w",
                        "-t",
                        str(int(ready_timeout)),
                        "start",
                    ],
                    cwd=base,
                    timeout=ready_timeout + 30,
                )
                _wait_ready(server, ready_timeout)
                return server
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # e.g. lost the port race
                last_error = exc
                _stop_postgres(server)
        raise RuntimeError(f"PostgreSQL did not start: {last_error}\n--- server log ---\n{server.log_tail()}")
    except BaseException:
        _stop_postgres(server)
        shutil.rmtree(base, ignore_errors=True)
        raise


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with server.connect() as conn:
                row = conn.execute("SELECT version()").fetchone()
                server.version = str(row[0]) if row else ""
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready after {timeout:.0f}s: {exc}") from exc
            time.sleep(0.1)


def _stop_postgres(server: PostgresServer) -> None:
    if not (server.data_dir / "postmaster.pid").exists():
        return
    with contextlib.suppress(Exception):
        _run_as(
            server.os_user,
            [str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), "-m", "fast", "-w", "stop"],
            cwd=server.base_dir,
            timeout=60,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; skips when no server binaries are installed."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (run `make system-deps`)")
    server = _start_postgres(bindir)
    try:
        yield server
    finally:
        _stop_postgres(server)
        shutil.rmtree(server.base_dir, ignore_errors=True)


def _db_name(request: pytest.FixtureRequest) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database (dropped after the test)."""
    name = _db_name(request)
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


# --------------------------------------------------------------------------- S3 (moto server)

S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"


@dataclass
class S3Lake:
    """A fresh bucket on the moto S3 server; ``uri`` is the lake root ``s3://<bucket>/lake``."""

    bucket: str
    prefix: str
    endpoint_url: str
    client: Any  # boto3 S3 client bound to endpoint_url
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    region: str = S3_REGION

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def endpoint_host(self) -> str:
        """host:port, as pyarrow.fs.S3FileSystem(endpoint_override=..., scheme="http") wants it."""
        return self.endpoint_url.split("://", 1)[1]

    def pyarrow_fs(self) -> Any:
        from pyarrow import fs

        return fs.S3FileSystem(
            endpoint_override=self.endpoint_host,
            scheme="http",
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        """All object keys in the bucket under prefix."""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return out


def s3_client(endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL (http://127.0.0.1:PORT) of a moto S3 server running in this process."""
    from moto.server import ThreadedMotoServer

    # port=0: the OS picks a free port at bind time, so there is no race to lose.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_lake(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Lake]:
    """A fresh bucket with AWS_* credentials (and AWS_ENDPOINT_URL_S3) set for this test only."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    client = s3_client(s3_server)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    lake = S3Lake(bucket=bucket, prefix="lake", endpoint_url=s3_server, client=client)
    try:
        yield lake
    finally:
        with contextlib.suppress(Exception):
            keys = lake.list_keys()
            for i in range(0, len(keys), 1000):
                client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
                )
            client.delete_bucket(Bucket=bucket)


# --------------------------------------------------------------------------- Spark


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local Spark session for the whole run: ``local[2]``, 2 shuffle partitions,
    no UI. Code under test that calls ``autoroi.spark.spark_session`` gets this
    same session back (``getOrCreate``)."""
    from autoroi.config import SparkConfig
    from autoroi.spark import spark_session

    cfg = SparkConfig(master="local[2]", app_name="autoroi-tests")
    cfg.conf.update(
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
        }
    )
    session = spark_session(cfg)
    try:
        yield session
    finally:
        session.stop()
