"""The prediction sink's HTTP face: ``POST /`` takes CloudEvents of KServe's
payload logger in any of the three content modes of the CloudEvents HTTP
binding:

- binary (KServe's agent): attributes in ``ce-*`` headers, the body is the
  request's or answer's JSON;
- structured (``application/cloudevents+json``): one event as JSON;
- batched (``application/cloudevents-batch+json``): a JSON array of events
  (the local endpoint posts these).

It answers 200 ``{"accepted": n}`` once every event is in the journal
(``store.py``); an event it refuses gets a 4xx whose JSON body names the
field (``{"error", "field", "reason"}``, plus ``refused``, the index of each
refused event of a batch, and ``accepted``, how many of the batch's others
were kept); 503 when the journal cannot be written (the sender should try
again).

``GET /healthz`` answers once the journal is replayed, with the counts of
:meth:`PredictionStore.stats`; ``GET /metrics`` is Prometheus's text format.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from autoroi.monitoring.predictions import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    EventError,
    event_from_http,
    event_from_json,
    events_from_batch,
)
from serving.prediction_sink.store import PredictionStore

log = logging.getLogger(__name__)


def _events(request: Request, body: bytes) -> list[Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == BATCH_CONTENT_TYPE:
        return events_from_batch(body)
    if ctype == STRUCTURED_CONTENT_TYPE:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise EventError("body", "not a JSON CloudEvent") from e
        return [event_from_json(doc)]
    return [event_from_http(request.headers, body)]


def build_app(store: PredictionStore) -> Starlette:
    """The sink over ``store``, which the app starts (replay) and closes (flush)."""

    async def receive(request: Request) -> Response:
        try:
            events = _events(request, await request.body())
        except EventError as e:
            store.metrics.events.labels("unknown", "refused").inc()
            log.warning("refused a POST: %s", e)
            return JSONResponse(e.body(), status_code=e.status)
        try:
            results = await store.accept(events)
        except OSError as e:
            log.error("the journal cannot be written: %s", e)
            return JSONResponse({"error": f"the journal cannot be written: {e}"}, status_code=503)
        refused = [(i, e) for i, e in enumerate(results) if e is not None]
        if not refused:
            return JSONResponse({"accepted": len(events)})
        _, first = refused[0]
        body = {
            **first.body(),
            "accepted": len(events) - len(refused),
            "refused": [{"index": i, **e.body()} for i, e in refused],
        }
        return JSONResponse(body, status_code=max(e.status for _, e in refused))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, **store.stats()})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(store.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.close()

    routes = [
        Route("/", receive, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
