"""The end of ``ingest``: validate the staged master table, then publish the
curated tables and the master version together.

The steps before write to pipeline artifacts only (staging); nothing reaches
``curated/`` or ``master/`` until validation and the PII scan have passed and
this module's ``publish_ingest`` runs. Its order (curated tables, then the
master version, then ``latest``) means a crash leaves ``latest`` on the old
version, and a re-run completes the publish.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import autoroi
from autoroi.config import AutoroiConfig
from autoroi.lake.datasets import REPORT_FILE
from autoroi.lake.master import MasterStore, PublishResult, content_version
from autoroi.lake.storage import Lake
from autoroi.lake.tables import TableStore
from autoroi.replication.replicate import RAW_ZONE
from autoroi.validation import ValidationReport, validate_master

log = logging.getLogger(__name__)

CURATED_ZONE = "curated"


def read_report(path: str | Path) -> dict[str, Any]:
    """The ``_report.json`` a step left beside its data (empty when absent)."""
    p = Path(path) / REPORT_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def newest_sale_date(curated: dict[str, pa.Table]) -> date | None:
    sales = curated.get("sales")
    if sales is None or sales.num_rows == 0 or "sale_date" not in sales.column_names:
        return None
    value = pc.max(sales.column("sale_date")).as_py()
    return value.date() if isinstance(value, datetime) else value


def check_master(
    lake: Lake, cfg: AutoroiConfig, master: pa.Table, curated: dict[str, pa.Table]
) -> ValidationReport:
    """Validate against the current ``latest`` (drift) and the curated sales
    (coverage)."""
    store = MasterStore(lake)
    previous = store.read() if store.latest() is not None else None
    return validate_master(
        master, cfg.validation, k=cfg.master.k, previous=previous, newest_sale_date=newest_sale_date(curated)
    )


@dataclass
class IngestPublish:
    version: str
    changed: bool
    previous: str | None
    curated_changed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def publish_ingest(
    lake: Lake,
    cfg: AutoroiConfig,
    curated: dict[str, pa.Table],
    master: pa.Table,
    master_report: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> IngestPublish:
    """Curated tables (each skipped when its content is unchanged), then the
    master version and ``latest``. ``source``: the raw tables' versions and
    watermarks as ``anonymize`` read them (:func:`raw_watermarks`); on a
    cluster this step has no access to raw/, so it takes them from there."""
    changed_tables = []
    for name in sorted(curated):
        if _publish_curated(lake, cfg, name, curated[name]):
            changed_tables.append(name)
    manifest = {
        "k": cfg.master.k,
        "anonymity": (master_report or {}).get("anonymity", master_report or {}),
        "source": source if source is not None else raw_watermarks(lake),
        "curated_rows": {name: t.num_rows for name, t in sorted(curated.items())},
        "code_version": code_version(),
    }
    result: PublishResult = MasterStore(lake, cfg.replication.compression).publish(master, manifest)
    return IngestPublish(result.version, result.changed, result.previous, changed_tables)


def _publish_curated(lake: Lake, cfg: AutoroiConfig, name: str, table: pa.Table) -> bool:
    store = TableStore(lake, CURATED_ZONE, name, cfg.replication.compression, cfg.replication.keep_versions)
    digest = content_version(table)
    current = store.manifest()
    if current is not None and current.state.get("content_version") == digest:
        return False
    writer = store.begin()
    try:
        step = cfg.replication.file_rows
        for start in range(0, max(table.num_rows, 1), step):
            writer.write_table(table.slice(start, step))
        writer.commit(table.schema, state={"content_version": digest})
    except BaseException:
        writer.abort()
        raise
    log.info("curated/%s published (%d rows)", name, table.num_rows)
    return True


def raw_watermarks(lake: Lake) -> dict[str, Any]:
    """Per raw table: its lake version, rows and replication watermark, so a
    master version names the source state it was built from."""
    out: dict[str, Any] = {}
    for info in lake.list_dir(lake.path(RAW_ZONE)):
        name = info.base_name
        if name.startswith(("_", ".")):
            continue
        m = TableStore(lake, RAW_ZONE, name).manifest()
        if m is None:
            continue
        out[name] = {"version": m.version, "rows": m.rows, "watermark": m.state.get("watermark")}
    return out


def code_version() -> str:
    """Package version plus the commit the image was built from, when the
    build recorded one (``AUTOROI_GIT_SHA``)."""
    sha = os.environ.get("AUTOROI_GIT_SHA", "").strip()
    return f"{autoroi.__version__}+{sha[:12]}" if sha else autoroi.__version__
