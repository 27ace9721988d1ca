"""Crashes during replication never leave a half-written table.

``autoroi replicate`` runs as a child process; a fail point
(``AUTOROI_FAILPOINT=<point>[:<table>][@<n>]``, exit code 86, no clean-up, like a
killed pod) or a SIGKILL stops it. Afterwards every table a reader can see in
``<lake>/raw`` is either absent or exactly the table as the source held it at
some moment (a complete earlier version); a run without the fail point then
brings the lake level with the source, without duplicate keys.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_replication_s3 import _assert_only_referenced_objects, _assert_s3_lake_equals, _cfg
from test_replication_support import (
    FAILPOINT_EXIT,
    REPO,
    Snapshot,
    assert_lake_equals,
    cli_cmd,
    cli_env,
    config,
    generate,
    lake_table,
    manifest_versions,
    matches,
    mutate,
    run_cli,
    snap_from_arrow,
    source_snapshot,
    sqlite_url,
    write_config,
)

from autoroi.lake import TableStore, open_lake
from autoroi.lake.leftovers import is_temporary
from autoroi.replication import replicate_tables
from autoroi.source import schema
from tests.leftovers_support import temporaries, version_numbers

TABLES = sorted(schema.TABLE_ORDER)
SEED = 5


def _replicate_cli(
    source_url: str, lake: Path, cfg_file: Path, failpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = cli_env(**({"AUTOROI_FAILPOINT": failpoint} if failpoint else {}))
    return run_cli(
        "replicate", "--config", str(cfg_file), "--source-url", source_url, "--lake", str(lake), env=env
    )


def visible_versions(lake: Path, snapshots: list[Snapshot]) -> dict[str, int | None]:
    """For each table: None when a reader finds no table, else the index of the
    source snapshot it equals. Fails when a reader sees anything else (a
    partial table, mixed versions, duplicates, a dangling link)."""
    raw = lake / "raw"
    if raw.exists():
        strays = [p.name for p in raw.iterdir() if p.name not in TABLES and not p.name.startswith(("_", "."))]
        assert not strays, f"unexpected entries a reader would take for tables: {strays}"
    out: dict[str, int | None] = {}
    for t in TABLES:
        path = raw / t
        if not os.path.lexists(path):
            out[t] = None
            continue
        assert path.exists(), f"{path} is a dangling link"
        seen = snap_from_arrow(t, snapshots[0][t].key, lake_table(lake, t))
        hits = [i for i, snap in enumerate(snapshots) if matches(snap[t], seen)]
        assert hits, f"{t}: the visible table ({len(seen.rows)} rows) equals no source snapshot"
        out[t] = hits[-1]
    return out


def assert_no_leftovers(lake: Path) -> None:
    """After a successful run, nothing staged by the crashed run is left: no
    temporary anywhere (swap links, ``*.tmp``, staging folders), no version
    newer than the published one, no stray file in the published one."""
    lake_obj = open_lake(str(lake))
    for t in TABLES:
        manifest = TableStore(lake_obj, "raw", t).manifest()
        assert manifest is not None, t
        vdir = lake / "raw" / "_versions" / t
        numbers = version_numbers(vdir)
        assert all(n <= manifest.version for n in numbers), (t, numbers)
        current = Path(os.path.realpath(lake / "raw" / t))
        assert current.parent == vdir.resolve(), (t, current)
        on_disk = sorted(p.name for p in current.iterdir() if p.suffix == ".parquet")
        assert on_disk == sorted(f.name for f in manifest.files), t
    assert temporaries(lake) == []


def test_crash_mid_table_during_first_full_load(source_url: str, tmp_path: Path) -> None:
    generate(source_url, seed=SEED, sales_rows=6_000)
    s0 = source_snapshot(source_url)
    lake = tmp_path / "lake"
    cfg_file = write_config(tmp_path / "cfg.yaml", file_rows=2_000)

    proc = _replicate_cli(source_url, lake, cfg_file, "extract.batch:sales@2")
    assert proc.returncode == FAILPOINT_EXIT, proc.stderr[-2000:]
    seen = visible_versions(lake, [s0])
    # tables are replicated in name order: those before sales are complete, sales is not there at all
    assert seen == {t: (0 if t < "sales" else None) for t in TABLES}
    # the two files written for sales are staged, not published
    assert TableStore(open_lake(str(lake)), "raw", "sales").manifest() is None

    proc = _replicate_cli(source_url, lake, cfg_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_lake_equals(s0, lake)
    assert_no_leftovers(lake)


@pytest.mark.parametrize("point", ["publish.before_swap", "publish.after_swap"])
def test_crash_around_the_publish_of_an_incremental_run(tmp_path: Path, point: str) -> None:
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=SEED, sales_rows=5_000)
    mutate(url, seed=SEED)  # the column migration is behind us: the next sales run is incremental
    lake = tmp_path / "lake"
    cfg_file = write_config(tmp_path / "cfg.yaml", file_rows=2_000)
    assert _replicate_cli(url, lake, cfg_file).returncode == 0
    s0 = source_snapshot(url)
    lake_obj = open_lake(str(lake))
    v0 = manifest_versions(str(lake), TABLES)
    mutate(url, seed=SEED)
    s1 = source_snapshot(url)
    assert not matches(s0["sales"], s1["sales"])

    proc = _replicate_cli(url, lake, cfg_file, f"{point}:sales")
    assert proc.returncode == FAILPOINT_EXIT, proc.stderr[-2000:]
    seen = visible_versions(lake, [s0, s1])
    sales_manifest = TableStore(lake_obj, "raw", "sales").manifest()
    assert sales_manifest is not None
    if point == "publish.before_swap":
        assert seen["sales"] == 0, "a crash before the swap must leave the previous version"
        assert sales_manifest.version == v0["sales"]
    else:
        assert seen["sales"] == 1, "after the swap the new version is the table"
        assert sales_manifest.version == v0["sales"] + 1
    for t in TABLES:
        if t < "sales":
            assert seen[t] == 1, t  # done before the crash
        elif t > "sales":
            assert matches(s0[t], s1[t]) or seen[t] == 0, t

    report = replicate_tables(
        config(file_rows=2_000), source_url=url, lake_uri=str(lake)
    )  # the same code the CLI runs
    assert report.ok, [(t.table, t.message) for t in report.failed]
    sales = next(t for t in report.tables if t.table == "sales")
    assert sales.status == ("incremental" if point == "publish.before_swap" else "unchanged"), sales
    assert_lake_equals(s1, lake)
    assert_no_leftovers(lake)


def _start(url: str, lake: Path, cfg_file: Path, *flags: str) -> tuple[subprocess.Popen[str], float]:
    """Start ``autoroi replicate`` and return once its log shows that the work
    has begun (imports and connecting are behind it), with the time it did."""
    proc = subprocess.Popen(
        cli_cmd("replicate", "--config", str(cfg_file), "--source-url", url, "--lake", str(lake), *flags),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "autoroi.replication" in line:
            break
    return proc, time.monotonic()


def test_sigkill_at_random_moments_never_exposes_a_partial_table(tmp_path: Path) -> None:
    """Kill the process at seeded random moments of a larger load, then of full
    refreshes with source changes in between (so that every table is being
    rewritten while the process dies); then finish the job."""
    rng = random.Random(20240611)
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=SEED, sales_rows=20_000)
    cfg_file = write_config(tmp_path / "cfg.yaml", file_rows=1_000, batch_rows=1_000)

    # how long the work takes once it has begun: a complete run into a scratch lake
    proc, begun = _start(url, tmp_path / "scratch", cfg_file)
    assert proc.stderr is not None
    last = begun
    for line in proc.stderr:
        if "autoroi.replication" in line:
            last = time.monotonic()
    assert proc.wait(timeout=120) == 0
    work_s = last - begun
    assert work_s > 0.05, work_s

    lake = tmp_path / "lake"
    snapshots = [source_snapshot(url)]
    outcomes = []
    prev: dict[str, int | None] = dict.fromkeys(TABLES)
    for attempt in range(5):
        if attempt in (2, 4):
            mutate(url, seed=SEED)
            snapshots.append(source_snapshot(url))
        flags = ("--full-refresh",) if attempt else ()
        proc, begun = _start(url, lake, cfg_file, *flags)
        try:
            time.sleep(max(0.0, begun + rng.uniform(0.0, work_s) - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
        finally:
            _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
        seen = visible_versions(lake, snapshots)
        outcomes.append((proc.returncode, seen))
        # a published table never disappears nor goes back to an older snapshot
        for t, idx in seen.items():
            before = prev[t]
            if before is not None:
                assert idx is not None and idx >= before, (attempt, t, before, idx)
        prev = seen
    killed = [o for o in outcomes if o[0] == -signal.SIGKILL]
    assert len(killed) >= 3, f"too few runs were killed mid-way, the timing assumption broke: {outcomes}"

    done = run_cli("replicate", "--config", str(cfg_file), "--source-url", url, "--lake", str(lake))
    assert done.returncode == 0, done.stderr[-2000:]
    assert_lake_equals(snapshots[-1], lake)
    assert_no_leftovers(lake)


# every window of a publish, in the order a run reaches them (``--full-refresh`` rewrites
# every table, so each run reaches each point of sales)
LOCAL_WINDOWS = [
    "extract.batch:sales@2",  # a staged version folder with data, no manifest
    "json.before_replace:_manifest.json",  # the first table's manifest still under its temporary name
    "publish.before_swap:sales",  # a complete staged version nothing points to
    "publish.after_link:sales",  # the temporary swap link made, the table link not yet replaced
    "publish.after_swap:sales",  # published; older versions not yet collected
]
S3_WINDOWS = ["extract.batch:sales@2", "publish.before_swap:sales", "publish.after_swap:sales"]


def _assert_left_behind(lake: Path, point: str) -> None:
    """The kill did leave what its window predicts, for the clean run to find."""
    manifest = TableStore(open_lake(str(lake)), "raw", "sales").manifest()
    assert manifest is not None
    numbers = version_numbers(lake / "raw" / "_versions" / "sales")
    left = temporaries(lake)
    if point.startswith(("extract.batch", "publish.before_swap")):
        assert max(numbers) > manifest.version, (point, numbers, manifest.version)
    elif point.startswith("json.before_replace"):
        assert any(p.endswith(".tmp") and "_manifest.json" in p for p in left), (point, left)
    elif point.startswith("publish.after_link"):
        assert any(p.startswith("raw/.sales.") and p.endswith(".swap") for p in left), (point, left)
    else:  # after the swap, before the old versions are collected
        assert len(numbers) > 2, (point, numbers)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("lake_kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_kill_in_each_window_then_a_clean_run_leaves_no_leftover(
    source_url: str, lake_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A fail point kills ``autoroi replicate`` on purpose in each window of a
    publish (the source changed before each); the clean run after it brings the
    lake level with the source and leaves nothing of the killed run behind."""
    generate(source_url, seed=SEED, sales_rows=3_000)
    if lake_kind == "s3":
        s3_lake = request.getfixturevalue("s3_lake")
        cfg = _cfg(s3_lake, file_rows=1_000, batch_rows=1_000)
        lake_uri = s3_lake.uri
        cfg_file = tmp_path / "cfg.yaml"
        cfg_file.write_text(
            f"lake: {{s3_endpoint_url: '{s3_lake.endpoint_url}'}}\n"
            "replication: {file_rows: 1000, batch_rows: 1000}\n"
        )
        windows = S3_WINDOWS
    else:
        lake = tmp_path / "lake"
        lake_uri = str(lake)
        cfg_file = write_config(tmp_path / "cfg.yaml", file_rows=1_000, batch_rows=1_000)
        windows = LOCAL_WINDOWS
    args = ("replicate", "--config", str(cfg_file), "--source-url", source_url, "--lake", lake_uri)
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-2000:]

    for point in windows:
        mutate(source_url, seed=SEED)
        killed = run_cli(*args, "--full-refresh", env=cli_env(AUTOROI_FAILPOINT=point))
        assert killed.returncode == FAILPOINT_EXIT, (point, killed.stderr[-2000:])
        if lake_kind == "local":
            _assert_left_behind(lake, point)
        done = run_cli(*args)
        assert done.returncode == 0, (point, done.stderr[-2000:])
        expected = source_snapshot(source_url)
        if lake_kind == "s3":
            _assert_s3_lake_equals(expected, s3_lake, cfg)
            _assert_only_referenced_objects(s3_lake, cfg)
            strays = [
                k for k in s3_lake.list_keys(f"{s3_lake.prefix}/") if is_temporary(k.rsplit("/", 1)[-1])
            ]
            assert strays == [], (point, strays)
        else:
            assert_lake_equals(expected, lake)
            assert_no_leftovers(lake)
