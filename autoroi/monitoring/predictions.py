"""The prediction log: every request the model server answered, one row per
scenario, in ``<lake>/predictions/roi/date=YYYY-MM-DD/part-*.parquet``.

Who writes it: KServe's payload logger. On a cluster the InferenceService's
``predictor.logger`` (``mode: all``) makes the KServe agent beside the model
server post two CloudEvents per request to the prediction sink
(``serving/prediction_sink``): ``org.kubeflow.serving.inference.request``
(the request's body) and, when the server answered 200,
``org.kubeflow.serving.inference.response`` (the answer), both with the same
``id`` (the request's ``Ce-Id`` header, else a fresh UUID), in binary content
mode: the attributes are ``Ce-*`` headers (``Ce-Specversion``, ``Ce-Id``,
``Ce-Type``, ``Ce-Source``, ``Ce-Time`` and KServe's extensions
``Ce-Inferenceservicename``, ``Ce-Namespace``, ``Ce-Component``,
``Ce-Endpoint``, ``Ce-Metadata``), the body is the request's or answer's
bytes. Locally the endpoint (``serving/router``) posts the same events,
several per POST in the JSON batch format of CloudEvents
(``application/cloudevents-batch+json``), so that logging costs the
answer next to nothing.

This module is the sink's pure part: events from either format, checks
that refuse any field the serving contract does not know (a typed
:class:`EventError` naming it, so nothing the contract does not carry, no
personal data, reaches the lake), the pair -> rows conversion, the rows'
schema (:data:`SCHEMA`), and the Parquet files (:func:`write_predictions`,
:func:`read_predictions`).

What a row holds: the request id, the times (asked, answered, logged), where
the answer came from (InferenceService, namespace, component, endpoint:
``default`` or ``canary``; null locally where there is none), model name and
version, the protocol (``v1``/``v2``), the five scenario fields (v1: as the
model read them, from its answer; v2: the request's tensors) and every output
of :data:`autoroi.serving.outputs.OUTPUTS` (null where a v2 request asked for
fewer). Other CloudEvent attributes (``metadata``, tracing) are read past and
not kept.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from autoroi.lake.leftovers import temp_name
from autoroi.lake.storage import Lake, fsync_dir
from autoroi.model import features as F
from autoroi.serving.outputs import MODEL_VERSION, NUMBER_OUTPUTS, OUTPUTS
from autoroi.serving.validation import FIELDS, InputError, member

PREDICTIONS_ZONE = "predictions"
MODEL_NAME = "roi"
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
EVENT_TYPES = (REQUEST, RESPONSE)
SPEC_VERSION = "1.0"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

# KServe's extension attributes (pkg/logger/worker.go) -> row columns
EXTENSIONS: Mapping[str, str] = {
    "inferenceservicename": "inference_service",
    "namespace": "namespace",
    "component": "component",
    "endpoint": "endpoint",
}
BAD_EVENT = 400
UNPROCESSABLE = 422  # a well-formed event that contradicts its pair

SCENARIO_KEYS = frozenset(FIELDS)
V1_REQUEST_KEYS = frozenset({"instances"})
V1_RESPONSE_KEYS = frozenset({"predictions", "model_name", MODEL_VERSION})
V1_PREDICTION_KEYS = frozenset({*FIELDS, *OUTPUTS, MODEL_VERSION})
V2_REQUEST_KEYS = frozenset({"id", "inputs", "outputs", "parameters"})
V2_RESPONSE_KEYS = frozenset({"id", "model_name", MODEL_VERSION, "outputs", "parameters"})
V2_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})
V2_OUTPUT_REQUEST_KEYS = frozenset({"name", "parameters"})
# the Open Inference Protocol's own parameters (binary tensor extension, string
# decoding): anything else a client puts in ``parameters`` is refused
V2_PARAMETERS = frozenset({"binary_data", "binary_data_size", "binary_data_output", "content_type"})

STRING_OUTPUTS = tuple(o for o in OUTPUTS if o not in NUMBER_OUTPUTS)
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),  # the scenario's index in its request
        pa.field("requested_at", _TS),
        pa.field("answered_at", _TS, nullable=False),
        pa.field("logged_at", _TS, nullable=False),
        *(pa.field(col, pa.string()) for col in EXTENSIONS.values()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("protocol", pa.string(), nullable=False),
        *(
            pa.field(
                f, pa.date32() if f == F.WEEK else pa.float64() if f == F.INCENTIVE_AMOUNT else pa.string()
            )
            for f in FIELDS
        ),
        *(pa.field(o, pa.float64()) for o in NUMBER_OUTPUTS),
        *(pa.field(o, pa.string()) for o in STRING_OUTPUTS),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)


class EventError(InputError):
    """An event the sink refuses: ``field`` names it (a ``ce-*`` attribute, or a
    path into the data such as ``data.instances[0].email``), ``status`` is the
    HTTP status to answer; the body is the serving contract's error body."""

    def __init__(self, field: str, reason: str, status: int = BAD_EVENT) -> None:
        super().__init__(field, reason, status)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One CloudEvent of the payload logger: its attributes and its data (bytes)."""

    id: str
    type: str
    source: str
    data: bytes
    time: dt.datetime | None = None
    content_type: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)  # of EXTENSIONS only

    @property
    def is_request(self) -> bool:
        return self.type == REQUEST

    def attributes(self) -> dict[str, Any]:
        """The context attributes in the CloudEvents JSON format."""
        doc: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "type": self.type,
            "source": self.source,
        }
        if self.time is not None:
            doc["time"] = _rfc3339(self.time)
        if self.content_type:
            doc["datacontenttype"] = self.content_type
        doc.update(self.extensions)
        return doc

    def to_json(self) -> dict[str, Any]:
        """The CloudEvents JSON format (structured mode), data as ``data_base64``."""
        return {**self.attributes(), "data_base64": base64.b64encode(self.data).decode("ascii")}

    def json_bytes(self) -> bytes:
        """:meth:`to_json` encoded, the data spliced in: base64 needs no JSON
        escaping, and scanning a large body for it would cost more than the
        rest of the log together."""
        head = json.dumps(self.attributes(), separators=(",", ":")).encode()
        return head[:-1] + b',"data_base64":"' + base64.b64encode(self.data) + b'"}'


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise EventError(where, "must be an RFC 3339 timestamp")
    try:
        t = dt.datetime.fromisoformat(value.strip())
    except ValueError as e:
        raise EventError(where, f"not an RFC 3339 timestamp: {value[:40]!r}") from e
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _attributes(get: Any, where: Any) -> dict[str, Any]:
    """The attributes every event needs, read through ``get(name)`` and named
    in errors by ``where(name)``."""
    version = get("specversion")
    if version != SPEC_VERSION:
        raise EventError(where("specversion"), f"must be {SPEC_VERSION!r}, got {str(version)[:20]!r}")
    out: dict[str, Any] = {}
    for name in ("id", "type", "source"):
        value = get(name)
        if not isinstance(value, str) or not value.strip():
            raise EventError(where(name), "missing or empty")
        out[name] = value
    if out["type"] not in EVENT_TYPES:
        raise EventError(where("type"), f"must be {' or '.join(EVENT_TYPES)}, got {out['type'][:80]!r}")
    when = get("time")
    out["time"] = _time(when, where("time")) if when else None
    out["extensions"] = {k: str(v) for k in EXTENSIONS if isinstance(v := get(k), str)}
    return out


def event_from_http(headers: Mapping[str, str], body: bytes) -> Event:
    """A binary-mode event (KServe's agent): attributes in ``ce-*`` headers
    (``headers`` with lower-case names, as Starlette's are), data = the body."""

    def get(name: str) -> str | None:
        return headers.get(f"ce-{name}")

    attrs = _attributes(get, lambda name: f"ce-{name}")
    return Event(data=body, content_type=headers.get("content-type"), **attrs)


def event_from_json(doc: Any, where: str = "event") -> Event:
    """A structured-mode event (the CloudEvents JSON format): ``data`` (a JSON
    value) or ``data_base64``."""
    if not isinstance(doc, Mapping):
        raise EventError(where, "must be a JSON object (a CloudEvent)")
    attrs = _attributes(doc.get, lambda name: f"{where}.{name}")
    if "data_base64" in doc:
        try:
            data = base64.b64decode(str(doc["data_base64"]), validate=True)
        except (binascii.Error, ValueError) as e:
            raise EventError(f"{where}.data_base64", "not valid base64") from e
    elif "data" in doc:
        data = json.dumps(doc["data"]).encode()
    else:
        raise EventError(f"{where}.data", "missing (data or data_base64)")
    ctype = doc.get("datacontenttype")
    return Event(data=data, content_type=ctype if isinstance(ctype, str) else None, **attrs)


def events_from_batch(body: bytes) -> list[Event]:
    """The events of a JSON batch (``application/cloudevents-batch+json``)."""
    try:
        docs = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise EventError("body", "not a JSON array of CloudEvents") from e
    if not isinstance(docs, list):
        raise EventError("body", "a batch must be a JSON array of CloudEvents")
    return [event_from_json(d, f"[{i}]") for i, d in enumerate(docs)]


def batch_body(events: Iterable[Event]) -> bytes:
    """A JSON batch of ``events`` (what :func:`events_from_batch` reads)."""
    return b"[" + b",".join(e.json_bytes() for e in events) + b"]"


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Checked:
    """An event's data, checked: the protocol, the scenarios (``n``), and the
    columns it contributes to the rows (v1 request: none; v2 request: the
    inputs; v1 answer: inputs and outputs; v2 answer: the outputs, their
    model name and version)."""

    protocol: str
    n: int
    columns: Mapping[str, list[Any]]
    model_name: str | None = None
    model_version: str | None = None


def _unknown(doc: Mapping[str, Any], known: frozenset[str], prefix: str, what: str) -> None:
    """Refuse the first key (in sorted order) of ``doc`` that is not ``known``."""
    if not known.issuperset(doc.keys()):
        extra = min(str(k) for k in doc if k not in known)
        raise EventError(member(prefix, extra), f"unknown field; {what} holds {', '.join(sorted(known))}")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EventError(where, "must be a JSON object")
    return value


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise EventError(where, "must be a JSON array")
    return value


def _parameters(value: Any, where: str) -> None:
    if value is not None:
        _unknown(_object(value, where), V2_PARAMETERS, where, "parameters")


def _flat(data: Any, where: str) -> list[Any]:
    """A tensor's data, flat: ``[a, b]`` or ``[[a], [b]]`` (shape [n] or [n, 1])."""
    if not any(isinstance(item, list) for item in _array(data, where)):
        return list(data)
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


def _tensors(items: Any, where: str, names: Sequence[str], what: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for k, t in enumerate(_array(items, where)):
        at = f"{where}[{k}]"
        t = _object(t, at)
        _unknown(t, V2_TENSOR_KEYS, at, "a tensor")
        name = t.get("name")
        if name not in names:
            raise EventError(f"{at}.name", f"unknown {what} {str(name)[:60]!r}; one of {', '.join(names)}")
        _parameters(t.get("parameters"), f"{at}.parameters")
        out[str(name)] = column = _flat(t.get("data"), f"{at}.data")
        _check_types(str(name), column, at + ".data[{}]")
    return out


_NUMBER_COLUMNS = frozenset(f.name for f in SCHEMA if pa.types.is_floating(f.type))
_NUMBER_OK = frozenset({float, int, type(None)})
_TEXT_OK = frozenset({str, type(None)})


def _check_types(name: str, column: list[Any], path: str) -> None:
    """Only a number (the float columns) or a string (the others), or null,
    is kept: no object or array a client might hide anything in. ``path``
    names a value, its index as ``{}``."""
    ok = _NUMBER_OK if name in _NUMBER_COLUMNS else _TEXT_OK
    if ok.issuperset(map(type, column)):  # the values of an answer almost always pass
        return
    bad = next(i for i, v in enumerate(column) if type(v) not in ok)
    kind = "number" if ok is _NUMBER_OK else "string"
    raise EventError(path.format(bad), f"must be a {kind} or null")


def _data(event: Event) -> Mapping[str, Any]:
    try:
        doc = json.loads(event.data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        ctype = event.content_type or "no content type"
        raise EventError("data", f"not JSON ({ctype}): the log reads JSON bodies only") from e
    return _object(doc, "data")


def _records(value: Any, keys: frozenset[str], where: str, what: str) -> list[Any]:
    """A JSON array of objects whose keys are all known; the first unknown
    one is refused by its path."""
    items = _array(value, where)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not keys.issuperset(item.keys()):
            at = f"{where}[{i}]"
            _unknown(_object(item, at), keys, at, what)
    return items


def check_event(event: Event) -> Checked:
    """The event's data checked against the serving contract (module docstring);
    an unknown field anywhere is refused by name."""
    doc = _data(event)
    if event.is_request:
        if "instances" in doc:
            _unknown(doc, V1_REQUEST_KEYS, "data", "a v1 request")
            instances = _records(doc["instances"], SCENARIO_KEYS, "data.instances", "a scenario")
            for f in FIELDS:  # kept until the answer comes: the same rule as for the answer's values
                _check_types(f, [inst.get(f) for inst in instances], "data.instances[{}]." + f)
            return Checked("v1", len(instances), {})
        if "inputs" in doc:
            _unknown(doc, V2_REQUEST_KEYS, "data", "a v2 request")
            _parameters(doc.get("parameters"), "data.parameters")
            for k, out in enumerate(_array(doc.get("outputs") or [], "data.outputs")):
                at = f"data.outputs[{k}]"
                _unknown(_object(out, at), V2_OUTPUT_REQUEST_KEYS, at, "a requested output")
                _parameters(out.get("parameters"), f"{at}.parameters")
            inputs = _tensors(doc["inputs"], "data.inputs", FIELDS, "input")
            n = len(next(iter(inputs.values()))) if inputs else 0
            return Checked("v2", n, inputs)
        _unknown(doc, V1_REQUEST_KEYS | V2_REQUEST_KEYS, "data", "a request")
        raise EventError("data", "neither a v1 request (instances) nor a v2 request (inputs)")
    if "predictions" in doc:
        _unknown(doc, V1_RESPONSE_KEYS, "data", "a v1 answer")
        preds = _records(doc["predictions"], V1_PREDICTION_KEYS, "data.predictions", "a prediction")
        columns = {c: [p.get(c) for p in preds] for c in (*FIELDS, *OUTPUTS, MODEL_VERSION)}
        for c, column in columns.items():
            _check_types(c, column, "data.predictions[{}]." + c)
        return Checked("v1", len(preds), columns, _opt_text(doc, "model_name"), _opt_text(doc, MODEL_VERSION))
    if "outputs" in doc:
        _unknown(doc, V2_RESPONSE_KEYS, "data", "a v2 answer")
        _parameters(doc.get("parameters"), "data.parameters")
        outputs = _tensors(doc["outputs"], "data.outputs", OUTPUTS, "output")
        n = len(next(iter(outputs.values()))) if outputs else 0
        return Checked("v2", n, outputs, _opt_text(doc, "model_name"), _opt_text(doc, MODEL_VERSION))
    _unknown(doc, V1_RESPONSE_KEYS | V2_RESPONSE_KEYS, "data", "an answer")
    raise EventError("data", "neither a v1 answer (predictions) nor a v2 answer (outputs)")


def _opt_text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"data.{key}", "must be a string")
    return value


# --------------------------------------------------------------------------- rows


def _scenario_field(column: list[Any], name: str, at: Callable[[int], str]) -> list[Any]:
    """A scenario field of an answered request (types checked with its
    event): never null, a week a date."""
    if None in column:
        raise EventError(at(column.index(None)), "must not be null", UNPROCESSABLE)
    if name != F.WEEK:
        return column
    days: dict[str, dt.date] = {}
    for i, v in enumerate(column):
        if v not in days:
            try:
                days[v] = dt.date.fromisoformat(v)
            except ValueError as e:
                raise EventError(at(i), "must be a date YYYY-MM-DD", UNPROCESSABLE) from e
    return [days[v] for v in column]


def pair_rows(
    request: Event, asked: Checked, response: Event, answered: Checked, logged_at: dt.datetime
) -> dict[str, list[Any]]:
    """The rows (columns of :data:`SCHEMA`) of one answered request; a value
    the contract does not allow refuses the event, naming it (422)."""
    if asked.protocol != answered.protocol:
        raise EventError(
            "data",
            f"a {answered.protocol} answer to a {asked.protocol} request (id {request.id})",
            UNPROCESSABLE,
        )
    n = answered.n
    where = "data.predictions" if answered.protocol == "v1" else "data.outputs"
    if asked.n != n:
        raise EventError(
            where, f"holds {n} scenarios; the request (id {request.id}) held {asked.n}", UNPROCESSABLE
        )
    values = {**answered.columns} if answered.protocol == "v1" else {**asked.columns, **answered.columns}
    for name, column in values.items():
        if len(column) != n:
            raise EventError(f"{where}.{name}", f"holds {len(column)} values, not {n}", UNPROCESSABLE)

    def at(name: str) -> Callable[[int], str]:
        if answered.protocol == "v1":
            return lambda i: f"data.predictions[{i}].{name}"
        return lambda i: f"request data.inputs: {name}[{i}]"

    model_version = answered.model_version
    if answered.protocol == "v1" and model_version is None:  # then each prediction may name it
        versions = set(answered.columns.get(MODEL_VERSION) or [None])
        model_version = versions.pop() if len(versions) == 1 else None
    out: dict[str, list[Any]] = {
        "request_id": [request.id] * n,
        "row": list(range(n)),
        "requested_at": [request.time] * n,
        "answered_at": [response.time or logged_at] * n,
        "logged_at": [logged_at] * n,
        **{col: [response.extensions.get(attr)] * n for attr, col in EXTENSIONS.items()},
        "model_name": [answered.model_name] * n,
        "model_version": [model_version] * n,
        "protocol": [answered.protocol] * n,
    }
    for f in FIELDS:
        if f not in values:
            raise EventError(f"data.{f}", "missing from the request and the answer", UNPROCESSABLE)
        out[f] = _scenario_field(values[f], f, at(f))
    for o in OUTPUTS:  # an output a v2 request did not ask for is null
        out[o] = values[o] if o in values else [None] * n
    return out


def to_table(parts: Iterable[Mapping[str, list[Any]]]) -> pa.Table:
    """Rows of several answered requests as one table of :data:`SCHEMA`
    (a number that is not finite is null)."""
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for part in parts:
        for c in COLUMNS:
            columns[c].extend(part[c])
    return pa.table(
        [pa.array(columns[f.name], f.type, from_pandas=True) for f in SCHEMA],  # NaN -> null
        schema=SCHEMA,
    )


# --------------------------------------------------------------------------- files


def predictions_path(lake: Lake, day: dt.date | None = None) -> str:
    """``<lake>/predictions/roi`` or one day's folder under it."""
    base = lake.path(PREDICTIONS_ZONE, MODEL_NAME)
    return base if day is None else f"{base}/date={day.isoformat()}"


def part_name(now: dt.datetime | None = None) -> str:
    """A new file's name: time-ordered, unique across sinks (random suffix)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"part-{now.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.parquet"


def write_predictions(lake: Lake, path: str, table: pa.Table) -> None:
    """One Parquet file, published whole: on a local lake written under a
    temporary name, fsynced and renamed; on S3 one object (a PUT is atomic)."""
    if lake.is_local:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(temp_name(target.name))
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression="zstd")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(str(target.parent))
    else:
        with lake.fs.open_output_stream(path) as f:
            pq.write_table(table, f, compression="zstd")


def _log_files(lake: Lake, since: dt.date | None) -> list[str]:
    """The log's Parquet files (``since``: only the day folders from that day
    on), bookkeeping names left out."""
    base = predictions_path(lake)
    info = lake.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True))
    return sorted(
        i.path
        for i in info
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not any(p.startswith((".", "_")) for p in i.path[len(base) :].split("/") if p)
        and (since is None or _folder_day(i.path) >= since)
    )


def read_predictions(lake: Lake, since: dt.date | None = None) -> pa.Table:
    """Every logged row (``since``: only the day folders from that day on), as
    one table of :data:`SCHEMA`; an empty one when nothing was logged."""
    files = _log_files(lake, since)
    if not files:
        return SCHEMA.empty_table()
    dataset = pads.dataset(files, filesystem=lake.fs, format="parquet", schema=SCHEMA)
    return dataset.to_table()


def count_predictions(lake: Lake, since: dt.date | None = None) -> dict[str, Any]:
    """How many rows were logged, and on which days, from the files' footers
    (the monitor's summary; nothing is read into memory)."""
    files = _log_files(lake, since)
    rows = pads.dataset(files, filesystem=lake.fs, format="parquet").count_rows() if files else 0
    return {"rows": rows, "days": sorted({_folder_day(f).isoformat() for f in files})}


def _folder_day(path: str) -> dt.date:
    for part in path.split("/"):
        if part.startswith("date="):
            try:
                return dt.date.fromisoformat(part[5:])
            except ValueError:
                break
    return dt.date.min
