"""The prediction log's pure part: KServe's payload-logger events in (binary
headers, structured and batched JSON), the checks that refuse any field the
serving contract does not know, a request and its answer -> rows, and the
Parquet files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from autoroi.lake.storage import open_lake
from autoroi.monitoring.predictions import (
    REQUEST,
    SCHEMA,
    Event,
    EventError,
    batch_body,
    check_event,
    count_predictions,
    event_from_http,
    event_from_json,
    events_from_batch,
    pair_rows,
    part_name,
    predictions_path,
    read_predictions,
    to_table,
    write_predictions,
)
from autoroi.serving.outputs import OUTPUTS
from tests.prediction_events import (
    T0,
    VERSION,
    headers,
    pair,
    scenarios,
    v1_answer,
    v1_request,
    v2_answer,
    v2_request,
)

LOGGED = T0 + dt.timedelta(seconds=1)


def _rows(req: Event, resp: Event) -> dict[str, list[Any]]:
    return pair_rows(req, check_event(req), resp, check_event(resp), LOGGED)


def _event(kind: str, body: bytes, request_id: str = "r1") -> Event:
    return event_from_http(headers(request_id, kind), body)


def _refused(event: Event) -> EventError:
    with pytest.raises(EventError) as info:
        check_event(event)
    return info.value


# --------------------------------------------------------------------------- events


def test_the_agents_binary_headers_make_an_event() -> None:
    rows = scenarios(2)
    e = event_from_http(headers("abc-1", "request"), v1_request(rows))
    assert (e.id, e.type, e.source, e.content_type) == (
        "abc-1",
        REQUEST,
        "http://localhost:9081/",
        "application/json",
    )
    assert e.time == T0
    # KServe's extensions, and nothing else (ce-metadata is read past, never kept)
    assert dict(e.extensions) == {
        "inferenceservicename": "roi",
        "namespace": "autoroi",
        "component": "predictor",
        "endpoint": "default",
    }
    # the agent's time has nanoseconds (Go's RFC 3339): read to the microsecond
    h = {**headers("abc-1", "response"), "ce-time": "2021-04-10T00:23:26.0789529Z"}
    assert event_from_http(h, b"{}").time == dt.datetime(2021, 4, 10, 0, 23, 26, 78952, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ce-id": None}, "ce-id"),
        ({"ce-type": "com.example.other"}, "ce-type"),
        ({"ce-specversion": "0.3"}, "ce-specversion"),
        ({"ce-source": ""}, "ce-source"),
        ({"ce-time": "yesterday"}, "ce-time"),
    ],
)
def test_bad_attributes_are_refused_by_name(change: dict[str, Any], field: str) -> None:
    h = {k: v for k, v in {**headers("r1", "request"), **change}.items() if v is not None}
    with pytest.raises(EventError) as info:
        event_from_http(h, b"{}")
    assert info.value.field == field and info.value.status == 400
    assert info.value.body()["field"] == field


def test_structured_and_batched_json_carry_the_same_events() -> None:
    req, resp = pair("r-9", scenarios(3))
    back = events_from_batch(batch_body([req, resp]))
    assert back == [req, resp]
    # structured mode with a JSON ``data`` (not base64) reads the same
    doc = {k: v for k, v in req.to_json().items() if k != "data_base64"}
    doc["data"] = json.loads(req.data)
    again = event_from_json(doc)
    assert json.loads(again.data) == json.loads(req.data) and again.id == req.id
    with pytest.raises(EventError, match=r"\[1\]\.type"):
        events_from_batch(json.dumps([req.to_json(), {**resp.to_json(), "type": "x"}]).encode())
    with pytest.raises(EventError) as info:
        events_from_batch(b'{"not": "a list"}')
    assert info.value.field == "body"


# --------------------------------------------------------------------------- rows


def test_a_v1_request_and_its_answer_make_one_row_per_scenario() -> None:
    rows = scenarios(3)
    req, resp = pair("r-1", rows)
    out = _rows(req, resp)
    table = to_table([out])
    assert table.schema == SCHEMA and table.num_rows == 3
    got = table.to_pylist()
    assert [r["row"] for r in got] == [0, 1, 2]
    assert {r["request_id"] for r in got} == {"r-1"}
    assert {(r["protocol"], r["model_name"], r["model_version"]) for r in got} == {("v1", "roi", VERSION)}
    assert (
        got[0]["requested_at"] == T0 and got[0]["answered_at"] == resp.time and got[0]["logged_at"] == LOGGED
    )
    assert (got[0]["inference_service"], got[0]["namespace"], got[0]["endpoint"]) == (
        "roi",
        "autoroi",
        "default",
    )
    for r, s in zip(got, rows, strict=True):
        assert r["region"] == s["region"] and r["vehicle_model"] == s["vehicle_model"]
        assert r["week_start"] == dt.date(2026, 3, 2) and r["incentive_amount"] == s["incentive_amount"]
        assert r["predicted_units"] == pytest.approx(s["incentive_amount"] / 100)
        assert r["cell_level"] == "region_model" and r["context_region"] == s["region"]


def test_a_v2_request_gives_the_inputs_and_its_answer_the_outputs() -> None:
    rows = scenarios(4)
    asked = ["predicted_units", "roi"]
    req = _event("request", v2_request(rows, outputs=asked, nested=True))
    resp = _event("response", v2_answer(rows, outputs=asked))
    got = to_table([_rows(req, resp)]).to_pylist()
    assert len(got) == 4 and {r["protocol"] for r in got} == {"v2"}
    assert [r["incentive_amount"] for r in got] == [s["incentive_amount"] for s in rows]
    assert [r["region"] for r in got] == [s["region"] for s in rows]
    assert all(r["predicted_units"] is not None and r["roi"] is not None for r in got)
    # outputs the request did not ask for are null
    assert all(r["baseline_units"] is None and r["cell_level"] is None for r in got)
    # every output when none is named
    req2, resp2 = pair("r-2", rows, "v2")
    full = to_table([_rows(req2, resp2)]).to_pylist()
    assert all(full[0][o] is not None for o in OUTPUTS)


def test_an_undefined_roi_is_null() -> None:
    rows = [{**scenarios(1)[0], "incentive_type": "none", "incentive_amount": 0.0}]
    for protocol in ("v1", "v2"):
        req, resp = pair("r-0", rows, protocol)
        (row,) = to_table([_rows(req, resp)]).to_pylist()
        assert row["roi"] is None and row["predicted_units"] is not None


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        # personal data a client added to a scenario: refused, never stored
        (
            "request",
            {"instances": [{**scenarios(1)[0], "customer_email": "a@b.c"}]},
            "data.instances[0].customer_email",
        ),
        ("request", {"instances": scenarios(1), "customer": "x"}, "data.customer"),
        ("request", {"instances": [{**scenarios(1)[0], "e-mail": "x"}]}, 'data.instances[0]["e-mail"]'),
        (
            "request",
            {"inputs": [{"name": "customer_name", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
            "data.inputs[0].name",
        ),
        (
            "request",
            {"inputs": json.loads(v2_request(scenarios(1)))["inputs"], "parameters": {"user": "x"}},
            "data.parameters.user",
        ),
        (
            "request",
            {"inputs": [{**json.loads(v2_request(scenarios(1)))["inputs"][0], "parameters": {"phone": "1"}}]},
            "data.inputs[0].parameters.phone",
        ),
        # values: a string or a number, never an object or an array (anything could hide there)
        (
            "request",
            {"instances": [{**scenarios(1)[0], "region": {"name": "x", "owner": "jane"}}]},
            "data.instances[0].region",
        ),
        (
            "request",
            {"inputs": [{"name": "region", "datatype": "BYTES", "shape": [1], "data": [{"email": "x"}]}]},
            "data.inputs[0].data[0]",
        ),
        (
            "response",
            {"predictions": [{**json.loads(v1_answer(scenarios(1)))["predictions"][0], "roi": [1, 2]}]},
            "data.predictions[0].roi",
        ),
        ("request", {"prompt": "x"}, "data.prompt"),
        ("request", {}, "data"),
        ("response", {**json.loads(v1_answer(scenarios(1))), "debug": 1}, "data.debug"),
        (
            "response",
            {"predictions": [{**json.loads(v1_answer(scenarios(1)))["predictions"][0], "owner": "x"}]},
            "data.predictions[0].owner",
        ),
        (
            "response",
            {"outputs": [{"name": "email", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
            "data.outputs[0].name",
        ),
    ],
)
def test_fields_the_contract_does_not_know_are_refused_by_name(kind: str, body: Any, field: str) -> None:
    e = _refused(_event(kind, json.dumps(body).encode()))
    assert e.field == field and e.status == 400, e


def test_a_scenario_field_the_answer_leaves_null_is_refused_at_pairing() -> None:
    rows = scenarios(2)
    answer = json.loads(v1_answer(rows))
    answer["predictions"][1]["region"] = None
    req, resp = _event("request", v1_request(rows)), _event("response", json.dumps(answer).encode())
    with pytest.raises(EventError) as info:
        _rows(req, resp)
    assert (info.value.field, info.value.status) == ("data.predictions[1].region", 422)


def test_a_body_that_is_not_json_is_refused() -> None:
    e = _refused(_event("request", b"\x00\x01binary tensor"))
    assert e.field == "data" and "JSON" in e.reason


def test_an_answer_that_does_not_fit_its_request_is_refused() -> None:
    req = _event("request", v1_request(scenarios(3)))
    short = _event("response", v1_answer(scenarios(2)))
    with pytest.raises(EventError) as info:
        _rows(req, short)
    assert info.value.field == "data.predictions" and info.value.status == 422
    other = _event("response", v2_answer(scenarios(3)))
    with pytest.raises(EventError, match="v2 answer to a v1 request"):
        _rows(req, other)


# --------------------------------------------------------------------------- files


def test_files_are_written_whole_and_read_back(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    assert read_predictions(lake).num_rows == 0 and read_predictions(lake).schema == SCHEMA
    parts = []
    for i, day in enumerate((dt.date(2026, 3, 4), dt.date(2026, 3, 5))):
        req, resp = pair(f"r-{i}", scenarios(2, start=10 * i))
        parts.append(_rows(req, resp))
        path = f"{predictions_path(lake, day)}/{part_name()}"
        write_predictions(lake, path, to_table([parts[-1]]))
    folder = Path(predictions_path(lake))
    assert sorted(p.name for p in folder.iterdir()) == ["date=2026-03-04", "date=2026-03-05"]
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]  # no temporary left
    table = read_predictions(lake)
    assert table.num_rows == 4 and table.schema == SCHEMA
    assert sorted(table.column("request_id").to_pylist()) == ["r-0", "r-0", "r-1", "r-1"]
    assert read_predictions(lake, since=dt.date(2026, 3, 5)).column("request_id").to_pylist() == [
        "r-1",
        "r-1",
    ]
    # a dead writer's temporary and bookkeeping names are not read
    (folder / "date=2026-03-05" / ".part-x.parquet.w00000000p1s1-abcdef.tmp").write_bytes(b"half")
    assert read_predictions(lake).num_rows == 4
    assert isinstance(table, pa.Table)
    # the monitor's summary counts the same files without reading them
    assert count_predictions(lake) == {"rows": 4, "days": ["2026-03-04", "2026-03-05"]}
    assert count_predictions(lake, dt.date(2026, 3, 5)) == {"rows": 2, "days": ["2026-03-05"]}
    assert count_predictions(open_lake(str(tmp_path / "empty"))) == {"rows": 0, "days": []}
