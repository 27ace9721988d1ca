"""Table snapshots in the lake, published atomically.

``<zone>/<table>/`` read with ``pyarrow.dataset.dataset(path, format="parquet")``
gives exactly the table's current rows. Each publish is a new *version*: a set
of immutable Parquet files plus ``_manifest.json`` (files, row counts, schema,
and whatever state the writer keeps, such as replication watermarks). Because
the state lives in the manifest, data and state can never disagree after a
crash.

Local folder: ``<zone>/<table>`` is a symbolic link to
``<zone>/_versions/<table>/v<NNNNNN>-<writer>/``; a publish builds the new
version beside the old (unchanged files hard-linked, not copied) and swaps the
link with one ``rename`` of a temporary link ``<zone>/.<table>.<writer>-<r>.swap``.
A reader that resolves the link once (``os.path.realpath``, as
``TableStore.read`` does through the manifest) sees one whole version; older
versions are kept (``keep_versions``) for such readers in flight. A reader that
lists ``<zone>/<table>/`` and then opens each file through the link can, if a
publish lands between the two, miss the files that publish replaced.

S3: objects cannot be renamed as a group, so ``_manifest.json`` (one PUT,
atomic) is the commit point: new files are written first, the manifest is
switched, then files no longer referenced are deleted. New files are named
``part-<version>-<seq>-<writer>-<r>.parquet``. Readers that go through the
manifest (``TableStore.read``) always see one version; a reader that lists the
prefix can, during that short window, see new and old files together.

Every temporary name carries its writer's identity (``autoroi.lake.leftovers``):
the next writer of the table removes what dead runs left (staged versions,
swap links, unreferenced files) and never what a live run is still writing.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from autoroi.errors import LakeError
from autoroi.lake import failpoints
from autoroi.lake.leftovers import abandoned, mtime_of, owner, temp_name, writer_id, writer_state
from autoroi.lake.storage import Lake, fsync_dir

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
_VERSION_RE = re.compile(r"^v(\d{6,})(?:-(w[0-9a-f]{8}p\d+s\d+))?$")
# what the writers of this process are still building: version folders (local), files (S3)
_in_progress: set[str] = set()


@dataclass
class FileEntry:
    name: str
    rows: int
    bytes: int
    key_min: int | None = None
    key_max: int | None = None


@dataclass
class TableManifest:
    table: str
    version: int
    rows: int
    files: list[FileEntry]
    schema_b64: str
    created_at: str
    state: dict[str, Any] = field(default_factory=dict)
    dir: str | None = None  # the version's folder under _versions/<table>/ (local lakes)

    @property
    def schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema_b64)))

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["columns"] = [{"name": f.name, "type": str(f.type)} for f in self.schema]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TableManifest:
        return cls(
            table=doc["table"],
            version=int(doc["version"]),
            rows=int(doc["rows"]),
            files=[FileEntry(**f) for f in doc["files"]],
            schema_b64=doc["schema_b64"],
            created_at=doc["created_at"],
            state=doc.get("state", {}),
            dir=doc.get("dir"),
        )


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


class TableStore:
    """One table of one zone (``raw``, ``curated`` ...)."""

    def __init__(self, lake: Lake, zone: str, table: str, compression: str = "zstd", keep_versions: int = 2):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", table):
            raise LakeError(f"invalid table name {table!r}")
        self.lake, self.zone, self.table = lake, zone, table
        self.compression = None if compression == "none" else compression
        self.keep_versions = keep_versions
        self.path = lake.path(zone, table)
        self._versions = lake.path(zone, "_versions", table)
        self._gc: threading.Thread | None = None

    # -- reading -----------------------------------------------------------
    def manifest(self) -> TableManifest | None:
        doc = self.lake.read_json(f"{self.path}/{MANIFEST}")
        return TableManifest.from_json(doc) if doc else None

    def _data_dir(self, manifest: TableManifest) -> str:
        if self.lake.is_local:
            return f"{self._versions}/{manifest.dir or f'v{manifest.version:06d}'}"
        return self.path

    def file_path(self, manifest: TableManifest, name: str) -> str:
        return f"{self._data_dir(manifest)}/{name}"

    def read(
        self,
        manifest: TableManifest | None = None,
        columns: list[str] | None = None,
        files: Iterable[str] | None = None,
    ) -> pa.Table:
        """Rows of one version (the current one by default), through the
        manifest so that S3 readers are consistent too."""
        manifest = manifest or self.manifest()
        if manifest is None:
            raise LakeError(f"table {self.zone}/{self.table} does not exist in lake {self.lake.uri}")
        names = list(files) if files is not None else [f.name for f in manifest.files]
        if not names:
            schema = manifest.schema
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        paths = [self.file_path(manifest, n) for n in names]
        dataset = pads.dataset(paths, schema=manifest.schema, format="parquet", filesystem=self.lake.fs)
        return dataset.to_table(columns=columns)

    # -- writing -----------------------------------------------------------
    def begin(self) -> TableWriter:
        """Stage a new version; nothing is visible until ``commit``."""
        self.wait_gc()
        current = self.manifest()
        self._clean_leftovers(current)
        return TableWriter(self, current)

    def _dead(self, name: str, path: str, mtime: float | None) -> bool:
        """Whether nobody is writing ``path`` any more: its writer is dead, or
        is this process with no writer of it open."""
        if writer_state(owner(name)) == "self":
            return path not in _in_progress
        return abandoned(name, mtime, self.lake.stale_after_s)

    def _clean_leftovers(self, current: TableManifest | None) -> None:
        """Remove what crashed publishes left behind: staged versions and swap
        links locally, unreferenced files on S3; what live runs are writing stays."""
        self.lake.sweep(self.lake.path(self.zone))
        if self.lake.is_local:
            base = Path(self._versions)
            if not base.is_dir():
                return
            self.lake.sweep(str(base))
            cur = current.version if current else -1
            for child in base.iterdir():
                m = _VERSION_RE.match(child.name)
                if m is None or int(m.group(1)) <= cur:
                    continue  # not ours, or a published version: _gc_local's business
                if self._dead(child.name, str(child), _mtime(child)):
                    log.info("removing unpublished version %s of %s", child.name, self.table)
                    shutil.rmtree(child, ignore_errors=True)
        else:
            referenced = {f.name for f in current.files} if current else set()
            for info in self.lake.list_dir(self.path):
                name = info.base_name
                if not name.endswith(".parquet") or name in referenced:
                    continue
                if self._dead(name, info.path, mtime_of(info)):
                    log.info("removing unreferenced file %s of %s", name, self.table)
                    self.lake.delete_file(info.path)

    def wait_gc(self) -> None:
        """Wait for the removal of old versions that a ``commit(...,
        background_gc=True)`` started."""
        if self._gc is not None:
            self._gc.join()
            self._gc = None

    def _gc_local(self, current_version: int, current_dir: str) -> None:
        """Keep the current version and the ``keep_versions - 1`` newest older
        ones (for readers in flight); remove older versions, and versions no
        longer being written that lost a race to the same number."""
        base = Path(self._versions)
        older: list[tuple[int, Path]] = []
        for child in base.iterdir():
            m = _VERSION_RE.match(child.name)
            if m is None or child.name == current_dir or int(m.group(1)) > current_version:
                continue
            if m.group(2) is not None and not self._dead(child.name, str(child), _mtime(child)):
                continue  # a live run is still writing it (it lost the race to this number)
            if int(m.group(1)) == current_version:
                shutil.rmtree(child, ignore_errors=True)
            else:
                older.append((int(m.group(1)), child))
        older.sort()
        for _, child in older[: max(0, len(older) - (self.keep_versions - 1))]:
            shutil.rmtree(child, ignore_errors=True)


class TableWriter:
    """A version being built: new files plus files kept from the current one."""

    def __init__(self, store: TableStore, current: TableManifest | None):
        self.store, self.current = store, current
        self.version = (current.version + 1) if current else 1
        self.entries: list[FileEntry] = []
        self._written: list[str] = []
        lake = store.lake
        self.dir_name = f"v{self.version:06d}-{writer_id()}"
        if lake.is_local:
            self.dir = f"{store._versions}/{self.dir_name}"
            _in_progress.add(self.dir)
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        else:
            self.dir = store.path
        self._seq = 0
        self._sinks: dict[str, pa.NativeFile] = {}

    def _new_name(self) -> str:
        self._seq += 1
        return f"part-{self.version:06d}-{self._seq:05d}-{writer_id()}-{uuid.uuid4().hex[:6]}.parquet"

    def open_file(self, schema: pa.Schema, **options: Any) -> tuple[str, pq.ParquetWriter]:
        """A Parquet writer for one new file, for streaming writes
        (``options``: more ``ParquetWriter`` options)."""
        name = self._new_name()
        path = f"{self.dir}/{name}"
        self._written.append(path)
        if not self.store.lake.is_local:
            _in_progress.add(path)
        sink = self.store.lake.fs.open_output_stream(path)
        self._sinks[name] = sink
        writer = pq.ParquetWriter(sink, schema, compression=self.store.compression, **options)
        return name, writer

    def close_file(
        self, name: str, writer: pq.ParquetWriter, rows: int, key_min: int | None, key_max: int | None
    ) -> None:
        writer.close()
        # ParquetWriter does not close a stream it was handed; on S3 the upload
        # completes only here.
        self._sinks.pop(name).close()
        path = f"{self.dir}/{name}"
        size = self.store.lake.fs.get_file_info(path).size or 0
        self.entries.append(FileEntry(name=name, rows=rows, bytes=size, key_min=key_min, key_max=key_max))

    def write_table(self, table: pa.Table, key: str | None = None) -> FileEntry:
        name, writer = self.open_file(table.schema)
        writer.write_table(table)
        kmin = kmax = None
        if key is not None and table.num_rows:
            col = table.column(key)
            kmin, kmax = int(pa.compute.min(col).as_py()), int(pa.compute.max(col).as_py())
        self.close_file(name, writer, table.num_rows, kmin, kmax)
        return self.entries[-1]

    def keep(self, entry: FileEntry) -> None:
        """Carry a file of the current version into the new one unchanged."""
        assert self.current is not None
        if self.store.lake.is_local:
            src = self.store.file_path(self.current, entry.name)
            dst = f"{self.dir}/{entry.name}"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
                self._written.append(dst)  # a copy: made durable at the commit
        self.entries.append(entry)

    def commit(
        self, schema: pa.Schema, state: dict[str, Any] | None = None, background_gc: bool = False
    ) -> TableManifest:
        """Publish: after this returns, every reader sees the new version.
        ``background_gc``: versions older than ``keep_versions`` are removed
        by a thread (``TableStore.wait_gc`` waits for it), so that the caller
        goes on meanwhile; unlinking the files of a replaced version is disk
        work (0.05-0.1 s for 200 MB). A process that ends before it is done
        leaves old versions behind, which no reader is sent to and the next
        commit removes."""
        manifest = TableManifest(
            table=self.store.table,
            version=self.version,
            rows=sum(e.rows for e in self.entries),
            files=list(self.entries),
            schema_b64=encode_schema(schema),
            created_at=datetime.now(UTC).isoformat(),
            state=state or {},
            dir=self.dir_name if self.store.lake.is_local else None,
        )
        lake = self.store.lake
        if lake.is_local:
            # only the files written for this version: a kept file is a hard
            # link to a file made durable by an earlier publish (the link
            # itself is made durable with the folder, by the manifest's write)
            written = set(self._written)
            for e in self.entries:
                if f"{self.dir}/{e.name}" in written:
                    _fsync_file(f"{self.dir}/{e.name}")
            lake.write_json(f"{self.dir}/{MANIFEST}", manifest.to_json())
            failpoints.hit("publish.before_swap", self.store.table)
            link = Path(self.store.path)
            if link.exists() and not link.is_symlink():
                raise LakeError(f"{link} is a folder, not a published table; move it away first")
            tmp_link = link.with_name(temp_name(link.name, "swap"))
            os.symlink(os.path.relpath(self.dir, link.parent), tmp_link)
            failpoints.hit("publish.after_link", self.store.table)
            os.replace(tmp_link, link)
            fsync_dir(str(link.parent))
            _in_progress.discard(self.dir)
            failpoints.hit("publish.after_swap", self.store.table)
            self.store.wait_gc()
            if background_gc:
                gc = threading.Thread(
                    target=self.store._gc_local,
                    args=(self.version, self.dir_name),
                    name=f"gc-{self.store.table}",
                    daemon=True,
                )
                gc.start()
                self.store._gc = gc
            else:
                self.store._gc_local(self.version, self.dir_name)
        else:
            failpoints.hit("publish.before_swap", self.store.table)
            lake.write_json(f"{self.store.path}/{MANIFEST}", manifest.to_json())
            _in_progress.difference_update(self._written)
            failpoints.hit("publish.after_swap", self.store.table)
            # the files the new version replaced are garbage whoever wrote them
            kept = {e.name for e in self.entries}
            for e in self.current.files if self.current else []:
                if e.name not in kept:
                    lake.delete_file(f"{self.store.path}/{e.name}")
            self.store._clean_leftovers(manifest)
        return manifest

    def abort(self) -> None:
        """Drop what was staged; the current version stays as it was."""
        lake = self.store.lake
        if lake.is_local:
            shutil.rmtree(self.dir, ignore_errors=True)
            _in_progress.discard(self.dir)
        else:
            for path in self._written:
                lake.delete_file(path)
            _in_progress.difference_update(self._written)


def _mtime(path: Path) -> float | None:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return None


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
