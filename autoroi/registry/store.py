"""The model registry: ``<lake>/models/roi/<version>/``.

Layout of one version::

    models/roi/<version>/model/            the model artifact folder, as ``save_model`` writes it
                                           (model.keras, preprocessing.json, context.parquet)
    models/roi/<version>/evaluation.json   the backtest: folds, metrics per model, gate decision, ...
    models/roi/<version>/report.html      the page a reviewer reads (``autoroi.report``)
    models/roi/<version>/metadata.json    the version's record; a version exists iff it has one

``metadata.json`` holds: ``version``, ``model`` ("roi"), ``created_at`` (UTC,
ISO 8601), ``master_version``, ``code_version``, ``hyperparameters``,
``metrics`` (the candidate's backtest metrics), ``gate`` (``passed``,
``reasons``, ``checks``), ``digest`` (sha256 of the artifact, as
``autoroi.model.artifact.artifact_digest`` computes it) and
``digest_algorithm``, ``status``, ``status_changed_at``, ``status_history``
(one entry per change: ``status``, ``from``, ``by``, ``at``, ``reason``,
``override``), the names of the files beside it, and whatever further keys the
caller passed (baseline metrics, the tuner's summary, ...).

**Version names** are ``v<YYYYMMDD-HHMMSS>-<digest8>``: the UTC time of
registration and the first 8 hex digits of the artifact's sha256. As plain
strings they sort chronologically (``ls``, S3 listings and ``sorted()`` all
agree); two registrations in the same second differ by their artifact, so
names are unique (an identical artifact registered twice in the same second is
refused as existing); the name says which artifact it is; and it is a valid
Kubernetes label value and DNS label (lower-case letters, digits, ``-``, under
63 characters), so it can travel into KServe resources unchanged.

**Atomic publish.** Locally the version is assembled in
``models/roi/.<version>.<writer>-<random>.staging/`` (metadata.json included)
and renamed into place with one ``rename``: a crash leaves a staging folder,
which listings skip, never a half-written version. On S3 a marker naming the
writer goes first, then the artifact, ``evaluation.json`` and ``report.html``,
and ``metadata.json`` last: it is the commit point, and a prefix without it is
not a version. The next registration removes what dead writers left (staging
folders, temporary files, S3 prefixes without ``metadata.json``), never what a
live one is writing (``autoroi.lake.leftovers`` says how it tells).

**Status changes** (:func:`set_status`) are validated against
``autoroi.registry.status.TRANSITIONS`` and written as one JSON write of
``metadata.json`` (atomic: readers see the old record or the new one). Setting
a version ``deployed`` retires the version that was deployed before, in a
second write; if a crash comes between the two, :func:`production_version`
still answers with the one deployed last. The registry assumes one writer per
version at a time (status changes are human-paced); a change that another
writer made since this one read the record is detected just before the write
and refused, but two writes within the same few milliseconds are not
serialized (S3 has no compare-and-swap that pyarrow exposes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from autoroi.errors import RegistryError, StatusTransitionError
from autoroi.lake import failpoints
from autoroi.lake.leftovers import temp_name
from autoroi.lake.storage import Lake, fsync_dir
from autoroi.registry import status as S

log = logging.getLogger(__name__)

MODELS_ZONE = "models"
MODEL_NAME = "roi"
METADATA_FILE = "metadata.json"
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.html"
ARTIFACT_DIR = "model"
# the files of a model artifact (kept equal to autoroi.model.artifact.ARTIFACT_FILES by a test;
# not imported from there, so that the registry and the CLI do not load TensorFlow)
ARTIFACT_FILES = ("model.keras", "preprocessing.json", "context.parquet")
SCHEMA_VERSION = 1
DIGEST_ALGORITHM = "sha256"

VERSION_PATTERN = re.compile(r"^v\d{8}-\d{6}-[0-9a-f]{8}$")
# names a caller may choose instead (no path separators, no leading dot or underscore)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# keys of metadata.json that only the registry writes
RESERVED_KEYS = frozenset(
    {"version", "model", "status", "status_history", "status_changed_at", "digest", "digest_algorithm"}
)
REQUIRED_KEYS = ("master_version", "metrics", "gate")
_COPY_CHUNK = 8 << 20


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its ``metadata.json`` and where it lives."""

    version: str
    metadata: dict[str, Any]
    path: str  # the version's folder inside ``lake.fs``
    location: str  # the same for people: a local path or s3://bucket/...

    @property
    def status(self) -> str:
        return str(self.metadata.get("status", ""))

    @property
    def master_version(self) -> str | None:
        v = self.metadata.get("master_version")
        return None if v is None else str(v)

    @property
    def created_at(self) -> str:
        return str(self.metadata.get("created_at", ""))

    @property
    def digest(self) -> str:
        return str(self.metadata.get("digest", ""))

    @property
    def metrics(self) -> dict[str, Any]:
        m = self.metadata.get("metrics")
        return dict(m) if isinstance(m, Mapping) else {}

    @property
    def gate(self) -> dict[str, Any]:
        g = self.metadata.get("gate")
        return dict(g) if isinstance(g, Mapping) else {}

    @property
    def gate_passed(self) -> bool | None:
        p = self.gate.get("passed")
        return None if p is None else bool(p)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("status_history", []))

    @property
    def artifact_location(self) -> str:
        return f"{self.location}/{ARTIFACT_DIR}"

    @property
    def report_location(self) -> str:
        return f"{self.location}/{REPORT_FILE}"

    @property
    def evaluation_location(self) -> str:
        return f"{self.location}/{EVALUATION_FILE}"


@dataclass(frozen=True)
class DigestCheck:
    version: str
    expected: str  # from metadata.json
    actual: str  # recomputed from the stored artifact

    @property
    def ok(self) -> bool:
        return bool(self.expected) and self.expected == self.actual


# --------------------------------------------------------------------------- paths and names


def registry_root(lake: Lake) -> str:
    return lake.path(MODELS_ZONE, MODEL_NAME)


def version_path(lake: Lake, version: str) -> str:
    return f"{registry_root(lake)}/{check_version_name(version)}"


def check_version_name(version: str) -> str:
    if not isinstance(version, str) or not _SAFE_NAME.fullmatch(version):
        raise RegistryError(
            f"invalid model version name {version!r}: letters, digits, '.', '_', '-' only,"
            " starting with a letter or digit"
        )
    return version


def new_version(digest: str, now: dt.datetime | None = None) -> str:
    """``v<YYYYMMDD-HHMMSS>-<digest8>`` in UTC (the module docstring says why)."""
    if not re.fullmatch(r"[0-9a-f]{8,}", digest):
        raise ValueError(f"not a hex digest: {digest!r}")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"v{now:%Y%m%d-%H%M%S}-{digest[:8]}"


def _iso(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- digests


def tree_digest(fs: pafs.FileSystem, directory: str) -> str:
    """sha256 over the folder's files in name order (name, size, bytes): the
    same number as ``autoroi.model.artifact.artifact_digest`` for a local
    folder, computed here through any ``pyarrow`` filesystem (local or S3)."""
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    if not names:
        raise RegistryError(f"no artifact files in {directory}")
    h = hashlib.sha256()
    for name in names:
        with fs.open_input_stream(f"{directory}/{name}") as f:
            data = f.read()
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _local_artifact(artifact_dir: str | Path) -> tuple[Path, list[str]]:
    d = Path(artifact_dir)
    if not d.is_dir():
        raise RegistryError(f"model artifact folder {d} does not exist")
    entries = sorted(d.iterdir())
    subdirs = [p.name for p in entries if p.is_dir()]
    if subdirs:
        raise RegistryError(
            f"model artifact folder {d} holds subfolders ({', '.join(subdirs)}), which its digest"
            " would not cover"
        )
    names = [p.name for p in entries if p.is_file()]
    missing = [n for n in ARTIFACT_FILES if n not in names]
    if missing:
        raise RegistryError(f"{d} is not a model artifact: missing {', '.join(missing)}")
    return d, names


# --------------------------------------------------------------------------- JSON


def plain(obj: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become ``None`` (JSON has neither),
    numpy scalars Python numbers, objects with ``to_dict`` or dataclasses dicts,
    dates ISO strings."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "to_dict") and callable(obj.to_dict) and not isinstance(obj, Mapping):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [plain(v) for v in obj]
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return plain(obj.item())
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array
        return plain(obj.tolist())
    return str(obj)


# --------------------------------------------------------------------------- reading


def _read_metadata(lake: Lake, version: str) -> dict[str, Any] | None:
    return lake.read_json(f"{version_path(lake, version)}/{METADATA_FILE}")


def get_version(lake: Lake, version: str) -> ModelVersion:
    doc = _read_metadata(lake, version)
    if doc is None:
        raise RegistryError(f"model version {version} does not exist in lake {lake.uri}")
    path = version_path(lake, version)
    return ModelVersion(version, doc, path, lake.display(path))


def list_versions(lake: Lake) -> list[ModelVersion]:
    """Every complete version, oldest first (by ``created_at``, then name)."""
    root = registry_root(lake)
    out = []
    for info in lake.list_dir(root):
        name = info.base_name
        if info.type != pafs.FileType.Directory or name.startswith((".", "_")):
            continue
        if not _SAFE_NAME.fullmatch(name):
            continue
        doc = _read_metadata(lake, name)
        if doc is None:  # an S3 prefix a crashed registration left: not a version
            continue
        path = f"{root}/{name}"
        out.append(ModelVersion(name, doc, path, lake.display(path)))
    return sorted(out, key=lambda v: (v.created_at, v.version))


def deployed_at(v: ModelVersion) -> str:
    """When ``v`` was last deployed (ISO time; empty if never)."""
    times = [str(h.get("at", "")) for h in v.history if h.get("status") == S.DEPLOYED]
    return max(times, default=v.metadata.get("status_changed_at", ""))


def production_version(lake: Lake) -> ModelVersion | None:
    """The version that is ``deployed`` (the one deployed last, should a crash
    have left two), or ``None``."""
    deployed = [v for v in list_versions(lake) if v.status == S.DEPLOYED]
    if not deployed:
        return None
    if len(deployed) > 1:
        log.warning(
            "%d versions are marked deployed (%s); taking the one deployed last",
            len(deployed),
            ", ".join(v.version for v in deployed),
        )
    return max(deployed, key=lambda v: (deployed_at(v), v.version))


def read_evaluation(lake: Lake, version: str) -> dict[str, Any]:
    doc = lake.read_json(f"{version_path(lake, version)}/{EVALUATION_FILE}")
    if doc is None:
        raise RegistryError(f"model version {version} has no {EVALUATION_FILE} in lake {lake.uri}")
    return doc


def verify_digest(lake: Lake, version: str) -> DigestCheck:
    """Recompute the stored artifact's digest and compare it with metadata.json."""
    mv = get_version(lake, version)
    actual = tree_digest(lake.fs, f"{mv.path}/{ARTIFACT_DIR}")
    check = DigestCheck(version, mv.digest, actual)
    if not check.ok:
        log.warning(
            "model version %s: artifact digest %s differs from metadata %s", version, actual, mv.digest
        )
    return check


def fetch_artifact(lake: Lake, version: str, dest: str | Path) -> Path:
    """Copy the version's artifact into the local folder ``dest`` (created, must
    be empty or absent) and check its digest; returns ``dest``."""
    mv = get_version(lake, version)
    target = Path(dest)
    if target.exists() and any(target.iterdir()):
        raise RegistryError(f"{target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    src = f"{mv.path}/{ARTIFACT_DIR}"
    infos = lake.fs.get_file_info(pafs.FileSelector(src, allow_not_found=True, recursive=False))
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        with lake.fs.open_input_stream(info.path) as fin, open(target / info.base_name, "wb") as fout:
            while chunk := fin.read(_COPY_CHUNK):
                fout.write(chunk)
    actual = tree_digest(pafs.LocalFileSystem(), str(target.resolve()))
    if actual != mv.digest:
        raise RegistryError(
            f"model version {version}: fetched artifact digest {actual}"
            f" differs from the registered {mv.digest}"
        )
    return target


# --------------------------------------------------------------------------- registering


def _history_entry(
    status: str, previous: str | None, by: str, at: str, reason: str, override: bool = False
) -> dict[str, Any]:
    return {"status": status, "from": previous, "by": by, "at": at, "reason": reason, "override": override}


def _check_by(by: str) -> str:
    by = (by or "").strip()
    if not by or len(by) > 200:
        raise RegistryError("a status change needs who made it (--by NAME, at most 200 characters)")
    return by


def register_model(
    lake: Lake,
    artifact_dir: str | Path,
    metadata: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    report_html: str,
    status: str,
    *,
    by: str = "autoroi train",
    version: str | None = None,
    now: dt.datetime | None = None,
) -> ModelVersion:
    """Publish a new version atomically (module docstring) and return it.

    ``artifact_dir``: a local model artifact folder (``save_model``'s).
    ``metadata``: at least ``master_version``, ``metrics`` (the candidate's
    metrics, name -> number) and ``gate`` (``GateDecision.to_dict()``: ``passed``,
    ``reasons``, ``checks``); usually also ``code_version`` (default: this
    package's) and ``hyperparameters``; further keys are kept as they are. The
    registry's own keys (``RESERVED_KEYS``) may not be passed.
    ``status``: ``pending_approval`` (the gates passed) or ``rejected_by_gate``
    (they failed); it must agree with ``gate.passed``.
    ``version``: a name of the caller's choosing instead of :func:`new_version`'s.
    """
    if status not in S.INITIAL:
        raise RegistryError(
            f"a new model version is registered as {' or '.join(sorted(S.INITIAL))}, not {status!r}"
        )
    reserved = sorted(RESERVED_KEYS & set(metadata))
    if reserved:
        raise RegistryError(f"metadata keys {', '.join(reserved)} are set by the registry, not the caller")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise RegistryError(f"model metadata lacks {', '.join(missing)}")
    doc: dict[str, Any] = plain(metadata)
    if not isinstance(doc["metrics"], dict):
        raise RegistryError("metadata 'metrics' must be a mapping of metric name to value")
    gate = doc["gate"]
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        raise RegistryError("metadata 'gate' must be a gate decision with a boolean 'passed'")
    if gate["passed"] != (status == S.PENDING_APPROVAL):
        raise RegistryError(
            f"status {status} contradicts the gate decision (passed={gate['passed']}):"
            " a version that passed its gates is pending_approval, one that failed is rejected_by_gate"
        )
    by = _check_by(by)
    src, names = _local_artifact(artifact_dir)
    digest = tree_digest(pafs.LocalFileSystem(), str(src.resolve()))
    now = now or dt.datetime.now(dt.UTC)
    version = check_version_name(version) if version is not None else new_version(digest, now)
    at = _iso(now)
    if "code_version" not in doc:
        from autoroi.release import code_version

        doc["code_version"] = code_version()
    reason = (
        "validation gates passed" if gate["passed"] else "; ".join(gate.get("reasons") or ["gates failed"])
    )
    doc.update(
        {
            "schema_version": SCHEMA_VERSION,
            "model": MODEL_NAME,
            "version": version,
            "created_at": at,
            "digest": digest,
            "digest_algorithm": DIGEST_ALGORITHM,
            "artifact": ARTIFACT_DIR,
            "files": {"evaluation": EVALUATION_FILE, "report": REPORT_FILE, "artifact": sorted(names)},
            "status": status,
            "status_changed_at": at,
            "status_history": [_history_entry(status, None, by, at, reason)],
        }
    )
    final = version_path(lake, version)
    if lake.exists(f"{final}/{METADATA_FILE}"):
        raise RegistryError(f"model version {version} exists already in lake {lake.uri}")
    if lake.is_local:
        _publish_local(lake, src, names, doc, plain(evaluation), report_html, final)
    else:
        lake.sweep_unfinished(registry_root(lake), METADATA_FILE)
        marker = lake.mark_unfinished(final)
        _write_version(lake, src, names, doc, plain(evaluation), report_html, final)
        lake.delete_file(marker)
    log.info("registered model version %s as %s (%s)", version, status, lake.display(final))
    return get_version(lake, version)


def _write_version(
    lake: Lake,
    src: Path,
    names: list[str],
    doc: dict[str, Any],
    evaluation: Any,
    report_html: str,
    base: str,
) -> None:
    """Everything but the commit: files first, ``metadata.json`` last."""
    lake.fs.create_dir(f"{base}/{ARTIFACT_DIR}", recursive=True)
    for name in names:
        _put_file(lake, src / name, f"{base}/{ARTIFACT_DIR}/{name}")
    stored = tree_digest(lake.fs, f"{base}/{ARTIFACT_DIR}")
    if stored != doc["digest"]:  # the source folder changed while it was copied
        raise RegistryError(
            f"model version {doc['version']}: the stored artifact's digest {stored} differs from"
            f" {doc['digest']} (did the artifact folder change during the copy?)"
        )
    lake.write_json(f"{base}/{EVALUATION_FILE}", evaluation)
    with lake.fs.open_output_stream(f"{base}/{REPORT_FILE}") as f:
        f.write(report_html.encode("utf-8"))
    if lake.is_local:
        _fsync(f"{base}/{REPORT_FILE}")
    failpoints.hit("registry.before_commit")
    lake.write_json(f"{base}/{METADATA_FILE}", doc)


def _publish_local(
    lake: Lake,
    src: Path,
    names: list[str],
    doc: dict[str, Any],
    evaluation: Any,
    report_html: str,
    final: str,
) -> None:
    root = registry_root(lake)
    Path(root).mkdir(parents=True, exist_ok=True)
    lake.sweep(root)
    staging = f"{root}/{temp_name(doc['version'], 'staging')}"
    try:
        _write_version(lake, src, names, doc, evaluation, report_html, staging)
        fsync_dir(f"{staging}/{ARTIFACT_DIR}")
        fsync_dir(staging)
        failpoints.hit("registry.before_rename")
        if os.path.lexists(final):
            if os.path.exists(f"{final}/{METADATA_FILE}"):
                raise RegistryError(f"model version {doc['version']} exists already in lake {lake.uri}")
            shutil.rmtree(final)  # a folder without metadata.json is not a version
        os.rename(staging, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _put_file(lake: Lake, src: Path, dest: str) -> None:
    with open(src, "rb") as fin, lake.fs.open_output_stream(dest) as fout:
        while chunk := fin.read(_COPY_CHUNK):
            fout.write(chunk)
    if lake.is_local:
        _fsync(dest)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- status changes


def set_status(
    lake: Lake,
    version: str,
    new_status: str,
    by: str,
    reason: str = "",
    override: bool = False,
    *,
    now: dt.datetime | None = None,
) -> ModelVersion:
    """Move ``version`` to ``new_status`` if ``status.TRANSITIONS`` allows it
    (``rejected_by_gate`` -> ``approved`` only with ``override=True`` and a
    reason; ``rejected`` needs a reason), recording who, when and why; one
    atomic write of metadata.json. Setting the status it already has changes
    nothing (a retried step is harmless). ``deployed`` retires the previously
    deployed version. A forbidden change raises :class:`StatusTransitionError`."""
    mv = get_version(lake, version)
    current = mv.status
    if new_status == current:
        log.info("model version %s is %s already; nothing changed", version, current)
        return mv
    why = S.check_transition(current, new_status, override=override)
    if why:
        raise StatusTransitionError(version, current, new_status, why)
    by = _check_by(by)
    reason = (reason or "").strip()
    needs_override = (current, new_status) in S.OVERRIDE_REQUIRED
    if not reason and (new_status in S.REASON_REQUIRED or needs_override):
        raise StatusTransitionError(
            version,
            current,
            new_status,
            "an override needs a reason (--comment)"
            if needs_override
            else "a rejection needs a reason (--comment)",
        )
    at = _iso(now or dt.datetime.now(dt.UTC))
    doc = dict(mv.metadata)
    doc["status"] = new_status
    doc["status_changed_at"] = at
    doc["status_history"] = [
        *mv.history,
        _history_entry(new_status, current, by, at, reason, override=needs_override),
    ]
    # a change made by someone else since we read the record wins; refuse ours
    latest = _read_metadata(lake, version) or {}
    if latest.get("status") != current or len(latest.get("status_history", [])) != len(mv.history):
        raise RegistryError(
            f"model version {version} changed status concurrently (now {latest.get('status')}); try again"
        )
    failpoints.hit("registry.before_status_write")
    lake.sweep(mv.path)
    lake.write_json(f"{mv.path}/{METADATA_FILE}", doc)
    log.info("model version %s: %s -> %s by %s", version, current, new_status, by)
    if new_status == S.DEPLOYED:
        for other in list_versions(lake):
            if other.version != version and other.status == S.DEPLOYED:
                set_status(lake, other.version, S.RETIRED, by, f"replaced by {version}", now=now)
    return get_version(lake, version)
