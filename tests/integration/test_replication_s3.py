"""Replication into an S3 lake.

The S3 here is moto's server mode: an S3 *emulator* answering real HTTP on
127.0.0.1 (the ``s3_lake`` fixture), reached through the same
``pyarrow.fs.S3FileSystem`` calls as AWS or MinIO. It shows that the lake code
speaks S3; it says nothing about AWS's consistency or performance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from test_replication_support import (
    FAILPOINT_EXIT,
    Snapshot,
    cli_env,
    describe_diff,
    execute,
    generate,
    mutate,
    run_cli,
    snap_from_arrow,
    source_snapshot,
    sqlite_url,
)

from autoroi.config import AutoroiConfig, load_config
from autoroi.errors import LakeError
from autoroi.lake import TableManifest, TableStore, open_lake
from autoroi.replication import replicate_tables
from autoroi.source import schema

TABLES = sorted(schema.TABLE_ORDER)
SEED = 3


def _cfg(s3_lake: Any, **replication: Any) -> AutoroiConfig:
    return load_config(
        overrides={
            "lake": {"uri": s3_lake.uri, "s3_endpoint_url": s3_lake.endpoint_url},
            "replication": {"file_rows": 2_000, **replication},
        }
    )


def _manifest(s3_lake: Any, cfg: AutoroiConfig, table: str) -> TableManifest:
    manifest = TableStore(open_lake(s3_lake.uri, cfg.lake), "raw", table).manifest()
    assert manifest is not None, table
    return manifest


def _assert_s3_lake_equals(expected: Snapshot, s3_lake: Any, cfg: AutoroiConfig) -> None:
    lake = open_lake(s3_lake.uri, cfg.lake)
    problems = []
    for t in TABLES:
        seen = snap_from_arrow(t, expected[t].key, TableStore(lake, "raw", t).read())
        if diff := describe_diff(expected[t], seen):
            problems.append(diff)
    assert not problems, "\n".join(problems)


def _assert_only_referenced_objects(s3_lake: Any, cfg: AutoroiConfig) -> None:
    """Under each table prefix: the manifest and exactly the files it names."""
    lake = open_lake(s3_lake.uri, cfg.lake)
    for t in TABLES:
        prefix = f"{s3_lake.prefix}/raw/{t}/"
        # (a key ending in "/" is an empty folder marker that S3 clients create, not data)
        keys = {k.removeprefix(prefix) for k in s3_lake.list_keys(prefix) if not k.endswith("/")}
        manifest = TableStore(lake, "raw", t).manifest()
        assert manifest is not None, t
        assert "_manifest.json" in keys, t
        parquet = {k for k in keys if k.endswith(".parquet")}
        assert parquet == {f.name for f in manifest.files}, (t, sorted(parquet))
        assert keys - parquet == {"_manifest.json"}, (t, sorted(keys - parquet))
    # the writability probe was removed; besides the tables only empty folder
    # markers (keys ending in "/", which S3 clients create) and the replication
    # slot's bookkeeping (PostgreSQL sources) sit in the lake
    root = [k for k in s3_lake.list_keys(f"{s3_lake.prefix}/") if not k.endswith("/")]
    allowed = (f"{s3_lake.prefix}/raw/", f"{s3_lake.prefix}/_replication/")
    assert all(k.startswith(allowed) for k in root), sorted(root)[:5]


def _etags(s3_lake: Any) -> dict[str, str]:
    return {k: s3_lake.client.head_object(Bucket=s3_lake.bucket, Key=k)["ETag"] for k in s3_lake.list_keys()}


@pytest.mark.timeout(120)  # the bug this shows costs 30 s per file against moto
def test_a_written_file_is_complete_when_the_writer_returns(s3_lake: Any) -> None:
    """``TableWriter.write_table`` must finish the S3 upload (close the output
    stream) before it records the file: the entry's size is the object's size,
    and the object exists before anything is committed."""
    cfg = _cfg(s3_lake)
    store = TableStore(open_lake(s3_lake.uri, cfg.lake), "raw", "probe")
    writer = store.begin()
    table = pa.table({"id": pa.array(range(5_000), pa.int64()), "v": [f"row {i}" for i in range(5_000)]})
    entry = writer.write_table(table, key="id")
    key = f"{s3_lake.prefix}/raw/probe/{entry.name}"
    assert key in s3_lake.list_keys(), "the object is not there when write_table returns"
    size = s3_lake.client.head_object(Bucket=s3_lake.bucket, Key=key)["ContentLength"]
    assert entry.bytes == size > 0
    writer.commit(table.schema)
    assert store.read().equals(table)


@pytest.mark.timeout(180)
def test_replicate_mutate_replicate_into_s3(s3_lake: Any, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=SEED, sales_rows=5_000)
    cfg = _cfg(s3_lake, lookback_seconds=0)

    report = replicate_tables(cfg, source_url=url)  # lake URI from the config
    assert report.ok, [(t.table, t.message) for t in report.failed]
    assert {t.status for t in report.tables} == {"full_load"}
    _assert_s3_lake_equals(source_snapshot(url), s3_lake, cfg)
    _assert_only_referenced_objects(s3_lake, cfg)
    assert len(_manifest(s3_lake, cfg, "sales").files) >= 3

    for _ in range(2):  # the first batch adds a column (full reload), the second is incremental
        mutate(url, seed=SEED)
        report = replicate_tables(cfg, source_url=url, lake_uri=s3_lake.uri)
        assert report.ok, [(t.table, t.message) for t in report.failed]
        expected = source_snapshot(url)
        _assert_s3_lake_equals(expected, s3_lake, cfg)
        _assert_only_referenced_objects(s3_lake, cfg)
    by = {t.table: t for t in report.tables}
    assert by["sales"].status == "incremental"
    assert by["sales"].deleted > 0 and by["sales"].updated > 0 and by["sales"].inserted > 0

    # unchanged source: nothing is written
    before = {
        k: s3_lake.client.head_object(Bucket=s3_lake.bucket, Key=k)["ETag"] for k in s3_lake.list_keys()
    }
    report = replicate_tables(cfg, source_url=url, lake_uri=s3_lake.uri)
    assert {t.status for t in report.tables} == {"unchanged"}
    after = {k: s3_lake.client.head_object(Bucket=s3_lake.bucket, Key=k)["ETag"] for k in s3_lake.list_keys()}
    assert after == before


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("point", "flags"),
    [("extract.batch:sales@2", ["--full-refresh"]), ("publish.before_swap:sales", [])],
    ids=["mid-table", "before-manifest-switch"],
)
def test_a_crash_leaves_the_previous_version_and_the_next_run_cleans_up(
    s3_lake: Any, tmp_path: Path, point: str, flags: list[str]
) -> None:
    """On S3 the manifest is the commit point: a run killed after writing new
    objects (mid-table, or just before the manifest switch) leaves readers on
    the previous version; the next run publishes and removes the orphans."""
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=SEED, sales_rows=5_000)
    mutate(url, seed=SEED)
    cfg = _cfg(s3_lake)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {"lake": {"s3_endpoint_url": s3_lake.endpoint_url}, "replication": {"file_rows": 2_000}}
        )
    )
    args = ("replicate", "--config", str(cfg_file), "--source-url", url, "--lake", s3_lake.uri)
    assert run_cli(*args).returncode == 0
    s0 = source_snapshot(url)
    v0 = _manifest(s3_lake, cfg, "sales").version
    # an update of every sale rewrites every file: a full load's worth of new objects
    execute(url, "UPDATE sales SET apr = 1.5, updated_at = '2031-01-01 00:00:00.000000'")
    s1 = source_snapshot(url)

    proc = run_cli(*args, *flags, env=cli_env(AUTOROI_FAILPOINT=point))
    assert proc.returncode == FAILPOINT_EXIT, proc.stderr[-2000:]
    assert _manifest(s3_lake, cfg, "sales").version == v0
    _assert_s3_lake_equals(s0, s3_lake, cfg)
    orphans = [k for k in s3_lake.list_keys(f"{s3_lake.prefix}/raw/sales/") if k.endswith(".parquet")]
    assert len(orphans) > len(_manifest(s3_lake, cfg, "sales").files)

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_s3_lake_equals(s1, s3_lake, cfg)
    _assert_only_referenced_objects(s3_lake, cfg)


def test_missing_bucket_is_a_lake_error_naming_it(s3_lake: Any, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=SEED, sales_rows=3_000)
    cfg = _cfg(s3_lake)
    missing = f"{s3_lake.bucket}-missing"
    with pytest.raises(LakeError, match=missing):
        open_lake(f"s3://{missing}/lake", cfg.lake)
    with pytest.raises(LakeError, match=missing):
        replicate_tables(cfg, source_url=url, lake_uri=f"s3://{missing}/lake")
    assert s3_lake.list_keys() == []
