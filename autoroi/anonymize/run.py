"""The two steps over a lake and staged folders, as the components call them.

``anonymize_lake``: ``<lake>/raw/`` -> a staged table folder (nothing in the
lake changes; ``publish`` copies curated tables into ``<lake>/curated/`` only
after the scan and validation passed); beside it, ``identifiers_from_raw``
fingerprints the raw zone's identifiers for the scan. ``scan_staged``: every
staged output against those fingerprints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from autoroi.anonymize.core import (
    DROP_DIRECT_IDENTIFIER,
    DROP_NOT_ALLOWED,
    AnonymizeReport,
    anonymize_tables,
)
from autoroi.anonymize.pseudonym import load_hmac_key
from autoroi.anonymize.scan import (
    IdentifierSet,
    ScanReport,
    collect_identifiers,
    identifier_columns,
    scan_for_pii,
)
from autoroi.config import AutoroiConfig, Treatment
from autoroi.errors import AnonymizationError
from autoroi.lake.datasets import read_dataset_dir, read_table_dir, read_zone, write_report, write_table_dir
from autoroi.lake.storage import Lake
from autoroi.source import schema as source_schema

log = logging.getLogger(__name__)

RAW_ZONE = "raw"


def anonymize_lake(lake: Lake, cfg: AutoroiConfig, out_dir: str | Path) -> AnonymizeReport:
    """Anonymize every raw table into ``out_dir`` (``<table>/part-00000.parquet``
    and ``_report.json``). The key is loaded first: without one nothing is read."""
    key = load_hmac_key(cfg.anonymize)
    raw = read_zone(lake, RAW_ZONE)
    if not raw:
        raise AnonymizationError(f"the raw zone of lake {lake.uri} holds no tables; run replicate first")
    tables, report = anonymize_tables(raw, cfg.anonymize, key)
    write_table_dir(out_dir, tables, compression=cfg.replication.compression)
    from autoroi.release import raw_watermarks  # the master manifest names the source state it came from

    write_report(out_dir, {**report.to_dict(), "source": raw_watermarks(lake)})
    log.info(
        "anonymized %d table(s) into %s (%d dropped whole, %d new column(s) held back) in %.1fs",
        len(tables),
        out_dir,
        len(report.dropped_tables),
        len(report.new_columns),
        report.seconds,
    )
    return report


def json_strings(doc: Any) -> tuple[list[str], list[str]]:
    """Every key and every string value of a JSON document."""
    keys: list[str] = []
    values: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            values.append(node)
        elif isinstance(node, dict):
            keys.extend(str(k) for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys, values


def _json_tables(folder: Path, prefix: str) -> dict[str, pa.Table]:
    """The JSON files a step leaves beside its data (reports, manifests) are
    published too, so they are scanned: their keys and string values as two
    text columns."""
    out = {}
    for path in sorted(folder.rglob("*.json")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            keys, values = json_strings(json.loads(text))
        except ValueError:
            keys, values = [], [text]
        rel = path.relative_to(folder).as_posix()
        out[f"{prefix}/{rel}"] = pa.table(
            {
                "key": pa.array(keys + [None] * (len(values) - len(keys)), pa.string()),
                "value": pa.array(values + [None] * (len(keys) - len(values)), pa.string()),
            }
        )
    return out


def report_terms(outputs: dict[str, pa.Table]) -> set[str]:
    """Words the reports beside the data are made of: JSON keys, the source
    schema's table and column names, treatments and reasons. Not identifiers
    even when someone bears them as a name (a customer called Sales)."""
    terms = {DROP_DIRECT_IDENTIFIER, DROP_NOT_ALLOWED, *get_args(Treatment)}
    for source_table in source_schema.metadata.tables.values():
        terms.add(source_table.name)
        terms.update(c.name for c in source_table.columns)
    for name, table in outputs.items():
        if name.endswith(".json") and "key" in table.column_names:
            terms.update(table.column("key").drop_null().to_pylist())
    return terms


def staged_outputs(curated_dir: str | Path | None, master_dir: str | Path | None) -> dict[str, pa.Table]:
    """What ``publish`` would write, by report name: ``curated/<table>``,
    ``master``, and the JSON files of both folders."""
    outputs: dict[str, pa.Table] = {}
    if curated_dir is not None:
        outputs.update({f"curated/{n}": t for n, t in read_table_dir(curated_dir).items()})
        outputs.update(_json_tables(Path(curated_dir), "curated"))
    if master_dir is not None:
        outputs["master"] = read_dataset_dir(master_dir)
        outputs.update(_json_tables(Path(master_dir), "master"))
    return outputs


IDENTIFIERS_FILE = "identifiers.parquet"
IDENTIFIERS_REPORT = "identifiers.json"


def identifiers_from_raw(lake: Lake, cfg: AutoroiConfig) -> IdentifierSet:
    """The raw zone's direct identifiers as keyed fingerprints: the step that
    may read raw/ (anonymize) hands these to the scan, which then needs no
    access to raw/ and never sees an identifier in clear text."""
    key = load_hmac_key(cfg.anonymize)
    return collect_identifiers(read_zone(lake, RAW_ZONE, columns=identifier_columns())).keyed(key)


def write_identifiers(out_dir: str | Path, ids: IdentifierSet) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"fingerprint": ids.values}), out / IDENTIFIERS_FILE, compression="zstd")
    (out / IDENTIFIERS_REPORT).write_text(json.dumps(ids.to_dict(), indent=2))


def read_identifiers(in_dir: str | Path) -> IdentifierSet:
    d = Path(in_dir)
    try:
        values = pq.read_table(d / IDENTIFIERS_FILE).column("fingerprint").combine_chunks()
        doc = json.loads((d / IDENTIFIERS_REPORT).read_text())
    except (OSError, KeyError, ValueError) as e:
        raise AnonymizationError(f"the identifier fingerprints in {d} are missing or unreadable: {e}") from e
    if not pa.types.is_uint64(values.type):
        raise AnonymizationError(f"{d / IDENTIFIERS_FILE} does not hold fingerprints (type {values.type})")
    return IdentifierSet(values, dict(doc.get("sources", {})), int(doc.get("exempt", 0)))


def scan_staged(
    identifiers: IdentifierSet,
    curated_dir: str | Path | None,
    master_dir: str | Path | None = None,
    key: bytes | None = None,
) -> ScanReport:
    """The scan of every staged output against the identifiers (keyed ones
    need the pseudonymization ``key``)."""
    if not len(identifiers):
        log.warning("the raw zone held no direct-identifier values: only patterns are checked")
    outputs = staged_outputs(curated_dir, master_dir)
    return scan_for_pii(outputs, identifiers, exempt_terms=report_terms(outputs), key=key)
