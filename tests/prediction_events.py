"""Payload-logger events as KServe's agent sends them, with bodies in the
serving contract's shapes (``autoroi.serving.outputs`` builds the answers),
for the prediction log's tests."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np

from autoroi.model.roi import INTERVAL_COLUMNS, ROI_COLUMNS
from autoroi.monitoring.predictions import REQUEST, RESPONSE, Event
from autoroi.serving.outputs import v1_predictions, v2_outputs
from autoroi.serving.validation import FIELDS

VERSION = "v20260302-101500-0badcafe"
T0 = dt.datetime(2026, 3, 4, 12, 0, 0, tzinfo=dt.UTC)


def scenarios(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` scenarios (distinct amounts, so rows can be told apart)."""
    regions = ("Northeast", "Southeast", "Midwest")
    return [
        {
            "region": regions[(start + i) % 3],
            "vehicle_model": "Ridgeback LX" if (start + i) % 2 else "Pico",
            "week_start": "2026-03-02",
            "incentive_type": "cash_rebate",
            "incentive_amount": float(500 + start + i),
        }
        for i in range(n)
    ]


def _frame(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's columns for ``rows``: numbers that follow from the amount."""
    amounts = np.array([r["incentive_amount"] for r in rows], dtype=np.float64)
    cols: dict[str, Any] = {f: [r[f] for r in rows] for f in FIELDS}
    cols["incentive_amount"] = amounts
    for k, c in enumerate((*ROI_COLUMNS, *INTERVAL_COLUMNS)):
        cols[c] = amounts / 100.0 + k
    cols["roi"] = np.where(amounts > 0, cols["roi"], math.nan)
    cols["cell_level"] = ["region_model"] * len(rows)
    cols["context_region"] = [r["region"] for r in rows]
    cols["context_vehicle_model"] = [r["vehicle_model"] for r in rows]
    return cols


def v1_request(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def v1_answer(rows: list[dict[str, Any]], version: str = VERSION) -> bytes:
    body = {
        "predictions": v1_predictions(_frame(rows), version),
        "model_name": "roi",
        "model_version": version,
    }
    return json.dumps(body).encode()


def v2_request(rows: list[dict[str, Any]], outputs: list[str] | None = None, nested: bool = False) -> bytes:
    inputs = []
    for f in FIELDS:
        data = [r[f] for r in rows]
        shape = [len(rows), 1] if nested else [len(rows)]
        inputs.append(
            {
                "name": f,
                "datatype": "FP64" if f == "incentive_amount" else "BYTES",
                "shape": shape,
                "data": [[v] for v in data] if nested else data,
            }
        )
    body: dict[str, Any] = {"id": "client-7", "inputs": inputs}
    if outputs is not None:
        body["outputs"] = [{"name": o} for o in outputs]
    return json.dumps(body).encode()


def v2_answer(rows: list[dict[str, Any]], outputs: list[str] | None = None, version: str = VERSION) -> bytes:
    """KServe's ``InferResponse.to_rest()`` of the server's tensors, NaN as
    null (as the server's JSON encoder writes it)."""
    tensors = []
    for name, datatype, values in v2_outputs(_frame(rows), outputs):
        data = [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]
        tensors.append({"name": name, "shape": [len(rows)], "datatype": datatype, "data": data})
    return json.dumps(
        {"id": "client-7", "model_name": "roi", "model_version": version, "outputs": tensors}
    ).encode()


def headers(request_id: str, kind: str, at: dt.datetime = T0) -> dict[str, str]:
    """The agent's binary-mode headers (lower-case, as Starlette reads them)."""
    return {
        "ce-specversion": "1.0",
        "ce-id": request_id,
        "ce-type": REQUEST if kind == "request" else RESPONSE,
        "ce-source": "http://localhost:9081/",
        "ce-time": at.isoformat().replace("+00:00", "Z"),
        "ce-inferenceservicename": "roi",
        "ce-namespace": "autoroi",
        "ce-component": "predictor",
        "ce-endpoint": "default",
        "ce-metadata": "{}",
        "content-type": "application/json",
    }


def pair(
    request_id: str, rows: list[dict[str, Any]], protocol: str = "v1", at: dt.datetime = T0
) -> tuple[Event, Event]:
    """A request event and its answer event."""
    ext = {
        "inferenceservicename": "roi",
        "namespace": "autoroi",
        "component": "predictor",
        "endpoint": "default",
    }
    asked = v1_request(rows) if protocol == "v1" else v2_request(rows)
    answer = v1_answer(rows) if protocol == "v1" else v2_answer(rows)
    common: dict[str, Any] = {"id": request_id, "source": "http://localhost:9081/", "extensions": ext}
    return (
        Event(type=REQUEST, data=asked, time=at, content_type="application/json", **common),
        Event(
            type=RESPONSE,
            data=answer,
            time=at + dt.timedelta(milliseconds=2),
            content_type="application/json",
            **common,
        ),
    )
