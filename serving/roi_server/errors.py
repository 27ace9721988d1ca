"""How a refused request reaches the client.

KServe 0.21 maps its own exception types to status codes
(``kserve.errors``: ``InvalidInput`` -> 400 with ``{"error": "..."}``) and
has no way for a model to choose another status or body (kserve/kserve#3396).
:class:`RequestRejected` is an ``InvalidInput`` (so anything that handles
KServe's type still handles it) with the field, the reason and the status;
:func:`install_error_handlers` registers a handler for exactly this type, and
one for FastAPI's own request validation (a v2 body that is not an inference
request), so that every refusal answers with the contract's body
``{"error": ..., "field": ..., "reason": ...}``; and one for FastAPI's and
Starlette's ``HTTPException`` (a body FastAPI cannot parse, an unknown path, a
wrong method), which answers ``{"error": ...}`` (with ``field: "body"`` for a
400) instead of ``{"detail": ...}``. KServe registers its handlers
by exact type when the server starts, so these survive it. Over gRPC, KServe
answers an ``InvalidInput`` with ``INVALID_ARGUMENT`` and its text
(``"incentive_amount[0]: must be >= 0"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve.errors import InvalidInput
from starlette.exceptions import HTTPException as StarletteHTTPException

from autoroi.serving.validation import BAD_REQUEST, InputError, member

log = logging.getLogger(__name__)


class RequestRejected(InvalidInput):
    """A bad request, answered with ``status`` and the contract's error body."""

    def __init__(self, field: str, reason: str, status: int = BAD_REQUEST) -> None:
        super().__init__(f"{field}: {reason}")  # KServe's ``reason``: the whole text
        self.field = field
        self.status = status
        self.detail = reason  # the contract's ``reason``

    @classmethod
    def of(cls, error: InputError) -> RequestRejected:
        return cls(error.field, error.reason, error.status)

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field, "reason": self.detail}


async def request_rejected_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    log.info("rejected request (%d): %s", exc.status, exc)
    return JSONResponse(status_code=exc.status, content=exc.body())


def json_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as a path: ("inputs", 0, "datatype") -> inputs[0].datatype."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = member(out, str(part))
    return out


# what FastAPI puts into an error location besides the path: the body, and the
# names of the members of a union it tried (v2 bodies are InferenceRequest | bytes)
_UNION_TAGS = frozenset({"body", "InferenceRequest", "bytes"})
_SCALAR_TAGS = frozenset({"float", "int", "bool", "str"})


def _field_and_reason(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    # the bytes alternative fails for every JSON body: report the InferenceRequest's error
    useful = [e for e in errors if list(e.get("loc", ())) != ["body", "bytes"]] or list(errors)
    if not useful:
        return "body", "not a valid inference request"
    first = useful[0]
    loc = list(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return "body", f"not valid JSON: {ctx.get('error', first.get('msg', ''))}{where}"
    path = [p for p in loc if p not in _UNION_TAGS]
    if path and path[-1] in _SCALAR_TAGS and str(first.get("type", "")).startswith(f"{path[-1]}_"):
        path = path[:-1]  # a parameter's value tried as each scalar type
    return json_path(path) or "body", str(first.get("msg", "not a valid inference request"))


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI refuses a v2 body before the model sees it (not JSON, not an
    inference request): 400 with the field, instead of FastAPI's 422."""
    assert isinstance(exc, RequestValidationError)
    rejected = RequestRejected(*_field_and_reason(list(exc.errors())))
    log.info("rejected request (%d): %s", rejected.status, rejected)
    return JSONResponse(status_code=rejected.status, content=rejected.body())


async def http_exception_handler(_request: Request, exc: Exception) -> Response:
    """FastAPI's and Starlette's own refusals (``{"detail": ...}``): a body
    FastAPI cannot read at all (bytes that are not UTF-8, JSON nested past
    Python's recursion limit: 400 "There was an error parsing the body"), an
    unknown path (404), a wrong method (405), with the contract's ``error``
    body instead; a 400 names ``body`` as the field."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304) or exc.status_code < 400:  # no body allowed / not an error
        return Response(status_code=exc.status_code, headers=headers)
    content: dict[str, str]
    if exc.status_code == BAD_REQUEST:
        rejected = RequestRejected("body", detail[:1].lower() + detail[1:] if detail else "unreadable")
        log.info("rejected request (%d): %s", rejected.status, rejected)
        content = rejected.body()
    else:
        content = {"error": detail}
    return JSONResponse(status_code=exc.status_code, content=content, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on KServe's FastAPI app (before the server starts)."""
    app.add_exception_handler(RequestRejected, request_rejected_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
