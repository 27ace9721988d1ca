"""Fuzzing the model server over HTTP, v1 and v2 (issue 5 §6): generated
requests (``hypothesis``; derandomized, so a run is reproducible) against the
real ``python -m serving.roi_server`` of the session fixture (``--max-batch
16``).

The property, for every request: never a 5xx; a 4xx has a JSON body with
``error``, ``field`` (what is at fault: a path into the request, or ``body``)
and ``reason``; a 200 answers one prediction per scenario. The requests mix
valid scenarios with NaN and infinite amounts (written as JSON's ``NaN`` /
``Infinity`` extensions), huge and negative numbers, wrong types, unicode,
missing, null and extra fields, empty and oversized batches, wrong v2
datatypes and shapes, unknown inputs and outputs, malformed and truncated
JSON, random bytes, deeply nested arrays and KServe's binary-tensor header
with lengths that do not fit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoroi.model import features as F
from autoroi.serving.outputs import OUTPUTS
from autoroi.serving.validation import FIELDS
from tests.serving.conftest import MAX_BATCH, RunningServer

pytestmark = pytest.mark.slow  # the session's server trains a small model

V1 = "/v1/models/roi:predict"
V2 = "/v2/models/roi/infer"
ERROR_KEYS = {"error", "field", "reason"}
FUZZ = settings(
    max_examples=500,
    deadline=None,  # HTTP round trips on a shared machine: no per-example deadline
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

REGIONS = ("Northeast", "Pacific")
MODELS = ("Pico", "Kestrel", "Forge 1500", "Volta")
TYPES = F.SCENARIO_TYPES
DATATYPES = ("BYTES", "FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT64", "BOOL")

# --------------------------------------------------------------------------- values

unicode_text = st.text(max_size=12)  # any code point but lone surrogates (JSON cannot carry them)
huge = st.sampled_from([10**20, -(10**20), 10**400, -(10**400), 1e308, -1e308, 5e-324, 2**63, 2**64])
any_number = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, -1, -1e-9]),
    huge,
)
leaf = st.one_of(st.none(), st.booleans(), any_number, unicode_text)
any_json = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
not_a_list = any_json.filter(lambda v: not isinstance(v, list))
not_an_object = any_json.filter(lambda v: not isinstance(v, dict))
mondays = st.dates(min_value=date(1900, 1, 8), max_value=date(2199, 12, 31)).map(
    lambda d: (d - timedelta(days=d.weekday())).isoformat()
)
good_amounts = st.one_of(
    st.floats(0, 100_000), st.integers(0, 100_000), st.sampled_from([0, 0.0, 1e-300, 100_000, 99_999.99])
)

VALID = {
    F.REGION: st.sampled_from(REGIONS),
    F.VEHICLE_MODEL: st.sampled_from(MODELS),
    F.WEEK: st.one_of(mondays.filter(lambda s: "2020-01-01" <= s <= "2040-01-01"), mondays),
    F.INCENTIVE_TYPE: st.sampled_from([t for t in TYPES if t != F.NO_INCENTIVE]),
    F.INCENTIVE_AMOUNT: good_amounts,
}
WILD = {
    F.REGION: st.one_of(unicode_text, st.sampled_from(["East", "northeast", "Atlantis", ""]), any_json),
    F.VEHICLE_MODEL: st.one_of(unicode_text, st.sampled_from(["truck", "pico", " Pico"]), any_json),
    F.WEEK: st.one_of(
        st.dates().map(lambda d: d.isoformat()),  # any weekday, any year 1..9999
        st.sampled_from(["2026-W10-1", "20260302", "2026-02-30", "1899-12-25", "2200-01-05", "", "soon"]),
        unicode_text,
        any_json,
    ),
    F.INCENTIVE_TYPE: st.one_of(st.sampled_from(["free_car", "Cash_Rebate", "NONE"]), unicode_text, any_json),
    F.INCENTIVE_AMOUNT: st.one_of(any_number, st.booleans(), unicode_text, st.none(), any_json),
}


@st.composite
def valid_row(draw: st.DrawFn) -> dict[str, Any]:
    row = {f: draw(VALID[f]) for f in FIELDS}
    if draw(st.sampled_from([False] * 5 + [True])):
        row[F.INCENTIVE_TYPE], row[F.INCENTIVE_AMOUNT] = F.NO_INCENTIVE, draw(st.sampled_from([0, 0.0]))
    return row


def small_batch() -> st.SearchStrategy[int]:
    return st.sampled_from([1, 1, 1, 2, 3, 5, 8, MAX_BATCH])


@st.composite
def valid_rows(draw: st.DrawFn, n: int) -> list[dict[str, Any]]:
    """``n`` valid scenarios: up to 3 drawn ones, repeated (hypothesis drops
    examples that draw too much, so a batch of 20 distinct rows never comes)."""
    distinct = [draw(valid_row()) for _ in range(min(n, 3))]
    return [dict(distinct[j % len(distinct)]) for j in range(n)]


def dumps(doc: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as bare words."""
    return json.dumps(doc, allow_nan=True).encode()


# what one request gets wrong: "valid" a third of the time, else one kind of mistake
V1_KINDS = (
    *("valid",) * 6,
    *("bad value",) * 4,
    "missing field",
    "null field",
    "extra field",
    "row not an object",
    "empty",
    "oversized",
    "instances not a list",
    "no instances",
    "extra top-level field",
    "body not an object",
)


@st.composite
def v1_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(V1_KINDS))
    n = draw(st.integers(MAX_BATCH + 1, MAX_BATCH + 4)) if kind == "oversized" else draw(small_batch())
    rows: list[Any] = draw(valid_rows(0 if kind == "empty" else n))
    i = draw(st.integers(0, max(0, len(rows) - 1)))
    f = draw(st.sampled_from(FIELDS))
    body: Any = {"instances": rows}
    if kind == "bad value":
        rows[i][f] = draw(WILD[f])
    elif kind == "missing field":
        del rows[i][f]
    elif kind == "null field":
        rows[i][f] = None
    elif kind == "extra field":
        rows[i][draw(st.text(max_size=8).filter(lambda k: k not in FIELDS))] = draw(any_json)
    elif kind == "row not an object":
        rows[i] = draw(not_an_object)
    elif kind == "instances not a list":
        body = {"instances": draw(not_a_list)}
    elif kind == "no instances":
        body = {"inputs": rows}
    elif kind == "extra top-level field":
        body[draw(st.text(max_size=8).filter(lambda k: k != "instances"))] = draw(any_json)
    elif kind == "body not an object":
        body = draw(not_an_object)
    return dumps(body)


def tensor(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    datatype = "FP64" if name == F.INCENTIVE_AMOUNT else "BYTES"
    return {"name": name, "datatype": datatype, "shape": [len(rows)], "data": [r[name] for r in rows]}


V2_KINDS = (
    *("valid",) * 6,
    *("bad value",) * 3,
    "integer amounts",
    "column tensors",
    "bad datatype",
    "bad shape",
    "rows disagree",
    "data count",
    "data nested",
    "data not a list",
    "missing input",
    "unknown input",
    "duplicate input",
    "tensor key missing",
    "tensor parameters",
    "outputs",
    "bad id",
    "parameters",
    "empty",
    "oversized",
    "inputs not a list",
    "body not an object",
)


@st.composite
def v2_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(V2_KINDS))
    n = draw(st.integers(MAX_BATCH + 1, MAX_BATCH + 4)) if kind == "oversized" else draw(small_batch())
    rows = draw(valid_rows(0 if kind == "empty" else n))
    inputs: list[Any] = [tensor(f, rows) for f in draw(st.permutations(FIELDS))]
    k = draw(st.integers(0, len(inputs) - 1))
    t = inputs[k]
    name = t["name"]
    body: Any = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=10))
    if kind == "bad value" and rows:
        t["data"][draw(st.integers(0, len(rows) - 1))] = draw(WILD[name])
    elif kind == "integer amounts":
        amounts = next(x for x in inputs if x["name"] == F.INCENTIVE_AMOUNT)
        amounts["datatype"] = draw(st.sampled_from(["INT64", "INT32", "INT8", "UINT8", "UINT64"]))
        amounts["data"] = [int(v) if draw(st.booleans()) else v for v in amounts["data"]]
    elif kind == "column tensors":
        t["shape"], t["data"] = [len(rows), 1], [[v] for v in t["data"]]
    elif kind == "bad datatype":
        t["datatype"] = draw(st.one_of(st.sampled_from(DATATYPES), st.text(max_size=5), any_json))
    elif kind == "bad shape":
        t["shape"] = draw(st.one_of(st.lists(st.integers(-3, MAX_BATCH + 4), max_size=4), any_json))
    elif kind == "rows disagree":
        t["shape"] = [len(rows) + draw(st.sampled_from([-1, 1, 2]))]
    elif kind == "data count" and rows:
        t["data"] = t["data"][:-1] if draw(st.booleans()) else [*t["data"], t["data"][0]]
    elif kind == "data nested":
        t["data"] = [t["data"]] if draw(st.booleans()) else [[[v]] for v in t["data"]]
    elif kind == "data not a list":
        t["data"] = draw(not_a_list)
    elif kind == "missing input":
        del inputs[k]
    elif kind == "unknown input":
        t["name"] = draw(st.one_of(st.text(max_size=10), any_json).filter(lambda v: v not in FIELDS))
    elif kind == "duplicate input":
        inputs.append(dict(t))
    elif kind == "tensor key missing":
        del t[draw(st.sampled_from(["name", "datatype", "shape", "data"]))]
    elif kind == "tensor parameters":
        t["parameters"] = draw(any_json)
    elif kind == "outputs":
        names = st.one_of(st.sampled_from(OUTPUTS), st.text(max_size=8), any_json)
        body["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": names}), max_size=3))
    elif kind == "bad id":
        body["id"] = draw(any_json)
    elif kind == "parameters":
        body["parameters"] = draw(any_json)
    elif kind == "inputs not a list":
        body = {"inputs": draw(not_a_list)}
    elif kind == "body not an object":
        body = draw(not_an_object)
    return dumps(body)


def malformed() -> st.SearchStrategy[bytes]:
    valid = dumps(
        {
            "instances": [
                {
                    "region": "Northeast",
                    "vehicle_model": "Pico",
                    "week_start": "2026-03-02",
                    "incentive_type": "cash_rebate",
                    "incentive_amount": 1500,
                }
            ]
        }
    )
    return st.one_of(
        st.binary(max_size=64),
        st.text(max_size=40).map(str.encode),
        st.integers(0, len(valid) - 1).map(lambda k: valid[:k]),  # truncated JSON
        st.integers(2, 30_000).map(lambda k: b"[" * k + b"]" * k),  # deeply nested
        st.integers(2, 30_000).map(lambda k: b'{"instances": ' + b"[" * k),
        st.sampled_from([b'{"instances": [{"region": "\\ud800"}]}', b"\xff\xfe{}", b"NaN", b"{,}", b"null"]),
    )


# --------------------------------------------------------------------------- the property


@pytest.fixture(scope="module")
def http(roi_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=roi_server.url, timeout=60) as c:
        yield c


def check(r: httpx.Response, what: str) -> None:
    """No 5xx; a 4xx carries the contract's error body; a 200 a prediction per scenario."""
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        assert r.status_code in (400, 413), f"{what}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("content-type", "").startswith("application/json"), what
        body = r.json()
        assert isinstance(body, dict) and set(body) == ERROR_KEYS, f"{what}: {body}"
        assert isinstance(body["field"], str) and body["field"], f"{what}: {body}"
        assert isinstance(body["error"], str) and body["error"].startswith(body["field"]), f"{what}: {body}"
        return
    assert r.status_code == 200, what
    answer = r.json()
    if "predictions" in answer:
        preds = answer["predictions"]
        assert preds and all(p["model_version"] == answer["model_version"] for p in preds), what
        assert all(p["predicted_units"] is not None and p["predicted_units"] >= 0 for p in preds), what
    else:
        shapes = {tuple(o["shape"]) for o in answer["outputs"]}
        assert len(shapes) == 1 and answer["outputs"], what


@FUZZ
@given(body=v1_body())
def test_fuzz_v1(http: httpx.Client, body: bytes) -> None:
    r = http.post(V1, content=body, headers={"content-type": "application/json"})
    check(r, f"v1 {body[:300]!r}")
    if r.status_code == 200:
        assert len(r.json()["predictions"]) == len(json.loads(body)["instances"])


@FUZZ
@given(body=v2_body())
def test_fuzz_v2(http: httpx.Client, body: bytes) -> None:
    r = http.post(V2, content=body, headers={"content-type": "application/json"})
    check(r, f"v2 {body[:300]!r}")


@settings(FUZZ, max_examples=300)
@given(
    path=st.sampled_from([V1, V2]),
    body=malformed(),
    ctype=st.sampled_from(["application/json", "text/plain", "application/octet-stream", None]),
    # header values as HTTP allows them (uvicorn itself refuses control characters, in plain text)
    binary_header=st.one_of(
        st.none(),
        st.integers(-5, 100).map(str),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4),
    ),
)
def test_fuzz_malformed_bodies(
    http: httpx.Client, path: str, body: bytes, ctype: str | None, binary_header: str | None
) -> None:
    headers = {}
    if ctype is not None:
        headers["content-type"] = ctype
    if binary_header is not None and path == V2:
        headers["inference-header-content-length"] = binary_header
    try:
        r = http.post(path, content=body, headers=headers)
    except httpx.LocalProtocolError:  # a header value httpx itself refuses to send
        return
    check(r, f"{path} {ctype} {binary_header!r} {body[:200]!r}")


@settings(FUZZ, max_examples=100)
@given(rows=st.lists(st.fixed_dictionaries(VALID), min_size=1, max_size=MAX_BATCH))
def test_fuzz_valid_requests_are_answered_alike_in_v1_and_v2(http: httpx.Client, rows: list[Any]) -> None:
    v1 = http.post(V1, json={"instances": rows})
    check(v1, f"v1 {rows}")
    assert v1.status_code == 200, v1.text
    inputs = [
        {
            "name": f,
            "datatype": "FP64" if f == F.INCENTIVE_AMOUNT else "BYTES",
            "shape": [len(rows)],
            "data": [r[f] for r in rows],
        }
        for f in FIELDS
    ]
    v2 = http.post(V2, json={"inputs": inputs})
    check(v2, f"v2 {rows}")
    assert v2.status_code == 200, v2.text
    got = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    for name in OUTPUTS:  # one model, the same batch: the same numbers
        assert got[name] == [p[name] for p in v1.json()["predictions"]], name


def test_the_server_is_still_up_after_the_fuzzing(http: httpx.Client, roi_server: RunningServer) -> None:
    assert roi_server.process.poll() is None, roi_server.log_tail()
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert "Traceback" not in roi_server.log_tail(200_000), roi_server.log_tail()


def test_odd_member_names_still_get_a_path() -> None:
    """What the fuzzing found: an unknown member named "" was answered with
    ``field: ""``; a name that is not a plain identifier is now quoted."""
    from autoroi.serving.validation import member
    from serving.roi_server.errors import json_path

    assert member("", "colour") == "colour" and member("instances[0]", "colour") == "instances[0].colour"
    assert member("", "") == 'body[""]' and member("instances[2]", "a.b") == 'instances[2]["a.b"]'
    assert member("instances[0]", "é") == 'instances[0]["é"]'
    assert json_path(["parameters", "", 0]) == 'parameters[""][0]'
