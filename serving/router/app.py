"""The local endpoint: one stable address in front of whichever model server
version serves now (``<state_dir>/endpoint.json``, written by the deploy
pipeline), plus the dashboard's static files on the same origin.

Besides ``/v1`` and ``/v2`` (forwarded) it answers ``GET /endpoint`` (the
serving version), ``GET /options`` (what the dashboard's pickers offer, read
from the serving version's artifact: ``options.py``) and ``GET /report`` (the
serving version's ``report.html`` from the registry in the lake).

On a cluster KServe's ingress does this job; locally the deploy pipeline's
promotion is an atomic replace of the endpoint file, which this app re-reads
when it changes, so a version swap drops no request. A request that finds the
old server already gone is retried once against the new one. An endpoint file
may list several servers of one version (``urls``, replicas): requests go to
them in turn (round robin), as a Kubernetes Service spreads them over pods.

With ``sink_url`` it is also the payload logger KServe's agent is on a
cluster: every v1/v2 prediction answered 200 is posted, after the answer has
gone, to the prediction sink (``payload_log.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoroi.errors import AutoroiError
from serving.router.health import health_route
from serving.router.payload_log import Answered, PayloadLogger, request_id

if TYPE_CHECKING:
    from autoroi.lake.storage import Lake

log = logging.getLogger(__name__)

ENDPOINT_FILE = "endpoint.json"
NO_MODEL = "no model version is deployed locally: approve one (autoroi approve VERSION --by NAME)"
HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade"}
PREDICT_PATH = re.compile(r"^/(v1/models/[^/]+:predict|v2/models/[^/]+(/versions/[^/]+)?/infer)$")


class Backend:
    """The serving model server, re-read when ``endpoint.json`` changes."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / ENDPOINT_FILE
        self._stamp: int | None = None
        self.doc: dict[str, Any] | None = None

    def current(self, force: bool = False) -> dict[str, Any] | None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self.doc = None, None
            return None
        if force or stamp != self._stamp:
            try:
                self.doc = json.loads(self.path.read_text())
                self._stamp = stamp
            except (OSError, json.JSONDecodeError):
                pass  # mid-replace on an odd filesystem: keep the previous document
        return self.doc


def build_app(
    state_dir: str | Path,
    static_dir: str | Path | None = None,
    timeout_s: float = 30.0,
    lake: Lake | None = None,
    sink_url: str | None = None,
) -> Starlette:
    """``lake``: the registry's lake, for ``/report`` (and ``/options`` when
    ``endpoint.json`` names no artifact); ``sink_url``: the prediction sink
    (``None``: predictions are not logged)."""
    backend = Backend(Path(state_dir))
    client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=64))
    payload_log = PayloadLogger(sink_url) if sink_url else None
    options_cache: dict[tuple[str, str], dict[str, Any]] = {}
    turn = itertools.count()

    async def _log_answer(request: Request, body: bytes, answer: bytes, asked_at: dt.datetime) -> None:
        """After the answer has gone: queue it for the prediction sink."""
        assert payload_log is not None
        payload_log.record(
            Answered(
                request_id(request.headers.get("ce-id")),
                str(request.base_url),
                request.headers.get("content-type"),
                body,
                answer,
                asked_at,
                dt.datetime.now(dt.UTC),
            )
        )

    async def forward(request: Request) -> Response:
        asked_at = dt.datetime.now(dt.UTC)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        start = next(turn)
        for attempt in (0, 1):
            doc = backend.current(force=attempt > 0)
            if doc is None:
                return JSONResponse(
                    {"error": NO_MODEL},
                    status_code=503,
                )
            replicas = doc.get("urls") or [doc["url"]]
            url = f"{replicas[(start + attempt) % len(replicas)]}{request.url.path}"
            try:
                upstream = await client.request(
                    request.method, url, content=body, headers=headers, params=request.query_params
                )
            except httpx.TransportError as e:
                if attempt == 0:
                    continue  # swapped or a replica gone: read the endpoint again, ask the next one
                return JSONResponse(
                    {"error": f"the model server of {doc.get('version')} does not answer", "cause": repr(e)},
                    status_code=502,
                )
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in HOP_HEADERS | {"content-encoding"}
            }
            out["x-autoroi-model-version"] = str(doc.get("version"))
            background = None
            if (
                payload_log is not None
                and upstream.status_code == 200
                and PREDICT_PATH.match(request.url.path)
            ):
                background = BackgroundTask(_log_answer, request, body, upstream.content, asked_at)
            return Response(
                upstream.content, status_code=upstream.status_code, headers=out, background=background
            )
        raise AssertionError("unreachable")

    async def endpoint(request: Request) -> Response:
        doc = backend.current()
        if doc is None:
            return JSONResponse({"version": None}, status_code=503)
        return JSONResponse({"version": doc.get("version"), "promoted_at": doc.get("promoted_at")})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def options(request: Request) -> Response:
        from serving.router.options import artifact_location, read_options

        doc = backend.current()
        if doc is None:
            return JSONResponse({"error": NO_MODEL}, status_code=503)
        version = str(doc.get("version"))
        key = (version, str(doc.get("artifact")))
        if key not in options_cache:
            try:
                fs, folder = artifact_location(doc, lake)
                options_cache.clear()
                options_cache[key] = await run_in_threadpool(read_options, fs, folder, version)
            except (LookupError, OSError, ValueError, KeyError, AutoroiError) as e:
                log.warning("no options for %s: %s", version, e)
                return JSONResponse(
                    {"error": f"cannot read the options of {version} from its artifact: {e}"},
                    status_code=503,
                )
        return JSONResponse(options_cache[key])

    async def report(request: Request) -> Response:
        from serving.router.options import read_bytes, report_location

        doc = backend.current()
        if doc is None:
            return HTMLResponse(f"<p>{html.escape(NO_MODEL)}</p>", status_code=404)
        version = str(doc.get("version"))
        try:
            fs, path = report_location(doc, lake)
            body = await run_in_threadpool(read_bytes, fs, path)
        except (LookupError, OSError, AutoroiError) as e:
            text = f"no report for model version {version}: {e}"
            return HTMLResponse(f"<p>{html.escape(text)}</p>", status_code=404)
        return HTMLResponse(body, headers={"x-autoroi-model-version": version})

    methods = ["GET", "POST"]
    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/endpoint", endpoint),
        Route("/options", options),
        Route("/report", report),
        Route("/health", health_route(backend.current, lake)),
        Route("/v1/{path:path}", forward, methods=methods),
        Route("/v2/{path:path}", forward, methods=methods),
        Route("/v2", forward, methods=methods),
    ]
    if static_dir is not None and Path(static_dir).is_dir():
        routes.append(Mount("/", StaticFiles(directory=str(static_dir), html=True)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if payload_log is not None:
            await payload_log.aclose()
        await client.aclose()

    return Starlette(routes=routes, lifespan=lifespan)
