"""The model server over HTTP: a real ``python -m serving.roi_server`` process
(KServe's ModelServer, uvicorn) on a small trained artifact.

What the serving contract promises (DESIGN.md, "Serving contract"; issue 5 §2):
v1 and v2 answer what ``RoiModel.predict`` answers, agree with each other,
refuse bad input with a 4xx whose JSON body names the field, and the health
and metadata endpoints answer as the v2 spec says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from autoroi.model import features as F
from autoroi.serving.outputs import NUMBER_OUTPUTS, OUTPUTS
from autoroi.serving.validation import FIELDS
from tests.serving.conftest import MAX_BATCH

V1 = "/v1/models/roi:predict"
V2 = "/v2/models/roi/infer"
ROI_OUTPUTS = (
    "predicted_units",
    "baseline_units",
    "incremental_units",
    "incentive_cost",
    "incremental_profit",
)

SCENARIOS: list[dict[str, Any]] = [
    {
        "region": "Northeast",
        "vehicle_model": "Pico",
        "week_start": "2026-03-02",
        "incentive_type": "cash_rebate",
        "incentive_amount": 1500,
    },
    {
        "region": "Northeast",
        "vehicle_model": "Pico",
        "week_start": "2026-03-02",
        "incentive_type": "none",
        "incentive_amount": 0,
    },
    {
        "region": "Pacific",
        "vehicle_model": "Volta",
        "week_start": "2025-06-02",
        "incentive_type": "lease_subsidy",
        "incentive_amount": 2000.5,
    },
    {
        "region": "Pacific",
        "vehicle_model": "Forge 1500",
        "week_start": "2030-01-07",  # after the data: the cell's freshest context
        "incentive_type": "apr_subsidy",
        "incentive_amount": 900,
    },
    {
        "region": "Northeast",
        "vehicle_model": "Kestrel",
        "week_start": "2024-11-25",  # a holiday week in the data
        "incentive_type": "dealer_cash",
        "incentive_amount": 0,  # a zero amount: no cost, ROI undefined
    },
]

pytestmark = pytest.mark.slow  # trains a small model; the HTTP tests also start a server


def v2_body(scenarios: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = []
    for f in FIELDS:
        values = [s[f] for s in scenarios]
        datatype = "FP64" if f == F.INCENTIVE_AMOUNT else "BYTES"
        inputs.append({"name": f, "datatype": datatype, "shape": [len(values)], "data": values})
    return {"inputs": inputs, **extra}


def outputs_by_name(answer: dict[str, Any]) -> dict[str, list[Any]]:
    return {o["name"]: o["data"] for o in answer["outputs"]}


def as_float(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


@pytest.fixture(scope="module")
def expected(roi_artifact: Path):
    """What the artifact itself predicts for SCENARIOS, in this process."""
    from autoroi.model.artifact import load_model

    return load_model(roi_artifact).predict(SCENARIOS)


# --------------------------------------------------------------------------- predictions


def test_v1_answers_what_the_model_predicts(client: httpx.Client, expected) -> None:
    r = client.post(V1, json={"instances": SCENARIOS})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model_name"] == "roi" and answer["model_version"] == "test-v1"
    preds = answer["predictions"]
    assert len(preds) == len(SCENARIOS)
    for p, s in zip(preds, SCENARIOS, strict=True):
        assert {k: p[k] for k in FIELDS} == {**s, "incentive_amount": float(s["incentive_amount"])}
        assert p["model_version"] == "test-v1"
        assert set(p) == {*FIELDS, *OUTPUTS, "model_version"}
    for c in (*ROI_OUTPUTS, "roi"):
        np.testing.assert_allclose(
            as_float([p[c] for p in preds]), expected[c].to_numpy(), rtol=1e-6, atol=1e-9, equal_nan=True
        )
    assert [p["cell_level"] for p in preds] == expected[F.CELL_LEVEL].tolist()
    # no incentive, or a zero amount: baseline = prediction, no cost, ROI undefined (null)
    assert preds[1]["roi"] is None and preds[4]["roi"] is None and preds[1]["incentive_cost"] == 0
    assert preds[1]["predicted_units"] == pytest.approx(preds[1]["baseline_units"])
    assert all(p["predicted_units"] > 0 for p in preds)


def test_v2_agrees_with_v1(client: httpx.Client, v2_schema: Callable[[str, Any], None]) -> None:
    v1 = client.post(V1, json={"instances": SCENARIOS}).json()["predictions"]
    r = client.post(V2, json=v2_body(SCENARIOS, id="req-42"))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "req-42" and answer["model_name"] == "roi" and answer["model_version"] == "test-v1"
    assert [o["name"] for o in answer["outputs"]] == list(OUTPUTS)
    for o in answer["outputs"]:
        assert o["shape"] == [len(SCENARIOS)]
        assert o["datatype"] == ("FP64" if o["name"] in NUMBER_OUTPUTS else "BYTES")
    got = outputs_by_name(answer)
    for c in OUTPUTS:  # the same numbers, to the last bit: one model, one batch
        assert got[c] == [p[c] for p in v1], c

    # the answer is an inference_response of the spec, but for KServe's "parameters": null
    # (strip_nulls); an undefined ROI is null too (JSON has no NaN), so check one without
    assert got["roi"][1] is None
    defined = client.post(V2, json=v2_body([SCENARIOS[0], SCENARIOS[2], SCENARIOS[3]])).json()
    v2_schema("inference_response", strip_nulls(defined))


def test_every_answer_carries_its_interval_and_the_cell_that_answered(client: httpx.Client) -> None:
    v1 = client.post(V1, json={"instances": SCENARIOS}).json()["predictions"]
    v2 = outputs_by_name(client.post(V2, json=v2_body(SCENARIOS)).json())
    rows = [{c: v2[c][i] for c in OUTPUTS} for i in range(len(SCENARIOS))]
    for answers in (v1, rows):
        for a in answers:
            assert a["context_region"] and a["context_vehicle_model"] and a["cell_level"]
            if a["roi"] is None:  # nothing to pay back: no interval either
                assert a["roi_lower"] is None and a["prob_pays_back"] is None
                continue
            assert a["roi_lower"] < a["roi"] < a["roi_upper"], a
            assert 0.0 <= a["prob_pays_back"] <= 1.0
            # the interval is the model's own: centred on its ROI, and P(ROI > 0) on its side of 0.5
            assert (a["prob_pays_back"] > 0.5) == (a["roi"] > 0)
        assert any(a["roi"] is not None for a in answers)


def strip_nulls(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: strip_nulls(v) for k, v in doc.items() if not (k == "parameters" and v is None)}
    if isinstance(doc, list):
        return [strip_nulls(v) for v in doc]
    return doc


def test_v2_accepts_column_tensors_integer_amounts_and_picks_outputs(client: httpx.Client) -> None:
    one = SCENARIOS[:1]
    body = v2_body(one, outputs=[{"name": "roi"}, {"name": "predicted_units"}])
    body["inputs"][0] = {"name": "region", "datatype": "BYTES", "shape": [1, 1], "data": [["Northeast"]]}
    body["inputs"][4] = {"name": "incentive_amount", "datatype": "INT32", "shape": [1], "data": [1500]}
    r = client.post(V2, json=body)
    assert r.status_code == 200, r.text
    got = outputs_by_name(r.json())
    assert list(got) == ["roi", "predicted_units"]
    full = outputs_by_name(client.post(V2, json=v2_body(one)).json())
    assert got["roi"] == full["roi"] and got["predicted_units"] == full["predicted_units"]


def test_a_full_batch_is_served_and_one_more_is_refused(client: httpx.Client) -> None:
    batch = [SCENARIOS[i % len(SCENARIOS)] for i in range(MAX_BATCH)]
    r = client.post(V1, json={"instances": batch})
    assert r.status_code == 200 and len(r.json()["predictions"]) == MAX_BATCH
    r = client.post(V1, json={"instances": [*batch, SCENARIOS[0]]})
    assert r.status_code == 413
    assert r.json() == {
        "error": f"instances: holds {MAX_BATCH + 1} scenarios; at most {MAX_BATCH} per request",
        "field": "instances",
        "reason": f"holds {MAX_BATCH + 1} scenarios; at most {MAX_BATCH} per request",
    }
    r = client.post(V2, json=v2_body([*batch, SCENARIOS[0]]))
    assert r.status_code == 413 and r.json()["field"] == "region.shape"


# --------------------------------------------------------------------------- refusals


GONE = object()  # with_(..., field=GONE) drops the field


def with_(i: int, **changes: Any) -> dict[str, Any]:
    """SCENARIOS[i] with some fields changed (or dropped)."""
    out = dict(SCENARIOS[i])
    for k, v in changes.items():
        if v is GONE:
            out.pop(k, None)
        else:
            out[k] = v
    return out


AT = "instances[0]."
V1_BAD = [
    # (instances, field, reason starts with)
    ([with_(0, region=GONE)], AT + "region", "missing"),
    ([SCENARIOS[0], with_(0, vehicle_model=None)], "instances[1].vehicle_model", "must not be null"),
    ([with_(0, colour="red")], AT + "colour", "unknown field"),
    ([with_(0, region=7)], AT + "region", "must be a string, got a number"),
    ([with_(0, region="Atlantis")], AT + "region", "unknown region 'Atlantis'; known: Northeast, Pacific"),
    ([with_(0, vehicle_model="Zephyr")], AT + "vehicle_model", "unknown vehicle model 'Zephyr'"),
    ([with_(0, incentive_type="free_car")], AT + "incentive_type", "unknown incentive type 'free_car'"),
    ([with_(0, incentive_amount="1500")], AT + "incentive_amount", "must be a number, got a string"),
    ([with_(0, incentive_amount=True)], AT + "incentive_amount", "must be a number, got a boolean"),
    ([with_(0, incentive_amount=-1)], AT + "incentive_amount", "must be >= 0"),
    ([with_(0, incentive_amount=1e9)], AT + "incentive_amount", "must be <= 100000"),
    ([with_(1, incentive_amount=5)], AT + "incentive_amount", 'must be 0 when incentive_type is "none"'),
    ([with_(0, week_start="next week")], AT + "week_start", "must be a date written YYYY-MM-DD"),
    ([with_(0, week_start="2026-03-03")], AT + "week_start", "must be a Monday"),
    ([with_(0, week_start=20260302)], AT + "week_start", "must be a string"),
    ([], "instances", "must hold at least one scenario"),
    ([SCENARIOS[0], "a string"], "instances[1]", "must be an object"),
]


@pytest.mark.parametrize(
    ("instances", "field", "reason"), V1_BAD, ids=[f"{c[1]}:{c[2][:20]}" for c in V1_BAD]
)
def test_v1_refuses_bad_input_naming_the_field(
    client: httpx.Client, instances: list[Any], field: str, reason: str
) -> None:
    r = client.post(V1, json={"instances": instances})
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "field", "reason"}
    assert body["field"] == field and body["reason"].startswith(reason)
    assert body["error"] == f"{field}: {body['reason']}"


def test_v1_error_body_exactly(client: httpx.Client, v2_schema: Callable[[str, Any], None]) -> None:
    r = client.post(
        V1, json={"instances": [SCENARIOS[0], SCENARIOS[1], SCENARIOS[2], with_(3, incentive_amount=-5)]}
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": "instances[3].incentive_amount: must be >= 0",
        "field": "instances[3].incentive_amount",
        "reason": "must be >= 0",
    }
    r = client.post(V2, json=v2_body([SCENARIOS[0], with_(0, region="Atlantis")]))
    assert r.status_code == 400
    assert r.json() == {
        "error": "region[1]: unknown region 'Atlantis'; known: Northeast, Pacific",
        "field": "region[1]",
        "reason": "unknown region 'Atlantis'; known: Northeast, Pacific",
    }
    v2_schema("inference_error_response", r.json())


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def v2_with(k: int, replacement: dict[str, Any] | None) -> dict[str, Any]:
    body = v2_body(SCENARIOS[:2])
    if replacement is None:
        del body["inputs"][k]
    else:
        body["inputs"][k] = replacement
    return body


def amount(data: list[Any], shape: list[int] | None = None, datatype: str = "FP64") -> dict[str, Any]:
    """A two-scenario v2 body whose amount tensor is replaced."""
    return v2_with(4, tensor(F.INCENTIVE_AMOUNT, datatype, shape or [len(data)], data))


V2_BAD = [
    # (body, field, reason starts with)
    (v2_with(0, None), "region", "missing input tensor"),
    (v2_with(0, tensor("regions", "BYTES", [2], ["Northeast"] * 2)), "inputs[0].name", "unknown input"),
    (v2_with(0, tensor("region", "FP64", [2], [1.0, 2.0])), "region.datatype", "must be BYTES"),
    (amount(["1", "2"], datatype="BYTES"), "incentive_amount.datatype", "must be a numeric"),
    (amount([1, 2, 3, 4], [2, 2]), "incentive_amount.shape", "must be [n] or [n, 1]"),
    (amount([1, 2, 3]), "incentive_amount.shape", "has 3 rows; region has 2"),
    (amount([1], [2]), "incentive_amount.data", "holds 1 values; its shape says 2"),
    (amount([1500, -3]), "incentive_amount[1]", "must be >= 0"),
    (amount([1500, None]), "incentive_amount[1]", "must not be null"),
    (amount([1500, 0.5], datatype="INT64"), "incentive_amount[1]", "must be an integer"),
    (
        v2_with(2, tensor("week_start", "BYTES", [2], ["2026-03-02", "2026-02-30"])),
        "week_start[1]",
        "must be a date",
    ),
    (
        v2_with(3, tensor("incentive_type", "BYTES", [2], ["cash_rebate", 5])),
        "incentive_type[1]",
        "must be a string",
    ),
    ({**v2_body(SCENARIOS[:1]), "outputs": [{"name": "margin"}]}, "outputs[0].name", "unknown output"),
    ({"inputs": [{"name": "region", "datatype": "BYTES", "shape": [1]}]}, "inputs[0].data", "Field required"),
    ({"inputs": "region"}, "inputs", "Input should be a valid list"),
    ({}, "inputs", "Field required"),
]


@pytest.mark.parametrize(("body", "field", "reason"), V2_BAD, ids=[f"{c[1]}:{c[2][:20]}" for c in V2_BAD])
def test_v2_refuses_bad_input_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str, reason: str
) -> None:
    r = client.post(V2, json=body)
    assert r.status_code == 400, r.text
    got = r.json()
    assert got["field"] == field and got["reason"].startswith(reason), got
    assert got["error"] == f"{field}: {got['reason']}"


ONE = json.dumps(v2_body(SCENARIOS[:1]))  # a good v2 body with one scenario (amount [1500])
ROW = json.dumps(SCENARIOS[0])[:-1]  # the first scenario's JSON, without its closing brace
NAN_V1 = '{"instances": [' + ROW.replace('"incentive_amount": 1500', '"incentive_amount": NaN') + "}]}"
INF_V2 = ONE.replace("[1500]", "[Infinity]")

RAW_BAD = [
    # (path, content type, body, field): bodies a JSON encoder would not write
    (V1, "application/json", NAN_V1, "instances[0].incentive_amount"),
    (V2, "application/json", INF_V2, "incentive_amount[0]"),
    (V1, "application/json", '{"instances": [', "body"),
    (V1, "application/json", "", "body"),
    (V1, "text/plain", "instances please", "body"),
    (V1, "application/json", "[1, 2]", "body"),
    (V1, "application/json", '"instances"', "body"),
    (V1, "application/json", '{"instances": [{"region": "\\ud800"}]}', None),
    (V1, "application/json", '{"instances": [' + ROW.replace("1500", "1" + "0" * 400) + "}]}", None),
    (V1, "application/json", '{"instances": {"0": 1}}', "instances"),
    (V1, "application/json", '{"instances": [[1, 2]]}', "instances[0]"),
    (V2, "application/json", '{"inputs": [', "body"),
    (V2, "application/json", "null", "body"),
    (V2, "application/octet-stream", "\x00\x01\x02", "body"),
    (V2, "application/json", ONE.replace('"shape": [1]', '"shape": "x"', 1), "inputs[0].shape"),
    (V2, "application/json", ONE.replace('"FP64"', '"FP16"'), "body"),
    (V2, "application/json", ONE.replace("[1500]", "[[[1500]]]"), "incentive_amount.data"),
    (V2, "application/json", ONE.replace("[1500]", "[]"), "incentive_amount.data"),
    (V2, "application/json", json.dumps({**v2_body(SCENARIOS[:1]), "parameters": {"x": [1]}}), None),
]


@pytest.mark.parametrize(("path", "ctype", "content", "field"), RAW_BAD)
def test_no_bad_request_gets_a_5xx(
    client: httpx.Client, path: str, ctype: str, content: str, field: str | None
) -> None:
    r = client.post(path, content=content.encode("utf-8", "surrogatepass"), headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert set(body) == {"error", "field", "reason"} and body["error"] and body["reason"]
    if field is not None:
        assert body["field"] == field, body


def test_binary_tensor_bodies_that_do_not_parse_are_refused(client: httpx.Client) -> None:
    """KServe's binary tensor extension (inference-header-content-length) reads
    the JSON part itself; a malformed one must still be a 400."""
    bodies = [
        (b'{"a": 1}', 4),  # the JSON part cut short
        (b"\xff\xfe\x00garbage", 11),
        (b'{"a": 1}', None),  # no inputs
        (b'{"inputs": [{"name": "region"}]}', None),  # an input without shape or datatype
    ]
    for content, length in bodies:
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(length if length is not None else len(content)),
        }
        r = client.post(V2, content=content, headers=headers)
        assert r.status_code == 400, (content, r.text)
        assert r.json()["field"] == "body"


def test_nan_is_null_in_both_protocols(client: httpx.Client) -> None:
    v1 = client.post(V1, json={"instances": [SCENARIOS[1]]}).json()["predictions"][0]
    v2 = outputs_by_name(client.post(V2, json=v2_body([SCENARIOS[1]])).json())
    assert v1["roi"] is None and v2["roi"] == [None]
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in v1.values())


# --------------------------------------------------------------------------- health and metadata


def test_health_endpoints(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/roi/ready").json() == {"name": "roi", "ready": True}
    assert client.get("/v1/models/roi").json() == {"name": "roi", "ready": True}
    assert client.get("/v1/models").json() == {"models": ["roi"]}
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/roi/ready", "/v1/models/roi"):
        assert client.get(path).status_code == 200, path
    r = client.get("/v2/models/nope/ready")
    assert r.status_code == 404 and "error" in r.json()


def test_metadata_follows_the_v2_spec(client: httpx.Client, v2_schema: Callable[[str, Any], None]) -> None:
    server = client.get("/v2")
    assert server.status_code == 200
    v2_schema("metadata_server_response", server.json())
    assert server.json()["name"] == "kserve"
    r = client.get("/v2/models/roi")
    assert r.status_code == 200
    meta = r.json()
    v2_schema("metadata_model_response", meta)
    assert meta["name"] == "roi" and meta["versions"] == ["test-v1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("region", "BYTES", [-1]),
        ("vehicle_model", "BYTES", [-1]),
        ("week_start", "BYTES", [-1]),
        ("incentive_type", "BYTES", [-1]),
        ("incentive_amount", "FP64", [-1]),
    ]
    assert [t["name"] for t in meta["outputs"]] == list(OUTPUTS)
    missing = client.get("/v2/models/nope")
    assert missing.status_code == 404
    v2_schema("metadata_model_error_response", missing.json())


def test_the_pickers_options_come_from_the_served_version(client: httpx.Client, roi_artifact: Path) -> None:
    """GET /v2/models/roi/options (what the dashboard image proxies as /options)
    equals what the local router reads from the same artifact."""
    import pyarrow.fs as pafs

    from serving.router.options import read_options

    r = client.get("/v2/models/roi/options")
    assert r.status_code == 200, r.text
    doc = r.json()
    expected = read_options(pafs.LocalFileSystem(), str(roi_artifact), doc["version"])
    assert doc == expected
    assert doc["regions"] and doc["pairs"] and doc["incentive_types"]
    assert client.get("/v2/models/nope/options").status_code == 503


def test_the_server_plans_a_budget_as_autoroi_plan_does(client: httpx.Client, roi_artifact: Path) -> None:
    """POST /v2/models/roi/plan (the dashboard's Plan view) chooses what the
    planner chooses on the same model, and refuses a bad request by field."""
    from autoroi.model.artifact import load_model
    from autoroi.model.plan import make_plan, score_options
    from autoroi.planning import plan_request

    body = {"budget": 120_000, "from": "2026-03-02", "to": "2026-03-16", "objective": "profit"}
    r = client.post("/v2/models/roi/plan", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    totals, rows = doc["totals"], doc["plan"]
    assert 0 < totals["incentive_cost"] <= 120_000 and totals["scenarios"] == len(rows) > 0
    assert sum(x["incentive_cost"] for x in rows) == pytest.approx(totals["incentive_cost"])
    assert totals["roi_lower"] < totals["roi"] < totals["roi_upper"]
    options = client.get("/v2/models/roi/options").json()
    model = load_model(roi_artifact)
    req = plan_request(body, options)
    _chosen, local = make_plan(
        req.pairs, req.types, req.weeks, req.amounts, lambda s: score_options(model, s), req.budget
    )
    assert totals["incremental_profit"] == pytest.approx(local["incremental_profit"], rel=1e-5)
    for bad, field in (
        ({**body, "budget": -1}, "budget"),
        ({**body, "from": "2026-03-03"}, "from"),
        ({**body, "regions": ["Atlantis"]}, "regions"),
        ({**body, "objective": "units"}, "objective"),
        ({**body, "amounts": "900"}, "amounts"),
    ):
        r = client.post("/v2/models/roi/plan", json=bad)
        assert r.status_code == 400 and r.json()["field"] == field, (bad, r.text)
