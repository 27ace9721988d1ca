"""``GET /health`` of the local endpoint: the dashboard's model-health panel.

The document::

    {"deployed": {"version": "v...", "deployed_at": "...", "age_days": 12.4,
                  "source": "registry" | "endpoint"} | null,
     "history": [<monitor record>, ...],       # oldest first, the newest HISTORY_LIMIT
     "runs": 31,                                # records in the lake, all of them
     "skipped": [{"path": "...", "reason": "..."}],
     "summary": {"status": "ok" | "degraded" | "drift" | "no_data" | null, ...},
     "message": "..."}                          # only when there is nothing to show

The deployed version is the one the endpoint serves (``endpoint.json``); when
it names none, the registry's production version. Its deployment time comes
from the registry's status history when the registry knows that version as
deployed, else from the endpoint's ``promoted_at``. The records are those of
``autoroi monitor show`` (``autoroi.monitoring.history``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from autoroi.errors import AutoroiError

if TYPE_CHECKING:
    from autoroi.lake.storage import Lake

log = logging.getLogger(__name__)

HISTORY_LIMIT = 20
NO_LAKE = "the local endpoint was started without --lake, so it cannot read the monitor's history"
NO_MONITOR = (
    "no monitor has run yet: the monitor step runs in ingest after publish once a model version"
    " is deployed (autoroi run ingest)"
)
NO_DEPLOYMENT = "no model version is deployed: there is nothing to monitor yet"


def _parse(when: Any) -> dt.datetime | None:
    if not when:
        return None
    try:
        t = dt.datetime.fromisoformat(str(when))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def deployed_model(
    lake: Lake | None, endpoint: dict[str, Any] | None, now: dt.datetime
) -> dict[str, Any] | None:
    """The version deployed now, when it was deployed and its age in days."""
    from autoroi.registry import production_version
    from autoroi.registry.store import deployed_at  # the registry's own rule for "when"

    prod = production_version(lake) if lake is not None else None
    version = (endpoint or {}).get("version") or (prod.version if prod else None)
    if not version:
        return None
    if prod is not None and prod.version == version:
        when, source = deployed_at(prod) or None, "registry"
    else:
        when, source = (endpoint or {}).get("promoted_at"), "endpoint"
    t = _parse(when)
    age = None if t is None else max((now - t).total_seconds(), 0.0) / 86400
    return {"version": str(version), "deployed_at": when, "age_days": age, "source": source}


def health_document(
    lake: Lake | None, endpoint: dict[str, Any] | None, now: dt.datetime, limit: int = HISTORY_LIMIT
) -> dict[str, Any]:
    """The module docstring's document, JSON-safe (a record's NaN becomes null)."""
    from autoroi.monitoring.history import read_history, summarize
    from autoroi.registry.store import plain

    deployed = deployed_model(lake, endpoint, now)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    if lake is not None:
        history = read_history(lake)
        records = history.records
        skipped = [asdict(s) for s in history.skipped]
    doc: dict[str, Any] = {
        "now": now.isoformat(timespec="seconds"),
        "deployed": deployed,
        "history": records[-limit:],
        "runs": len(records),
        "skipped": skipped,
        "summary": summarize(records),
    }
    if lake is None:
        doc["message"] = NO_LAKE
    elif not records:
        doc["message"] = NO_MONITOR if deployed else NO_DEPLOYMENT
    out: dict[str, Any] = plain(doc)
    return out


def health_route(
    endpoint: Callable[[], dict[str, Any] | None], lake: Lake | None
) -> Callable[[Request], Awaitable[Response]]:
    """The route's handler; ``endpoint`` returns the current ``endpoint.json``."""

    async def health(request: Request) -> Response:
        try:
            doc = await run_in_threadpool(health_document, lake, endpoint(), dt.datetime.now(dt.UTC))
        except (OSError, AutoroiError) as e:
            log.warning("no model health: %s", e)
            text = f"cannot read the model health from the lake: {e}"
            return JSONResponse({"error": text}, status_code=503)
        return JSONResponse(doc)

    return health
