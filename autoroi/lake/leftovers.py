"""Temporary names that say who wrote them, and the removal of what dead runs left.

Every temporary thing a writer puts into the lake or the local deploy state
(a JSON document before its rename, a table's swap link, a staging folder, a
table version before its link points to it, an S3 part file before the
manifest names it) carries the identity of the process that wrote it::

    w<machine>p<pid>s<start>     e.g. w3fa2b1c0p12345s987654

``machine`` is 8 hex digits of a hash of the kernel's boot id and the process's
PID namespace, ``start`` the process's start time in clock ticks since boot
(``/proc/<pid>/stat``, field 22). The next run of the same step removes a
temporary when its writer is dead:

* written on this machine (same boot, same PID namespace): the writer is alive
  exactly when ``/proc/<pid>/stat`` exists with the same start time. That is
  exact, needs no heartbeat, and a reused PID does not fool it. A SIGKILLed
  run's leftovers are removed by the very next run.
* written elsewhere (another pod writing the same S3 lake, a container with its
  own PID namespace) or by code older than these names: nothing here can see
  that process, so the leftover is removed only once it is older than
  ``lake.stale_after_s`` (6 h by default, longer than a step runs).

Why names and not a lock: S3 has no lock that pyarrow can take, and the same
rule has to hold for a local folder and for S3; a lock file would itself be
one more thing a crash leaves behind. A temporary of this very process is
never removed by this module (the process knows what it is still writing).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

WRITER = r"w[0-9a-f]{8}p\d+s\d+"
_WRITER_RE = re.compile(r"(?<![0-9a-z])(?P<wid>w(?P<machine>[0-9a-f]{8})p(?P<pid>\d+)s(?P<start>\d+))")
# names this module hands out: .<base>.<writer>-<random>.<kind>
TEMP_RE = re.compile(rf"^\.(?P<base>.+)\.(?P<wid>{WRITER})-[0-9a-f]{{6}}\.(?P<kind>tmp|swap|staging)$")
# temporaries of earlier releases, which carried no writer: age decides
LEGACY_RE = re.compile(r"^(\..+\.[0-9a-f]{8}\.swap|.+\.[0-9a-f]{32}\.tmp|\.staging-.+)$")
DEFAULT_STALE_AFTER_S = 6 * 3600.0


@functools.cache
def _machine() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = socket.gethostname()
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = socket.gethostname()
    return hashlib.sha256(f"{boot}\0{pidns}".encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[-1].split()
    # fields[0] is the state (field 3); a zombie has exited and writes nothing more
    if not fields or fields[0] == "Z":
        return None
    try:
        return int(fields[19])  # field 22
    except (IndexError, ValueError):
        return None


_own: tuple[int, str] | None = None


def writer_id() -> str:
    """This process's identity (recomputed after a fork)."""
    global _own
    pid = os.getpid()
    if _own is None or _own[0] != pid:
        _own = (pid, f"w{_machine()}p{pid}s{_start_ticks(pid) or 0}")
    return _own[1]


def temp_name(base: str, kind: str = "tmp") -> str:
    """``.<base>.<writer>-<random>.<kind>``: hidden from Parquet readers and listings."""
    if kind not in ("tmp", "swap", "staging"):
        raise ValueError(f"unknown temporary kind {kind!r}")
    return f".{base}.{writer_id()}-{secrets.token_hex(3)}.{kind}"


def owner(name: str) -> str | None:
    """The writer identity a name carries, if any."""
    m = _WRITER_RE.search(name)
    return m.group("wid") if m else None


def writer_state(wid: str | None) -> str:
    """``self``, ``alive``, ``dead`` or ``unknown`` (another machine, or no identity)."""
    if wid is None:
        return "unknown"
    if wid == writer_id():
        return "self"
    m = _WRITER_RE.fullmatch(wid)
    if m is None or m.group("machine") != _machine():
        return "unknown"
    start = _start_ticks(int(m.group("pid")))
    return "alive" if start is not None and start == int(m.group("start")) else "dead"


def abandoned(name: str, mtime: float | None, stale_after_s: float, now: float | None = None) -> bool:
    """Whether a temporary named ``name`` (last written at ``mtime``, epoch
    seconds) belongs to no live writer, so that removing it harms nobody."""
    state = writer_state(owner(name))
    if state == "dead":
        return True
    if state in ("self", "alive"):
        return False
    if mtime is None:
        return False
    return (now if now is not None else time.time()) - mtime > stale_after_s


def is_temporary(name: str) -> bool:
    return bool(TEMP_RE.match(name) or LEGACY_RE.match(name))


def mtime_of(info: pafs.FileInfo) -> float | None:
    """A ``pyarrow`` file's modification time in epoch seconds (S3 folders have none)."""
    return info.mtime.timestamp() if info.mtime is not None else None


# one temporary found in a folder: name, path, last change, how to remove it
_Found = tuple[str, str, float | None, Callable[[], None]]


def _remove_abandoned(found: Iterable[_Found], stale_after_s: float) -> list[str]:
    removed: list[str] = []
    for name, path, mtime, remove in found:
        if not abandoned(name, mtime, stale_after_s):
            continue
        try:
            remove()
        except FileNotFoundError:
            continue
        log.info("removed %s, left by a run that is no longer alive", path)
        removed.append(path)
    return removed


def _local_temporaries(folders: Iterable[str | Path]) -> Iterator[_Found]:
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not is_temporary(entry.name):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            remove = functools.partial(shutil.rmtree if is_dir else os.unlink, entry.path)
            yield entry.name, entry.path, mtime, remove


def sweep_local(folders: Iterable[str | Path], stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[str]:
    """Remove the temporaries of dead writers directly inside each folder
    (files, links, staging folders); returns what was removed."""
    return _remove_abandoned(_local_temporaries(folders), stale_after_s)


def sweep_fs(
    fs: pafs.FileSystem, folders: Iterable[str], stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> list[str]:
    """:func:`sweep_local` through a ``pyarrow`` filesystem (S3): only files
    (objects) carry a time there."""
    if isinstance(fs, pafs.LocalFileSystem):
        return sweep_local(folders, stale_after_s)
    found = (
        (info.base_name, info.path, mtime_of(info), functools.partial(fs.delete_file, info.path))
        for folder in folders
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=False))
        if info.type == pafs.FileType.File and is_temporary(info.base_name)
    )
    return _remove_abandoned(found, stale_after_s)
