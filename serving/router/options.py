"""What the dashboard's pickers offer, read from the served version's artifact.

The model server's v2 metadata (``GET /v2/models/roi``) names the version and
the tensors, not the regions, vehicle models, segments or incentive types the
model can score. Until it does, the router reads them from the artifact the
serving version was loaded from (``context.parquet`` and
``preprocessing.json``, see ``autoroi.model.artifact``) with the same rules as
the server's request checks (``autoroi.serving.validation.Vocabulary``), so
every pair the dashboard offers is one the server accepts.

The document (``GET /options``)::

    {"version": "v...", "regions": [...], "segments": [...],
     "vehicle_models": [{"name": "Pico", "segment": "compact", "msrp": 21500.0}, ...],
     "pairs": [["Northeast", "Pico"], ...],          # servable (region, vehicle model)
     "incentive_types": ["cash_rebate", ...],        # with training data; "none" left out
     "weeks": {"first": "2023-11-27", "last": "2026-11-23"}}
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.fs as pafs

from autoroi.lake.storage import Lake

CONTEXT_FILE = "context.parquet"
PREPROCESSING_FILE = "preprocessing.json"


def artifact_location(doc: dict[str, Any], lake: Lake | None) -> tuple[pafs.FileSystem, str]:
    """Filesystem and folder of the serving version's artifact: the one
    ``endpoint.json`` names (``artifact``), else the registry's folder of the
    version in ``lake``."""
    from autoroi.registry import version_path
    from autoroi.registry.store import ARTIFACT_DIR

    artifact = doc.get("artifact")
    if artifact:
        artifact = str(artifact)
        if artifact.startswith("s3://"):
            if lake is None or lake.is_local:
                raise LookupError(f"the artifact {artifact} is on S3: start the router with --lake s3://...")
            return lake.fs, artifact.removeprefix("s3://").rstrip("/")
        return pafs.LocalFileSystem(), artifact.removeprefix("file://").rstrip("/")
    if lake is None:
        raise LookupError("endpoint.json names no artifact and the router has no --lake")
    return lake.fs, f"{version_path(lake, str(doc.get('version')))}/{ARTIFACT_DIR}"


def report_location(doc: dict[str, Any], lake: Lake | None) -> tuple[pafs.FileSystem, str]:
    """``<lake>/models/roi/<version>/report.html`` of the serving version; without
    a lake, the report beside a registry artifact (``.../<version>/model``)."""
    from autoroi.registry import version_path
    from autoroi.registry.store import ARTIFACT_DIR, REPORT_FILE

    version = str(doc.get("version"))
    if lake is not None:
        return lake.fs, f"{version_path(lake, version)}/{REPORT_FILE}"
    artifact = str(doc.get("artifact") or "").rstrip("/")
    parent, _, leaf = artifact.rpartition("/")
    if artifact and not artifact.startswith("s3://") and leaf == ARTIFACT_DIR and parent.endswith(version):
        return pafs.LocalFileSystem(), f"{parent.removeprefix('file://')}/{REPORT_FILE}"
    raise LookupError("the router was started without --lake, so it cannot find the report")


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        data: bytes = f.read()
    return data


def read_options(fs: pafs.FileSystem, folder: str, version: str | None) -> dict[str, Any]:
    """The options document (module docstring) of the artifact in ``folder``."""
    import pyarrow.parquet as pq

    from autoroi.serving.options import CONTEXT_COLUMNS, options_document

    with fs.open_input_file(f"{folder}/{CONTEXT_FILE}") as f:
        table = pq.read_table(f, columns=CONTEXT_COLUMNS)
    doc = json.loads(read_bytes(fs, f"{folder}/{PREPROCESSING_FILE}"))
    seen = (doc.get("metadata") or {}).get("incentive_types_seen")
    return options_document(table.to_pandas(), seen, version or doc.get("version"))
