"""The model registry: layout, version names, validated status transitions,
atomic publish (crash-tested), digests; on a local lake and on moto's S3."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autoroi.config import LakeConfig
from autoroi.errors import RegistryError, StatusTransitionError
from autoroi.lake.failpoints import EXIT_CODE
from autoroi.lake.leftovers import is_temporary
from autoroi.lake.storage import Lake, open_lake
from autoroi.registry import (
    STATUSES,
    TRANSITIONS,
    fetch_artifact,
    get_version,
    list_versions,
    new_version,
    production_version,
    read_evaluation,
    register_model,
    set_status,
    tree_digest,
    verify_digest,
)
from autoroi.registry import store as registry_store
from tests.leftovers_support import dead_writer_id, live_writer, temporaries

ROOT = Path(__file__).parents[2]
T0 = dt.datetime(2026, 3, 2, 9, 30, 15, tzinfo=dt.UTC)


def make_artifact(folder: Path, salt: str = "") -> Path:
    """A stand-in for save_model's folder: the registry never opens the files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"PK\x03\x04 keras zip " + salt.encode() + os.urandom(64))
    (folder / "preprocessing.json").write_text(json.dumps({"format_version": 1, "salt": salt}))
    (folder / "context.parquet").write_bytes(b"PAR1" + os.urandom(128) + b"PAR1")
    return folder


def metadata(passed: bool = True, **extra: Any) -> dict[str, Any]:
    gate = {
        "passed": passed,
        "reasons": [] if passed else ["beats_seasonal_naive: WAPE 0.4100 >= seasonal_naive 0.3900"],
        "checks": [{"name": "beats_seasonal_naive", "passed": passed, "detail": "..."}],
    }
    return {
        "master_version": "0123456789abcdef",
        "code_version": "0.1.0+test",
        "hyperparameters": {"layers": 2, "units": 64, "learning_rate": 0.003},
        "metrics": {"wape": 0.31, "mae": 2.5, "rmse": 3.9, "roi_mae": 0.42, "roi_spearman": 0.71},
        "gate": gate,
        **extra,
    }


def register(lake: Lake, tmp: Path, *, passed: bool = True, salt: str = "a", **kw: Any) -> Any:
    art = make_artifact(tmp / f"artifact-{salt}", salt)
    status = "pending_approval" if passed else "rejected_by_gate"
    return register_model(
        lake,
        art,
        metadata(passed),
        {"metrics": {"candidate": {"wape": 0.31}}},
        "<html>r</html>",
        status,
        **kw,
    )


def force_status(lake: Lake, version: str, status: str) -> None:
    """Put a version into any status (to test every transition from it)."""
    path = f"{get_version(lake, version).path}/metadata.json"
    doc = lake.read_json(path)
    assert doc is not None
    doc["status"] = status
    lake.write_json(path, doc)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return open_lake(str(tmp_path / "lake"))


# --------------------------------------------------------------------------- publish and layout


def test_register_writes_the_layout_and_metadata(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path, now=T0, by="kfp run 42")
    assert re.fullmatch(r"v20260302-093015-[0-9a-f]{8}", mv.version)
    folder = tmp_path / "lake" / "models" / "roi" / mv.version
    assert sorted(p.name for p in folder.iterdir()) == [
        "evaluation.json",
        "metadata.json",
        "model",
        "report.html",
    ]
    assert sorted(p.name for p in (folder / "model").iterdir()) == [
        "context.parquet",
        "model.keras",
        "preprocessing.json",
    ]
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == mv.version and meta["status"] == "pending_approval"
    assert meta["master_version"] == "0123456789abcdef" and meta["code_version"] == "0.1.0+test"
    assert meta["hyperparameters"]["units"] == 64 and meta["metrics"]["wape"] == 0.31
    assert meta["gate"]["passed"] is True
    assert meta["created_at"].startswith("2026-03-02T09:30:15")
    assert meta["digest"] == tree_digest(lake.fs, str(folder / "model"))
    assert meta["digest"][:8] == mv.version[-8:] and meta["digest_algorithm"] == "sha256"
    assert meta["status_history"] == [
        {
            "status": "pending_approval",
            "from": None,
            "by": "kfp run 42",
            "at": meta["created_at"],
            "reason": "validation gates passed",
            "override": False,
        }
    ]
    assert (folder / "report.html").read_text() == "<html>r</html>"
    assert read_evaluation(lake, mv.version) == {"metrics": {"candidate": {"wape": 0.31}}}
    assert mv.report_location == str(folder / "report.html")
    assert [v.version for v in list_versions(lake)] == [mv.version]
    assert get_version(lake, mv.version).metadata == meta
    assert not list((tmp_path / "lake" / "models" / "roi").glob(".staging-*"))


def test_version_names_sort_chronologically_and_are_unique():
    d = "0123456789abcdef" * 4
    names = [new_version(d, T0 + dt.timedelta(seconds=s)) for s in (0, 1, 59, 3600, 86400 * 40)]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert new_version(d, T0) != new_version("f" * 64, T0)  # same second, another artifact
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", new_version(d, T0))  # a Kubernetes label value
    with pytest.raises(ValueError):
        new_version("not-hex", T0)


def test_list_is_oldest_first_and_nan_metrics_become_null(lake: Lake, tmp_path: Path):
    a = register(lake, tmp_path, salt="a", now=T0 + dt.timedelta(days=1))
    b = register(lake, tmp_path, salt="b", now=T0)
    assert [v.version for v in list_versions(lake)] == [b.version, a.version]
    art = make_artifact(tmp_path / "nan", "nan")
    meta = metadata(metrics={"wape": float("nan"), "roi_mae": float("inf"), "mae": 1.0})
    mv = register_model(lake, art, meta, {"x": float("nan")}, "<html></html>", "pending_approval")
    raw = (tmp_path / "lake" / "models" / "roi" / mv.version / "metadata.json").read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert mv.metrics == {"wape": None, "roi_mae": None, "mae": 1.0}
    assert read_evaluation(lake, mv.version) == {"x": None}


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({}, "approved", "registered as pending_approval or rejected_by_gate"),
        ({}, "rejected_by_gate", "contradicts the gate decision"),
        ({"gate": {"reasons": []}}, "pending_approval", "boolean 'passed'"),
        ({"drop": "master_version"}, "pending_approval", "lacks master_version"),
        ({"status": "deployed"}, "pending_approval", "set by the registry"),
        ({"digest": "abc"}, "pending_approval", "set by the registry"),
    ],
)
def test_register_refuses_bad_input(lake: Lake, tmp_path: Path, change: dict, status: str, message: str):
    meta = metadata()
    if "drop" in change:
        meta.pop(change.pop("drop"))
    meta.update(change)
    art = make_artifact(tmp_path / "art")
    with pytest.raises(RegistryError, match=message):
        register_model(lake, art, meta, {}, "", status)
    assert list_versions(lake) == []


def test_register_refuses_what_is_not_an_artifact(lake: Lake, tmp_path: Path):
    with pytest.raises(RegistryError, match="does not exist"):
        register_model(lake, tmp_path / "nowhere", metadata(), {}, "", "pending_approval")
    art = make_artifact(tmp_path / "art")
    (art / "context.parquet").unlink()
    with pytest.raises(RegistryError, match="missing context.parquet"):
        register_model(lake, art, metadata(), {}, "", "pending_approval")
    art = make_artifact(tmp_path / "art2")
    (art / "assets").mkdir()
    with pytest.raises(RegistryError, match="subfolders"):
        register_model(lake, art, metadata(), {}, "", "pending_approval")


def test_register_refuses_an_existing_version_and_bad_names(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path, now=T0)
    with pytest.raises(RegistryError, match="exists already"):
        register(lake, tmp_path, now=T0, version=mv.version)
    for bad in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(RegistryError, match="invalid model version name"):
            register(lake, tmp_path, version=bad)
        with pytest.raises(RegistryError, match="invalid model version name"):
            get_version(lake, bad)
    with pytest.raises(RegistryError, match="does not exist"):
        get_version(lake, "v20990101-000000-deadbeef")


# --------------------------------------------------------------------------- transitions


def test_every_transition_follows_the_table(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    checked = 0
    for current in STATUSES:
        for requested in STATUSES:
            if requested == current:
                continue
            force_status(lake, mv.version, current)
            allowed = requested in TRANSITIONS[current]
            if allowed:
                done = set_status(lake, mv.version, requested, "ana", "because", override=True)
                assert done.status == requested
            else:
                with pytest.raises(StatusTransitionError) as err:
                    set_status(lake, mv.version, requested, "ana", "because", override=True)
                text = str(err.value)
                assert mv.version in text and current in text and requested in text, text
                assert (err.value.version, err.value.current, err.value.requested) == (
                    mv.version,
                    current,
                    requested,
                )
                assert get_version(lake, mv.version).status == current
            checked += 1
    assert checked == 30


def test_no_deploying_a_rejected_version(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    set_status(lake, mv.version, "rejected", "ana", "the ROI plot looks wrong")
    for target in ("deployed", "approved", "pending_approval"):
        with pytest.raises(StatusTransitionError, match=f"{mv.version}: cannot change status from rejected"):
            set_status(lake, mv.version, target, "ana", "please", override=True)


def test_gate_rejected_version_needs_an_override_with_a_reason(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path, passed=False)
    assert mv.status == "rejected_by_gate" and mv.gate_passed is False
    assert "beats_seasonal_naive" in mv.history[0]["reason"]
    with pytest.raises(StatusTransitionError, match="needs an explicit override"):
        set_status(lake, mv.version, "approved", "ana", "looks fine")
    with pytest.raises(StatusTransitionError, match="an override needs a reason"):
        set_status(lake, mv.version, "approved", "ana", override=True)
    done = set_status(lake, mv.version, "approved", "ana", "naive wins only on a holiday week", override=True)
    assert done.status == "approved"
    last = done.history[-1]
    assert (last["status"], last["from"], last["by"], last["override"]) == (
        "approved",
        "rejected_by_gate",
        "ana",
        True,
    )
    assert last["reason"] == "naive wins only on a holiday week"


def test_rejection_needs_a_reason_and_who(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    with pytest.raises(StatusTransitionError, match="a rejection needs a reason"):
        set_status(lake, mv.version, "rejected", "ana")
    with pytest.raises(RegistryError, match="needs who made it"):
        set_status(lake, mv.version, "approved", "  ")
    assert get_version(lake, mv.version).status == "pending_approval"


def test_same_status_is_a_no_op(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    set_status(lake, mv.version, "approved", "ana")
    again = set_status(lake, mv.version, "approved", "bob")
    assert [h["status"] for h in again.history] == ["pending_approval", "approved"]


def test_deploying_retires_the_previous_production_version(lake: Lake, tmp_path: Path):
    assert production_version(lake) is None
    a = register(lake, tmp_path, salt="a", now=T0)
    b = register(lake, tmp_path, salt="b", now=T0 + dt.timedelta(hours=1))
    for v in (a, b):
        set_status(lake, v.version, "approved", "ana")
    set_status(lake, a.version, "deployed", "deploy pipeline")
    assert production_version(lake).version == a.version  # type: ignore[union-attr]
    set_status(lake, b.version, "deployed", "deploy pipeline")
    prod = production_version(lake)
    assert prod is not None and prod.version == b.version
    old = get_version(lake, a.version)
    assert old.status == "retired" and old.history[-1]["reason"] == f"replaced by {b.version}"
    # roll back: the retired version is deployed again, the other retired
    set_status(lake, a.version, "deployed", "ana", "roll back")
    assert production_version(lake).version == a.version  # type: ignore[union-attr]
    assert get_version(lake, b.version).status == "retired"


def test_two_deployed_after_a_crash_means_the_one_deployed_last(lake: Lake, tmp_path: Path):
    a = register(lake, tmp_path, salt="a", now=T0)
    b = register(lake, tmp_path, salt="b", now=T0 + dt.timedelta(hours=1))
    for v in (b, a):  # b deployed first, a later
        set_status(lake, v.version, "approved", "ana")
        set_status(lake, v.version, "deployed", "ana")
    force_status(lake, b.version, "deployed")  # as if the retire write never happened
    prod = production_version(lake)
    assert prod is not None and prod.version == a.version


def test_a_concurrent_change_is_refused(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    mv = register(lake, tmp_path)
    real = registry_store._read_metadata
    calls = {"n": 0}

    def racing(lk: Lake, version: str) -> dict[str, Any] | None:
        calls["n"] += 1
        doc = real(lk, version)
        if calls["n"] == 2 and doc is not None:  # someone rejected it meanwhile
            doc = {**doc, "status": "rejected", "status_history": [*doc["status_history"], {}]}
        return doc

    monkeypatch.setattr(registry_store, "_read_metadata", racing)
    with pytest.raises(RegistryError, match="changed status concurrently"):
        set_status(lake, mv.version, "approved", "ana")
    monkeypatch.undo()
    assert get_version(lake, mv.version).status == "pending_approval"


# --------------------------------------------------------------------------- digests


def test_verify_digest_and_fetch_detect_tampering(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    check = verify_digest(lake, mv.version)
    assert check.ok and check.actual == mv.digest
    got = fetch_artifact(lake, mv.version, tmp_path / "fetched")
    assert tree_digest(lake.fs, str(got.resolve())) == mv.digest
    with pytest.raises(RegistryError, match="not empty"):
        fetch_artifact(lake, mv.version, tmp_path / "fetched")

    stored = tmp_path / "lake" / "models" / "roi" / mv.version / "model" / "preprocessing.json"
    stored.write_text(stored.read_text().replace('"salt"', '"tampered"'))
    bad = verify_digest(lake, mv.version)
    assert not bad.ok and bad.expected == mv.digest and bad.actual != mv.digest
    with pytest.raises(RegistryError, match="differs from the registered"):
        fetch_artifact(lake, mv.version, tmp_path / "fetched2")


def test_an_artifact_changing_during_the_copy_is_refused(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real = registry_store._put_file

    def racing_copy(lk: Lake, src: Path, dest: str) -> None:
        real(lk, src, dest)
        if src.name == "context.parquet":  # the trainer rewrites a file while we copy
            with lk.fs.open_output_stream(dest) as f:
                f.write(b"PAR1 changed PAR1")

    monkeypatch.setattr(registry_store, "_put_file", racing_copy)
    with pytest.raises(RegistryError, match="did the artifact folder change"):
        register(lake, tmp_path)
    assert list_versions(lake) == []
    assert temporaries(tmp_path / "lake") == []  # cleaned up


# --------------------------------------------------------------------------- crash atomicity

_CRASH = """
import sys, datetime as dt
sys.path.insert(0, {root!r})
from autoroi.config import LakeConfig
from autoroi.lake.storage import open_lake
from autoroi.registry import register_model
from tests.unit.test_registry import metadata
lake = open_lake({uri!r}, LakeConfig(s3_endpoint_url={endpoint!r}))
register_model(lake, {artifact!r}, metadata(), {{}}, "<html></html>", "pending_approval")
print("registered")
"""


def _crash_register(uri: str, artifact: Path, point: str, endpoint: str | None = None) -> None:
    code = _CRASH.format(root=str(ROOT), uri=uri, endpoint=endpoint, artifact=str(artifact))
    env = {**os.environ, "AUTOROI_FAILPOINT": point}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == EXIT_CODE, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "registered" not in proc.stdout


@pytest.mark.parametrize("point", ["registry.before_commit", "registry.before_rename"])
def test_crash_before_the_commit_leaves_no_version_locally(tmp_path: Path, point: str):
    uri = str(tmp_path / "lake")
    art = make_artifact(tmp_path / "art")
    _crash_register(uri, art, point)
    lake = open_lake(uri)
    assert list_versions(lake) == []
    assert production_version(lake) is None
    assert list((tmp_path / "lake" / "models" / "roi").glob(".*.staging"))  # what the crash left, hidden
    mv = register_model(lake, art, metadata(), {}, "<html></html>", "pending_approval")
    assert [v.version for v in list_versions(lake)] == [mv.version]
    assert verify_digest(lake, mv.version).ok
    assert temporaries(tmp_path / "lake") == []  # the next registration removed it


def test_staging_folders_of_dead_registrations_are_removed(lake: Lake, tmp_path: Path):
    root = tmp_path / "lake" / "models" / "roi"
    dead = root / f".v1.{dead_writer_id()}-abcdef.staging"
    # an older release's names carry no writer: their age decides
    old, fresh = root / ".staging-old", root / ".staging-fresh"
    with live_writer() as alive:
        busy = root / f".v2.{alive}-abcdef.staging"
        for d in (dead, old, fresh, busy):
            d.mkdir(parents=True)
        past = os.stat(old).st_mtime - 2 * lake.stale_after_s
        os.utime(old, (past, past))
        register(lake, tmp_path)
        assert not dead.exists() and not old.exists()
        assert fresh.exists() and busy.exists()  # a registration that may be in progress, one that is


# --------------------------------------------------------------------------- S3 (moto server mode)


@pytest.mark.s3
def test_registry_on_s3(s3_lake: Any, tmp_path: Path):
    lake = open_lake(s3_lake.uri, LakeConfig(s3_endpoint_url=s3_lake.endpoint_url))
    mv = register(lake, tmp_path, now=T0)
    assert mv.location == f"s3://{s3_lake.bucket}/lake/models/roi/{mv.version}"
    keys = set(s3_lake.list_keys(f"lake/models/roi/{mv.version}/"))
    base = f"lake/models/roi/{mv.version}"
    assert {
        f"{base}/metadata.json",
        f"{base}/evaluation.json",
        f"{base}/report.html",
        f"{base}/model/model.keras",
        f"{base}/model/preprocessing.json",
        f"{base}/model/context.parquet",
    } <= keys
    assert [v.version for v in list_versions(lake)] == [mv.version]
    assert verify_digest(lake, mv.version).ok
    set_status(lake, mv.version, "approved", "ana")
    set_status(lake, mv.version, "deployed", "deploy pipeline")
    prod = production_version(lake)
    assert prod is not None and prod.version == mv.version
    fetched = fetch_artifact(lake, mv.version, tmp_path / "fetched")
    assert sorted(p.name for p in fetched.iterdir()) == [
        "context.parquet",
        "model.keras",
        "preprocessing.json",
    ]
    with pytest.raises(StatusTransitionError):
        set_status(lake, mv.version, "pending_approval", "ana")


@pytest.mark.s3
def test_crash_before_the_commit_leaves_no_version_on_s3(s3_lake: Any, tmp_path: Path):
    art = make_artifact(tmp_path / "art")
    _crash_register(s3_lake.uri, art, "registry.before_commit", s3_lake.endpoint_url)
    keys = s3_lake.list_keys("lake/models/roi/")
    assert any(k.endswith("/report.html") for k in keys)  # the files were written ...
    assert not any(k.endswith("/metadata.json") for k in keys)  # ... the commit point was not
    lake = open_lake(s3_lake.uri, LakeConfig(s3_endpoint_url=s3_lake.endpoint_url))
    assert list_versions(lake) == []
    mv = register_model(lake, art, metadata(), {}, "<html></html>", "pending_approval")
    assert [v.version for v in list_versions(lake)] == [mv.version]
    assert verify_digest(lake, mv.version).ok
    # the next registration removed the crashed one's objects (its writer is dead)
    keys = [k for k in s3_lake.list_keys("lake/models/roi/") if not k.endswith("/")]
    assert {k.split("/")[3] for k in keys} == {mv.version}, sorted(keys)
    assert not [k for k in keys if is_temporary(k.rsplit("/", 1)[-1])]
