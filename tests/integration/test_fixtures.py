"""The shared fixtures are real services: a PostgreSQL server over TCP and an S3 emulator over HTTP."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import sqlalchemy as sa

# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_answers_over_tcp(postgres_server: Any) -> None:
    with postgres_server.connect() as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        addr = conn.execute("SELECT inet_server_addr()::text, inet_server_port()").fetchone()
    assert version.startswith("PostgreSQL ")
    assert addr == ("127.0.0.1/32", postgres_server.port)  # TCP, not the unix socket
    assert postgres_server.url("x") == (
        f"postgresql+psycopg://{postgres_server.user}:{postgres_server.password}"
        f"@127.0.0.1:{postgres_server.port}/x"
    )


def test_postgres_wrong_password_is_refused(postgres_server: Any) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user=postgres_server.user,
            password="not-the-password",
            dbname="postgres",
            connect_timeout=10,
        )
    engine = sa.create_engine(postgres_server.url().replace(postgres_server.password, "wrong"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            engine.connect()
    finally:
        engine.dispose()


def test_postgres_server_runs_as_non_root(postgres_server: Any) -> None:
    with postgres_server.connect() as conn:
        data_dir = Path(conn.execute("SELECT current_setting('data_directory')").fetchone()[0])
        backend_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        # while the connection is open: its backend process exits when it closes
        for pid in (postmaster_pid, backend_pid):
            assert psutil.Process(pid).uids().effective != 0
    assert data_dir == postgres_server.data_dir
    assert data_dir.stat().st_uid != 0
    if os.geteuid() == 0:
        assert postgres_server.os_user in ("postgres", "nobody")


def test_pg_url_is_a_fresh_database(
    pg_url: str, postgres_server: Any, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("postgres") is not None  # auto-marked
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == pg_url.rsplit("/", 1)[1]
            n_tables = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar()
            assert n_tables == 0
            conn.execute(sa.text("CREATE TABLE t (id int primary key, name text)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 'a'), (2, 'b')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 2
    finally:
        engine.dispose()


def test_create_and_drop_database(postgres_server: Any) -> None:
    url = postgres_server.create_database("fixture_probe_db")
    assert url == postgres_server.url("fixture_probe_db")
    lingering = postgres_server.connect("fixture_probe_db")  # left open: the drop must still succeed
    try:
        assert lingering.execute("SELECT 1").fetchone() == (1,)
        postgres_server.drop_database("fixture_probe_db")
    finally:
        lingering.close()
    with postgres_server.connect() as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = 'fixture_probe_db'").fetchone()
    assert exists is None


# --------------------------------------------------------------------------- S3 (moto server)


def test_s3_put_get_over_http(s3_lake: Any, request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("s3") is not None  # auto-marked
    assert s3_lake.uri == f"s3://{s3_lake.bucket}/lake"
    assert s3_lake.endpoint_url.startswith("http://127.0.0.1:")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"

    key = "lake/raw/hello.txt"
    s3_lake.client.put_object(Bucket=s3_lake.bucket, Key=key, Body=b"hello lake")
    assert s3_lake.client.get_object(Bucket=s3_lake.bucket, Key=key)["Body"].read() == b"hello lake"

    # Plain HTTP with no AWS library on the wire: it is a real server on a socket.
    get_url = s3_lake.client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_lake.bucket, "Key": key}, ExpiresIn=300
    )
    assert get_url.startswith(s3_lake.endpoint_url)
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == b"hello lake"
    put_url = s3_lake.client.generate_presigned_url(
        "put_object",
        Params={"Bucket": s3_lake.bucket, "Key": "lake/raw/via-urllib.txt", "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    put = urllib.request.Request(
        put_url, data=b"raw http", method="PUT", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 200
    body = s3_lake.client.get_object(Bucket=s3_lake.bucket, Key="lake/raw/via-urllib.txt")["Body"].read()
    assert body == b"raw http"
    assert s3_lake.list_keys("lake/") == ["lake/raw/hello.txt", "lake/raw/via-urllib.txt"]


def test_s3_pyarrow_filesystem_roundtrip(s3_lake: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    s3fs = fs.S3FileSystem(
        endpoint_override=s3_lake.endpoint_url.removeprefix("http://"),
        scheme="http",
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )
    path = f"{s3_lake.bucket}/lake/raw/t/part-0.parquet"
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    pq.write_table(table, path, filesystem=s3fs)
    assert pq.read_table(path, filesystem=s3fs).equals(table)
    assert "lake/raw/t/part-0.parquet" in s3_lake.list_keys()

    with s3_lake.pyarrow_fs().open_output_stream(f"{s3_lake.bucket}/lake/x.txt") as out:
        out.write(b"xyz")
    with s3fs.open_input_stream(f"{s3_lake.bucket}/lake/x.txt") as inp:
        assert inp.read() == b"xyz"


def test_s3_lakes_are_isolated(s3_lake: Any, s3_server: str) -> None:
    # Each test gets its own bucket, and the previous tests' buckets were removed.
    assert s3_lake.list_keys() == []
    buckets = [b["Name"] for b in s3_lake.client.list_buckets()["Buckets"]]
    assert buckets == [s3_lake.bucket]
    assert s3_lake.endpoint_url == s3_server
