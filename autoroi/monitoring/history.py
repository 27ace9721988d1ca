"""The monitor's history: ``<lake>/monitoring/roi/<master_version>.json``, one
record per master version that the ``monitor`` step of ``ingest`` judged the
deployed model on. ``autoroi monitor show`` and the dashboard's health panel
(``GET /health`` of the local endpoint) both read it here, so they show the
same records in the same order.

A record (written atomically by the monitor step) carries ``master_version``,
``created_at``, ``model_version``, ``status`` (``ok`` | ``degraded`` |
``drift`` | ``no_data``), ``reasons``, ``accuracy`` (``wape``,
``reference_wape``, ``ratio``, ``by_week``, ``by_group``, ``lift``) and
``drift`` (``statistic``, ``threshold``, ``features``, ``unknown_categories``,
``drifted``). Readers here take every key as optional: a record from an older
or newer monitor still shows what it has.

A file that is not a readable JSON object (a hand edit, a disk fault) is named
in a warning and left out, so that one bad file does not hide the rest of the
history. Names starting with ``_`` or ``.`` are bookkeeping (writers'
temporaries), as everywhere in the lake.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from autoroi.errors import LakeError
from autoroi.lake.storage import Lake

log = logging.getLogger(__name__)

MONITORING_ZONE = "monitoring"
MODEL_NAME = "roi"
STATUSES = ("ok", "degraded", "drift", "no_data")


@dataclass(frozen=True)
class Skipped:
    """A record file left out of the history, and why."""

    path: str  # for people: a local path or s3://...
    reason: str


@dataclass(frozen=True)
class History:
    records: list[dict[str, Any]]  # oldest first
    skipped: list[Skipped]


def history_root(lake: Lake) -> str:
    return lake.path(MONITORING_ZONE, MODEL_NAME)


def read_history(lake: Lake, last: int | None = None) -> History:
    """Every readable record under ``<lake>/monitoring/roi/``, oldest first (by
    ``created_at``, then master version); ``last``: only the newest ``last``.
    Unreadable files are logged as warnings and listed in ``skipped``."""
    records: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for info in lake.list_dir(history_root(lake)):
        name = info.base_name
        if info.type != pafs.FileType.File or name.startswith((".", "_")) or not name.endswith(".json"):
            continue
        shown = lake.display(info.path)
        try:
            doc = lake.read_json(info.path)
        except (ValueError, LakeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = f"not readable as JSON ({' '.join(str(e).split())[:200]})"
        else:
            if doc is None:  # removed between the listing and the read
                continue
            if isinstance(doc, dict):
                doc.setdefault("master_version", name.removesuffix(".json"))
                records.append(doc)
                continue
            reason = f"a JSON {type(doc).__name__}, not a monitor record (an object)"
        log.warning("skipped the monitor record %s: %s", shown, reason)
        skipped.append(Skipped(shown, reason))
    records.sort(key=lambda r: (str(r.get("created_at") or ""), str(r.get("master_version"))))
    if last is not None:
        records = records[-last:] if last > 0 else []
    return History(records, skipped)


def number(v: Any) -> float | None:
    """A finite number from a record, else ``None`` (records are JSON: NaN may
    arrive as null, a string or not at all)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def accuracy(record: dict[str, Any]) -> dict[str, float | None]:
    """The headline figures: realized units WAPE, the backtest's WAPE it is
    held against, their ratio, and realized / predicted program lift."""
    acc = _obj(record.get("accuracy"))
    wape, ref = number(acc.get("wape")), number(acc.get("reference_wape"))
    ratio = number(acc.get("ratio"))
    if ratio is None and wape is not None and ref:
        ratio = wape / ref
    return {
        "wape": wape,
        "reference_wape": ref,
        "ratio": ratio,
        "lift_ratio": number(_obj(acc.get("lift")).get("ratio")),
    }


def drift_flags(record: dict[str, Any]) -> dict[str, Any]:
    """The features over the drift threshold (with their statistic) and the
    categories the model never saw, from either of the record's lists."""
    drift = _obj(record.get("drift"))
    threshold = number(drift.get("threshold"))
    flagged: list[dict[str, Any]] = []
    for f in _list(drift.get("features")):
        if isinstance(f, dict) and f.get("drifted") and f.get("feature") is not None:
            flagged.append({"feature": str(f["feature"]), "value": number(f.get("value"))})
    named = {f["feature"] for f in flagged}
    for name in _list(drift.get("drifted")):
        if str(name) not in named:
            flagged.append({"feature": str(name), "value": None})
            named.add(str(name))
    unknown = {
        str(col): [str(v) for v in values]
        for col, values in _obj(drift.get("unknown_categories")).items()
        if _list(values)
    }
    return {
        "statistic": drift.get("statistic"),
        "threshold": threshold,
        "features": flagged,
        "unknown_categories": unknown,
    }


def reasons(record: dict[str, Any]) -> list[str]:
    return [str(r) for r in _list(record.get("reasons"))]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the latest record says, for a glance: its status, figures, drift
    flags and reasons, and how many runs ended in each status."""
    counts = {s: 0 for s in STATUSES}
    for r in records:
        status = str(r.get("status"))
        counts[status] = counts.get(status, 0) + 1
    if not records:
        return {"runs": 0, "status": None, "statuses": counts}
    latest = records[-1]
    return {
        "runs": len(records),
        "status": latest.get("status"),
        "master_version": latest.get("master_version"),
        "created_at": latest.get("created_at"),
        "model_version": latest.get("model_version"),
        **accuracy(latest),
        "drift": drift_flags(latest),
        "reasons": reasons(latest),
        "statuses": counts,
    }
