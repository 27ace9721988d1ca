"""Lake storage over ``pyarrow.fs``: the same calls for a local folder and for
S3 (AWS, MinIO, or an emulator such as moto's server mode).

Credentials for S3 come from the standard AWS chain (environment variables,
a mounted credentials file, the pod's role); they are never part of the URI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from autoroi.config import LakeConfig
from autoroi.errors import ConfigError, LakeError
from autoroi.lake import failpoints
from autoroi.lake.leftovers import (
    DEFAULT_STALE_AFTER_S,
    abandoned,
    is_temporary,
    mtime_of,
    sweep_fs,
    temp_name,
)

log = logging.getLogger(__name__)


@dataclass
class Lake:
    """A lake root: ``fs`` plus the root path inside it."""

    uri: str
    fs: pafs.FileSystem
    root: str
    is_local: bool
    stale_after_s: float = DEFAULT_STALE_AFTER_S

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_json(self, path: str) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(path) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            if "not found" in str(e).lower() or "nosuchkey" in str(e).lower():
                return None
            raise LakeError(f"cannot read {self.display(path)}: {e}") from e
        return json.loads(data)

    def write_json(self, path: str, obj: Any) -> None:
        """Atomic: readers see the old document or the new one, never a mix.
        S3 PUTs are atomic per object; locally we rename over the target."""
        if self.is_local:
            write_json_local(path, obj)
        else:
            with self.fs.open_output_stream(path) as f:
                f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def delete_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def list_dir(self, path: str) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(path, allow_not_found=True, recursive=False)
        return self.fs.get_file_info(sel)

    def sweep(self, *folders: str) -> list[str]:
        """Remove the temporaries that dead runs left directly inside ``folders``
        (``autoroi.lake.leftovers``); a step calls it on the folders it writes."""
        return sweep_fs(self.fs, folders, self.stale_after_s)

    def mark_unfinished(self, folder: str) -> str:
        """An S3 folder is written object by object and cannot be renamed into
        place: an empty marker named after the writer, put there first and
        deleted after the commit, says who is (or was) writing it, so that
        :meth:`sweep_unfinished` can tell a dead writer's leftover from a
        live one's work."""
        marker = f"{folder}/{temp_name(folder.rsplit('/', 1)[-1], 'staging')}"
        with self.fs.open_output_stream(marker) as f:
            f.write(b"")
        return marker

    def sweep_unfinished(self, root: str, commit_file: str) -> list[str]:
        """Remove the folders under ``root`` that lack ``commit_file`` and
        whose writers (their markers) are dead; a folder without a marker
        (an older release's) goes once its newest object is stale."""
        removed = []
        for info in self.list_dir(root):
            name = info.base_name
            if info.type != pafs.FileType.Directory or name.startswith((".", "_")):
                continue
            if self.exists(f"{info.path}/{commit_file}"):
                continue
            sel = pafs.FileSelector(info.path, allow_not_found=True, recursive=True)
            files = [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]
            markers = [
                i
                for i in files
                if i.path.count("/") == info.path.count("/") + 1 and is_temporary(i.base_name)
            ]
            if markers:
                dead = all(abandoned(m.base_name, mtime_of(m), self.stale_after_s) for m in markers)
            else:
                times = [t for i in files if (t := mtime_of(i)) is not None]
                dead = bool(times) and time.time() - max(times) > self.stale_after_s
            if dead:
                self.fs.delete_dir(info.path)
                log.info(
                    "removed %s, an unfinished folder of a run that is no longer alive",
                    self.display(info.path),
                )
                removed.append(info.path)
        return removed

    def display(self, path: str) -> str:
        if self.is_local:
            return path
        return "s3://" + path

    def check_writable(self) -> None:
        """Fail early, before any table is touched, when the lake cannot take
        writes (missing bucket, read-only folder, wrong credentials)."""
        probe = self.path(temp_name("probe"))
        try:
            if self.is_local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            self.sweep(self.root)
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except (OSError, pa.ArrowException) as e:
            raise LakeError(f"lake {self.uri} is not writable: {_short(e)}") from e


def write_json_local(path: str | Path, obj: Any) -> None:
    """A JSON document on the local filesystem, atomically and durably:
    written under a temporary name that carries the writer's identity (so that
    the next run can tell a dead writer's leftover from a live one's file),
    fsynced, renamed over the target."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    target = Path(path)
    tmp = target.with_name(temp_name(target.name))
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    failpoints.hit("json.before_replace", target.name)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def fsync_dir(path: str) -> None:
    """Make a rename durable; a crash must not undo a publish."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300]


def open_lake(uri: str, cfg: LakeConfig | None = None) -> Lake:
    """Parse a lake URI into a :class:`Lake`; a bad URI is a ``ConfigError``."""
    cfg = cfg or LakeConfig()
    if not uri:
        raise ConfigError("lake URI is empty")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        local = parsed.path if parsed.scheme == "file" else uri
        root = str(Path(local).expanduser().resolve())
        return Lake(
            uri=uri, fs=pafs.LocalFileSystem(), root=root, is_local=True, stale_after_s=cfg.stale_after_s
        )
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise ConfigError(f"lake URI {uri!r} has no bucket: expected s3://bucket/prefix")
        kwargs: dict[str, Any] = {"region": cfg.s3_region}
        if cfg.s3_endpoint_url:
            ep = urlparse(cfg.s3_endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ConfigError(
                    f"lake.s3_endpoint_url {cfg.s3_endpoint_url!r} must be http(s)://host[:port]"
                )
            kwargs["endpoint_override"] = ep.netloc
            kwargs["scheme"] = ep.scheme
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if access and secret:
            kwargs["access_key"] = access
            kwargs["secret_key"] = secret
            if os.environ.get("AWS_SESSION_TOKEN"):
                kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
        try:
            fs = pafs.S3FileSystem(**kwargs)
        except (OSError, pa.ArrowException) as e:
            raise LakeError(f"cannot open S3 lake {uri}: {_short(e)}") from e
        info = fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise LakeError(f"S3 bucket {bucket!r} of lake {uri} does not exist or is not visible")
        root = f"{bucket}/{parsed.path.strip('/')}".rstrip("/")
        return Lake(uri=uri, fs=fs, root=root, is_local=False, stale_after_s=cfg.stale_after_s)
    raise ConfigError(
        f"unsupported lake URI scheme {parsed.scheme!r} in {uri!r}: use a folder or s3://bucket/prefix"
    )
