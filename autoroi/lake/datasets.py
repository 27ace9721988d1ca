"""Sets of tables as folders: a lake zone, or a step's output artifact.

Two shapes, both readable with plain ``pyarrow.dataset``:

- a lake zone (``<lake>/raw/``, ``<lake>/curated/``): one published
  :class:`~autoroi.lake.tables.TableStore` per table, read through its manifest;
- a table folder (a KFP ``Dataset`` artifact between steps):
  ``<path>/<table>/part-00000.parquet`` per table, plus bookkeeping files whose
  names start with ``_`` or ``.`` (``_report.json``), which Parquet readers skip.

Artifacts are local paths (KFP mounts remote artifact stores), so the folder
helpers use the local file system.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from autoroi.errors import LakeError
from autoroi.lake.storage import Lake
from autoroi.lake.tables import TableStore

PART_FILE = "part-00000.parquet"
REPORT_FILE = "_report.json"
ROW_GROUP_ROWS = 1_000_000
_TABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


def _is_bookkeeping(name: str) -> bool:
    return name.startswith(("_", "."))


def zone_tables(lake: Lake, zone: str) -> list[str]:
    """Names of the published tables of a zone (those with a manifest), sorted."""
    names = []
    for info in lake.list_dir(lake.path(zone)):
        name = info.base_name
        if _is_bookkeeping(name) or not _TABLE_NAME.fullmatch(name):
            continue
        if TableStore(lake, zone, name).manifest() is not None:
            names.append(name)
    return sorted(names)


def read_zone(
    lake: Lake, zone: str, columns: Mapping[str, Sequence[str]] | None = None
) -> dict[str, pa.Table]:
    """Every published table of ``zone``, each one whole version.

    ``columns``: read only these tables, and of each only the listed columns
    that exist (a column the table lacks is skipped, not an error)."""
    out: dict[str, pa.Table] = {}
    for name in zone_tables(lake, zone):
        store = TableStore(lake, zone, name)
        manifest = store.manifest()
        if manifest is None:  # removed since it was listed
            continue
        if columns is None:
            out[name] = store.read(manifest)
            continue
        if name not in columns:
            continue
        present = set(manifest.schema.names)
        wanted = [c for c in columns[name] if c in present]
        out[name] = store.read(manifest, columns=wanted)
    return out


def write_table_dir(path: str | Path, tables: Mapping[str, pa.Table], compression: str = "zstd") -> None:
    """``<path>/<table>/part-00000.parquet`` for each table. Each file is
    written under a temporary name and renamed, so a reader never sees half a
    file; older ``part-*`` files of the same table are removed."""
    root = Path(path)
    codec = None if compression == "none" else compression
    for name, table in tables.items():
        if not _TABLE_NAME.fullmatch(name):
            raise LakeError(f"invalid table name {name!r}")
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{PART_FILE}.tmp"
        pq.write_table(table, tmp, compression=codec, row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, folder / PART_FILE)
        for old in folder.glob("part-*.parquet"):
            if old.name != PART_FILE:
                old.unlink()


def read_table_dir(path: str | Path) -> dict[str, pa.Table]:
    """The tables of a table folder: each subfolder (not ``_``/``.``) is one
    table, read as a Parquet dataset (hive partitions allowed)."""
    root = Path(path)
    if not root.is_dir():
        raise LakeError(f"table folder {root} does not exist")
    out: dict[str, pa.Table] = {}
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not _is_bookkeeping(sub.name):
            out[sub.name] = read_dataset_dir(sub)
    return out


def read_dataset_dir(path: str | Path) -> pa.Table:
    """All Parquet files under ``path`` (recursively, ``_``/``.`` names
    skipped) as one table; ``key=value`` folders become columns."""
    if not Path(path).is_dir():
        raise LakeError(f"dataset folder {path} does not exist")
    return pads.dataset(str(path), format="parquet", partitioning="hive").to_table()


def write_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """``<path>/_report.json``, written atomically."""
    target = Path(path) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, target)
    return target
