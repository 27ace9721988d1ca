"""The KServe ``ModelServer`` that serves :class:`RoiModelServer`, with two
small changes to how KServe decodes requests (its ``DataPlane``):

- a v1 body that ``orjson`` refuses is read again with Python's ``json``,
  which accepts ``NaN`` and ``Infinity`` (what ``json.dumps`` writes for a
  float that is not finite): the scenario checks then name the field
  (``instances[0].incentive_amount: must be finite``) instead of KServe's
  "Unrecognized request format"; a body that is not JSON at all is refused
  with ``field: "body"``;
- KServe's parsing of v2 binary-tensor bodies can fail with ``KeyError`` and
  the like on a malformed body, which would answer 500: those become 400;
- the v2 model metadata lists the served model version in ``versions``.

Every other behaviour (routes, health, metadata, gRPC) is KServe's own.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import kserve
import kserve.model_server
from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import Request
from fastapi.responses import JSONResponse
from kserve.constants.constants import PredictorProtocol
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from starlette.concurrency import run_in_threadpool

from serving.roi_server.errors import RequestRejected, install_error_handlers

log = logging.getLogger(__name__)


class RoiDataPlane(DataPlane):
    """KServe's data plane with the decoding changes of the module docstring."""

    def decode(
        self,
        body: Any,
        headers: Any,
        protocol_version: str = PredictorProtocol.REST_V1.value,
        model_name: str | None = None,
    ) -> Any:
        try:
            return super().decode(body, headers, protocol_version=protocol_version, model_name=model_name)
        except RequestRejected:
            raise
        except InvalidInput as e:
            v1_json = protocol_version.lower() == PredictorProtocol.REST_V1.value and isinstance(body, bytes)
            if not v1_json or has_binary_headers(headers or {}):
                raise RequestRejected("body", str(e)) from e
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError) as e2:
                raise RequestRejected("body", f"not valid JSON: {e2}") from e2
            except RecursionError as e2:  # arrays or objects nested thousands deep
                raise RequestRejected("body", "not valid JSON: nested too deeply") from e2
            return self.decode_cloudevent(parsed)
        except (KeyError, TypeError, ValueError, IndexError, struct.error) as e:
            raise RequestRejected("body", f"not a valid inference request: {type(e).__name__}: {e}") from e

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        meta: dict[str, Any] = await super().model_metadata(model_name)
        version = getattr(self.get_model_from_registry(model_name), "version", None)
        if version:
            meta["versions"] = [str(version)]
        return meta


def build_server(**kwargs: Any) -> kserve.ModelServer:
    """A ``kserve.ModelServer`` (``kwargs`` are its own) with the data plane
    and error handlers of this package. One worker process only: the handlers
    and data plane live in this process, and a KServe deployment scales with
    replicas instead."""
    if int(kwargs.get("workers", 1) or 1) != 1:
        raise ValueError("the roi server runs one worker process; scale with replicas")
    server = kserve.ModelServer(**kwargs)
    server.dataplane = RoiDataPlane(model_registry=server.registered_models)
    install_error_handlers(kserve.model_server.app)
    install_options_route(kserve.model_server.app, server)
    install_plan_route(kserve.model_server.app, server)
    return server


OPTIONS_PATH = "/v2/models/{model_name}/options"


def install_options_route(app: Any, server: kserve.ModelServer) -> None:
    """``GET /v2/models/<name>/options``: the pickers' options of the served
    version (``autoroi.serving.options``). An extension beside the v2 routes:
    the v2 metadata response has no place for them, and the dashboard in a
    cluster (nginx, no router) asks the predictor for them as ``/options``."""

    async def model_options(model_name: str) -> JSONResponse:
        model = server.registered_models.get_model(model_name)
        options = getattr(model, "options", None)
        if model is None or not getattr(model, "ready", False) or options is None:
            return JSONResponse({"error": f"model {model_name} is not ready"}, status_code=503)
        return JSONResponse(options)

    # one route per process, bound to the latest server (tests build several)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != OPTIONS_PATH]
    app.add_api_route(OPTIONS_PATH, model_options, methods=["GET"], response_model=None)


PLAN_PATH = "/v2/models/{model_name}/plan"


def install_plan_route(app: Any, server: kserve.ModelServer) -> None:
    """``POST /v2/models/<name>/plan``: a budget planned over the served
    version's cells (``autoroi.planning.plan_request``'s body; the answer:
    ``model_version``, ``totals`` and every chosen scenario with the serving
    fields), for the dashboard's Plan view. The same planning path as
    ``autoroi plan --version``: the artifact's model and its members."""

    async def model_plan(model_name: str, request: Request) -> JSONResponse:
        from autoroi.model.plan import make_plan, score_options
        from autoroi.planning import PlanRequestError, plan_request

        model = server.registered_models.get_model(model_name)
        if model is None or not getattr(model, "ready", False) or getattr(model, "model", None) is None:
            return JSONResponse({"error": f"model {model_name} is not ready"}, status_code=503)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            return JSONResponse(
                {"error": "bad plan request", "field": "body", "reason": f"not JSON: {e}"}, 400
            )
        try:
            req = plan_request(body, model.options)
        except PlanRequestError as e:
            return JSONResponse({"error": "bad plan request", "field": e.field, "reason": e.reason}, 400)

        def run() -> dict[str, Any]:
            chosen, totals = make_plan(
                req.pairs,
                req.types,
                req.weeks,
                req.amounts,
                lambda scenarios: score_options(model.model, scenarios),
                req.budget,
                req.objective,
                req.min_prob_pays_back,
            )
            chosen = chosen.sort_values("incremental_profit", ascending=False)
            rows = json.loads(chosen.to_json(orient="records", date_format="iso"))
            clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in totals.items()}
            return {"model_version": model.version, "totals": clean, "plan": rows}

        return JSONResponse(await run_in_threadpool(run))

    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != PLAN_PATH]
    app.add_api_route(PLAN_PATH, model_plan, methods=["POST"], response_model=None)
