"""Master versions: content-addressed, published atomically, ``latest`` moved
only on change and only after the version is complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from autoroi.config import LakeConfig
from autoroi.lake.failpoints import EXIT_CODE
from autoroi.lake.leftovers import is_temporary
from autoroi.lake.master import MasterStore, content_version
from autoroi.lake.storage import open_lake
from tests.leftovers_support import temporaries
from tests.master_tables import master_table


def test_content_version_depends_on_values_not_on_chunking():
    t = master_table()
    rechunked = pa.concat_tables([t.slice(0, 5), t.slice(5)])
    assert content_version(t) == content_version(rechunked)
    changed = master_table(units=11)
    assert content_version(changed) != content_version(t)
    assert content_version(t.drop_columns(["incentive_depth"])) != content_version(t)


def test_publish_is_idempotent_and_moves_latest_only_on_change(tmp_path: Path):
    store = MasterStore(open_lake(str(tmp_path / "lake")))
    assert store.latest() is None

    first = store.publish(master_table(), {"k": 5})
    assert first.changed and first.previous is None
    assert store.latest()["version"] == first.version
    manifest = store.manifest(first.version)
    assert manifest["rows"] == 24 and manifest["k"] == 5 and manifest["version"] == first.version
    assert {f["name"] for f in manifest["schema"]} >= {"week_start", "units", "dealer_count"}
    # a plain Parquet reader gets exactly the table from the data folder
    data = pads.dataset(str(tmp_path / "lake" / "master" / first.version / "data"), format="parquet")
    assert data.count_rows() == 24
    order = [("region", "ascending"), ("week_start", "ascending")]
    assert store.read().sort_by(order).equals(master_table().sort_by(order))

    pointer_before = (tmp_path / "lake" / "master" / "latest").read_text()
    again = store.publish(master_table(), {"k": 5})
    assert (again.version, again.changed) == (first.version, False)
    assert (tmp_path / "lake" / "master" / "latest").read_text() == pointer_before

    second = store.publish(master_table(units=12), {"k": 5})
    assert second.changed and second.previous == first.version
    assert store.latest()["version"] == second.version
    assert [m["version"] for m in store.versions()] == [first.version, second.version]

    # going back to earlier data reuses that version and moves latest back
    back = store.publish(master_table(), {"k": 5})
    assert (back.version, back.changed, back.previous) == (first.version, True, second.version)


def test_files_are_split_by_year(tmp_path: Path):
    store = MasterStore(open_lake(str(tmp_path / "lake")))
    result = store.publish(master_table(weeks=60), {})
    names = sorted(p.name for p in (tmp_path / "lake" / "master" / result.version / "data").iterdir())
    assert names == ["part-2025.parquet", "part-2026.parquet"]


_CRASH = """
import sys
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
sys.path.insert(0, {root!r})
from tests.master_tables import master_table
from autoroi.config import LakeConfig
lake = open_lake({lake!r}, LakeConfig(s3_endpoint_url={endpoint!r}))
MasterStore(lake).publish(master_table(units={units}), {{}})
"""


@pytest.mark.parametrize(
    "point", ["master.before_manifest", "json.before_replace:latest", "master.before_latest"]
)
def test_crash_during_publish_leaves_latest_on_the_old_version(tmp_path: Path, point: str):
    lake = str(tmp_path / "lake")
    store = MasterStore(open_lake(lake))
    old = store.publish(master_table(), {})
    code = _CRASH.format(root=str(Path(__file__).parents[2]), lake=lake, units=50, endpoint=None)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"AUTOROI_FAILPOINT": point, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == EXIT_CODE, proc.stderr[-2000:]
    assert store.latest()["version"] == old.version
    assert store.read().num_rows == 24
    if point == "master.before_manifest":  # the half-built version is not a version
        assert [m["version"] for m in store.versions()] == [old.version]

    # the re-run completes the publish and cleans what the crash left
    done = store.publish(master_table(units=50), {})
    assert done.changed and store.latest()["version"] == done.version
    assert temporaries(tmp_path / "lake") == []
    assert json.loads((tmp_path / "lake" / "master" / "latest").read_text())["version"] == done.version


@pytest.mark.s3
def test_publish_on_s3_emulator(s3_lake):
    cfg = LakeConfig(s3_endpoint_url=s3_lake.endpoint_url)
    store = MasterStore(open_lake(s3_lake.uri, cfg))
    first = store.publish(master_table(), {"k": 5})
    assert store.latest()["version"] == first.version
    assert store.read().num_rows == 24
    assert not store.publish(master_table(), {"k": 5}).changed
    keys = s3_lake.list_keys()
    assert any(k.endswith(f"master/{first.version}/manifest.json") for k in keys)
    assert any(k.endswith("master/latest") for k in keys)


@pytest.mark.s3
def test_a_crash_before_the_manifest_on_s3_is_cleaned_by_the_next_publish(s3_lake):
    cfg = LakeConfig(s3_endpoint_url=s3_lake.endpoint_url)
    store = MasterStore(open_lake(s3_lake.uri, cfg))
    old = store.publish(master_table(), {})
    code = _CRASH.format(
        root=str(Path(__file__).parents[2]), lake=s3_lake.uri, units=50, endpoint=s3_lake.endpoint_url
    )
    env = {**os.environ, "AUTOROI_FAILPOINT": "master.before_manifest"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == EXIT_CODE, proc.stderr[-2000:]
    names = {k.split("/")[2] for k in s3_lake.list_keys("lake/master/") if not k.endswith("/")}
    assert len(names - {old.version, "latest"}) == 1  # the unfinished version: data and its writer's marker
    assert [m["version"] for m in store.versions()] == [old.version]

    done = store.publish(master_table(units=60), {})  # other data: the crashed prefix is not rewritten
    keys = [k for k in s3_lake.list_keys("lake/master/") if not k.endswith("/")]
    assert {k.split("/")[2] for k in keys} == {old.version, done.version, "latest"}, sorted(keys)
    assert not [k for k in keys if is_temporary(k.rsplit("/", 1)[-1])]
