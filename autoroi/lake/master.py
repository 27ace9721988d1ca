"""Versions of the master table: ``<lake>/master/<version>/`` and the ``latest`` pointer.

The version *is* a content hash of the table, so the same data always gets the
same version and re-publishing unchanged data is a no-op that leaves ``latest``
where it was. A change of ``latest`` is what the training trigger watches.

Layout of one version::

    master/<version>/data/part-<year>.parquet   the table, one file per year of week_start
    master/<version>/manifest.json              written last: a version exists iff it has one
    master/latest                               {"version": ..., "path": ..., "updated_at": ...}

Locally a version is built in ``master/.<version>.<writer>-<r>.staging/`` and
renamed into place; on S3 a marker naming the writer goes first, then the data
objects, and ``manifest.json`` is the commit point. ``latest`` is one atomic
JSON write, done last. The next publish removes what dead writers left
(``autoroi.lake.leftovers``), never what a live one is writing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from autoroi.errors import LakeError
from autoroi.lake import failpoints
from autoroi.lake.leftovers import temp_name
from autoroi.lake.storage import Lake, fsync_dir

log = logging.getLogger(__name__)

MASTER_ZONE = "master"
LATEST = "latest"
MANIFEST = "manifest.json"
DATA_DIR = "data"


def content_version(table: pa.Table) -> str:
    """A hash of schema and values, independent of how the Parquet files
    happen to be encoded (library versions, row-group sizes)."""
    h = hashlib.sha256()
    h.update(table.schema.remove_metadata().to_string().encode())
    if table.num_rows:
        # combine_chunks: chunking must not change the hash
        frame = table.combine_chunks().to_pandas(types_mapper=pd.ArrowDtype)
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class PublishResult:
    version: str
    changed: bool
    previous: str | None
    path: str


class MasterStore:
    def __init__(self, lake: Lake, compression: str = "zstd"):
        self.lake = lake
        self.compression = None if compression == "none" else compression
        self.root = lake.path(MASTER_ZONE)

    # -- reading -----------------------------------------------------------
    def latest(self) -> dict[str, Any] | None:
        """The ``latest`` pointer, or ``None`` before the first publish."""
        return self.lake.read_json(f"{self.root}/{LATEST}")

    def manifest(self, version: str) -> dict[str, Any] | None:
        return self.lake.read_json(f"{self.root}/{version}/{MANIFEST}")

    def data_path(self, version: str) -> str:
        return f"{self.root}/{version}/{DATA_DIR}"

    def read(self, version: str | None = None) -> pa.Table:
        """One published version (``latest`` by default)."""
        if version is None:
            pointer = self.latest()
            if pointer is None:
                raise LakeError(f"no master table has been published in lake {self.lake.uri}")
            version = str(pointer["version"])
        if self.manifest(version) is None:
            raise LakeError(f"master version {version} does not exist in lake {self.lake.uri}")
        return pads.dataset(self.data_path(version), format="parquet", filesystem=self.lake.fs).to_table()

    def versions(self) -> list[dict[str, Any]]:
        """Manifests of every complete version, oldest first."""
        out = []
        for info in self.lake.list_dir(self.root):
            name = info.base_name
            if info.type.name != "Directory" or name.startswith((".", "_")):
                continue
            doc = self.manifest(name)
            if doc is not None:
                out.append(doc)
        return sorted(out, key=lambda d: str(d.get("created_at", "")))

    # -- writing -----------------------------------------------------------
    def publish(self, table: pa.Table, manifest: dict[str, Any]) -> PublishResult:
        """Store ``table`` as its content version (unless it exists) and move
        ``latest`` to it (unless it is there already)."""
        version = content_version(table)
        self._clean_leftovers()
        pointer = self.latest()
        previous = str(pointer["version"]) if pointer else None
        path = self.data_path(version)
        if self.manifest(version) is None:
            doc = {
                **manifest,
                "version": version,
                "rows": table.num_rows,
                "schema": [{"name": f.name, "type": str(f.type)} for f in table.schema],
                "created_at": datetime.now(UTC).isoformat(),
                "previous": previous,
            }
            self._write_version(version, table, doc)
        else:
            log.info("master version %s exists already; not rewritten", version)
        if previous == version:
            log.info("master table unchanged (version %s); latest not moved", version)
            return PublishResult(version, False, previous, path)
        failpoints.hit("master.before_latest")
        self.lake.write_json(
            f"{self.root}/{LATEST}",
            {"version": version, "path": f"{MASTER_ZONE}/{version}/{DATA_DIR}", "updated_at": _now()},
        )
        log.info("master table published: version %s (previous %s)", version, previous)
        return PublishResult(version, True, previous, path)

    def _write_version(self, version: str, table: pa.Table, doc: dict[str, Any]) -> None:
        if self.lake.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            staging = f"{self.root}/{temp_name(version, 'staging')}"
            try:
                self._write_files(staging, table)
                failpoints.hit("master.before_manifest")
                self.lake.write_json(f"{staging}/{MANIFEST}", doc)
                final = f"{self.root}/{version}"
                if os.path.isdir(final):  # an incomplete leftover (no manifest): replace it
                    shutil.rmtree(final)
                os.rename(staging, final)
                fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        else:
            base = f"{self.root}/{version}"
            marker = self.lake.mark_unfinished(base)
            self._write_files(base, table)
            failpoints.hit("master.before_manifest")
            self.lake.write_json(f"{base}/{MANIFEST}", doc)
            self.lake.delete_file(marker)

    def _write_files(self, base: str, table: pa.Table) -> None:
        data = f"{base}/{DATA_DIR}"
        self.lake.fs.create_dir(data, recursive=True)
        if "week_start" in table.column_names and table.num_rows:
            years = pc.year(table.column("week_start"))
            for year in sorted(set(years.to_pylist())):
                part = table.filter(pc.equal(years, year))
                self._write_file(f"{data}/part-{year}.parquet", part)
        else:
            self._write_file(f"{data}/part-00000.parquet", table)

    def _write_file(self, path: str, table: pa.Table) -> None:
        with self.lake.fs.open_output_stream(path) as sink:
            pq.write_table(table, sink, compression=self.compression)
        if self.lake.is_local:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _clean_leftovers(self) -> None:
        """Staging folders and temporary files of dead publishes; on S3,
        version folders they left without a manifest."""
        self.lake.sweep(self.root)
        if not self.lake.is_local:
            self.lake.sweep_unfinished(self.root, MANIFEST)


def _now() -> str:
    return datetime.now(UTC).isoformat()
