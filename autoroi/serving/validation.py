"""Checks on served requests, before the model sees them.

The model server (``serving/roi_server``) turns each request into scenario rows
here and nowhere else, so that both protocols refuse the same inputs for the
same reasons:

- **v1** ``{"instances": [{region, vehicle_model, week_start, incentive_type,
  incentive_amount}, ...]}`` (:func:`parse_v1`);
- **v2** (Open Inference Protocol) one named input tensor per field, shape
  ``[n]`` or ``[n, 1]``, ``BYTES`` for the strings and a numeric datatype for
  the amount (:func:`parse_v2`, on plain :class:`Tensor` values so that this
  module needs no KServe).

Any refusal is an :class:`InputError` that names the offending field as a path
into the request (``instances[3].incentive_amount`` in v1,
``incentive_amount[3]`` in v2) and says why. Only the first problem is
reported (rows in order, fields in :data:`~autoroi.model.features.SCENARIO_FIELDS`
order). Status codes: 400 for bad input, 413 for a batch over
:attr:`Limits.max_batch` (so that a client can tell "split the batch" from
"fix the input").

Which regions, vehicle models and (region, model) pairs exist comes from the
artifact's context table (:class:`Vocabulary`): a pair is servable when the
model can resolve it to a context cell, the same fallback as
``autoroi.model.features`` uses (the exact cell, else the super region, the
segment, or both).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from autoroi.errors import AutoroiError
from autoroi.model import features as F

FIELDS: tuple[str, ...] = F.SCENARIO_FIELDS
STRING_FIELDS: tuple[str, ...] = (F.REGION, F.VEHICLE_MODEL, F.WEEK, F.INCENTIVE_TYPE)

BAD_REQUEST = 400
PAYLOAD_TOO_LARGE = 413

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_AMOUNT = 100_000.0  # dollars per unit: above any vehicle's price
MIN_WEEK = date(1900, 1, 1)  # well inside what pandas timestamps hold
MAX_WEEK = date(2199, 12, 31)

STRING_DATATYPE = "BYTES"
INT_DATATYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
AMOUNT_DATATYPES = INT_DATATYPES | FLOAT_DATATYPES

Row = tuple[str, str, str, str, float]  # a checked scenario: region, model, YYYY-MM-DD, type, amount

_SHOWN = 60  # characters of a client's value echoed in a reason
_LISTED = 12  # known names listed in a reason


class InputError(AutoroiError):
    """A request the server refuses: ``field`` is a path into the request,
    ``reason`` says what is wrong, ``status`` is the HTTP status to answer."""

    def __init__(self, field: str, reason: str, status: int = BAD_REQUEST) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON error body of the serving contract."""
        return {"error": str(self), "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Limits:
    """Bounds on a request that protect the server, not the model's vocabulary."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_amount: float = DEFAULT_MAX_AMOUNT

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if not (math.isfinite(self.max_amount) and self.max_amount > 0):
            raise ValueError(f"max_amount must be a positive number, got {self.max_amount}")


@dataclass(frozen=True)
class Vocabulary:
    """What a loaded model can score: its regions, vehicle models, the
    (region, model) pairs it resolves to a context cell, and the incentive
    types it has training data for (``"none"`` always)."""

    regions: frozenset[str]
    vehicle_models: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    incentive_types: tuple[str, ...]

    @classmethod
    def from_context(
        cls, context: pd.DataFrame, incentive_types_seen: Iterable[str] | None = None
    ) -> Vocabulary:
        """From the artifact's context table; ``incentive_types_seen`` (the
        artifact's metadata) narrows the types, ``None`` allows them all."""
        cols = [F.REGION, F.VEHICLE_MODEL, F.CELL_LEVEL, F.SEGMENT, F.SUPER_REGION]
        keys = context[cols].drop_duplicates([F.REGION, F.VEHICLE_MODEL]).astype(str)
        known = set(zip(keys[F.REGION], keys[F.VEHICLE_MODEL], strict=True))
        fine_region = keys[keys[F.CELL_LEVEL].isin(("region_model", "region_segment"))]
        super_of = dict(zip(fine_region[F.REGION], fine_region[F.SUPER_REGION], strict=True))
        fine_model = keys[keys[F.CELL_LEVEL].isin(("region_model", "super_region_model"))]
        segment_of = dict(zip(fine_model[F.VEHICLE_MODEL], fine_model[F.SEGMENT], strict=True))
        regions = frozenset(keys[F.REGION]) | frozenset(super_of)
        models = frozenset(keys[F.VEHICLE_MODEL]) | frozenset(segment_of)
        pairs = set()
        for r in regions:
            sup = super_of.get(r, r)
            for m in models:
                seg = segment_of.get(m, m)
                if any(p in known for p in ((r, m), (sup, m), (r, seg), (sup, seg))):
                    pairs.add((r, m))
        types: tuple[str, ...]
        if incentive_types_seen is None:
            types = F.SCENARIO_TYPES
        else:
            seen = set(incentive_types_seen)
            types = tuple(t for t in F.SCENARIO_TYPES if t == F.NO_INCENTIVE or t in seen)
        return cls(regions, models, frozenset(pairs), types)


@dataclass(frozen=True)
class Tensor:
    """A v2 input tensor as the server received it (``data`` flat or nested,
    strings as ``str`` or ``bytes``)."""

    name: str
    datatype: str
    shape: Sequence[int]
    data: Sequence[Any]


# --------------------------------------------------------------------------- paths

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def member(prefix: str, key: str) -> str:
    """The path of member ``key`` under ``prefix``: ``prefix.key`` for a plain
    name, ``prefix["a key"]`` (JSON-quoted) for any other, so that an empty or
    odd key still gets a path that names it; at the top level (``prefix``
    empty) a plain name stands alone and any other is ``body["..."]``."""
    if _NAME.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix or 'body'}[{json.dumps(key, ensure_ascii=False)}]"


# --------------------------------------------------------------------------- one value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    head = ", ".join(ordered[:_LISTED])
    return head + (f", ... ({len(ordered)} in all)" if len(ordered) > _LISTED else "")


def _string(value: Any, where: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(where, "must be UTF-8 text") from e
    if not isinstance(value, str):
        raise InputError(where, f"must be a string, got {_type_name(value)}")
    if not value.strip():
        raise InputError(where, "must be a non-empty string")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str | bytes):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


@lru_cache(maxsize=4096)
def _week(text: str) -> date | str:
    """The Monday ``text`` names, or the reason it does not (cached: a batch
    usually repeats a few weeks)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return f"must be a date written YYYY-MM-DD, got {_show(text)}"
    if not MIN_WEEK <= day <= MAX_WEEK:
        return f"must be between {MIN_WEEK.isoformat()} and {MAX_WEEK.isoformat()}, got {day.isoformat()}"
    if day.weekday() != 0:
        return f"must be a Monday (the first day of a week), got a {day.strftime('%A')} ({day.isoformat()})"
    return day


def _amount(value: Any, where: str, limits: Limits, integral: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(where, f"must be a number, got {_type_name(value)}")
    if integral and not isinstance(value, int | np.integer):
        raise InputError(where, "must be an integer (the tensor's datatype is an integer type)")
    try:
        amount = float(value)
    except OverflowError as e:
        raise InputError(where, "must be finite") from e
    if not math.isfinite(amount):
        raise InputError(where, "must be finite")
    if amount < 0:
        raise InputError(where, "must be >= 0")
    if amount > limits.max_amount:
        raise InputError(where, f"must be <= {limits.max_amount:g} (dollars per unit)")
    return amount


# --------------------------------------------------------------------------- one row


def check_row(
    values: Mapping[str, Any],
    vocab: Vocabulary,
    limits: Limits,
    path: Callable[[str], str],
    *,
    integral_amount: bool = False,
) -> Row:
    """One scenario checked and normalized: (region, vehicle_model, week as
    ``YYYY-MM-DD``, incentive_type, amount). ``path(field)`` names a field in
    the error. Assumes every field is present (the callers check that)."""
    region = _string(values[F.REGION], path(F.REGION))
    if region not in vocab.regions:
        raise InputError(path(F.REGION), f"unknown region {_show(region)}; known: {_listing(vocab.regions)}")
    model = _string(values[F.VEHICLE_MODEL], path(F.VEHICLE_MODEL))
    if model not in vocab.vehicle_models:
        raise InputError(
            path(F.VEHICLE_MODEL),
            f"unknown vehicle model {_show(model)}; known: {_listing(vocab.vehicle_models)}",
        )
    if (region, model) not in vocab.pairs:
        raise InputError(path(F.VEHICLE_MODEL), f"the model has no data for {model!r} in region {region!r}")
    week = _week(_string(values[F.WEEK], path(F.WEEK)))
    if isinstance(week, str):
        raise InputError(path(F.WEEK), week)
    kind = _string(values[F.INCENTIVE_TYPE], path(F.INCENTIVE_TYPE))
    if kind not in vocab.incentive_types:
        if kind in F.SCENARIO_TYPES:
            reason = f"the model has no training data for {kind!r}; one of {', '.join(vocab.incentive_types)}"
        else:
            reason = f"unknown incentive type {_show(kind)}; one of {', '.join(vocab.incentive_types)}"
        raise InputError(path(F.INCENTIVE_TYPE), reason)
    amount = _amount(values[F.INCENTIVE_AMOUNT], path(F.INCENTIVE_AMOUNT), limits, integral_amount)
    if kind == F.NO_INCENTIVE and amount != 0:
        raise InputError(path(F.INCENTIVE_AMOUNT), f'must be 0 when incentive_type is "{F.NO_INCENTIVE}"')
    return region, model, week.isoformat(), kind, amount


@dataclass(frozen=True)
class Scenarios:
    """Checked scenario rows, column by column (what :func:`check_row`
    returns, in request order): the model server hands these to the fast path
    as they are, and :meth:`frame` makes ``RoiModel.predict``'s input."""

    region: list[str]
    vehicle_model: list[str]
    week_start: list[str]  # YYYY-MM-DD
    incentive_type: list[str]
    incentive_amount: list[float]

    @classmethod
    def of(cls, rows: Sequence[Row]) -> Scenarios:
        if not rows:
            return cls([], [], [], [], [])
        region, model, week, kind, amount = (list(c) for c in zip(*rows, strict=True))
        return cls(region, model, week, kind, amount)

    def __len__(self) -> int:
        return len(self.region)

    def frame(self) -> pd.DataFrame:
        """The rows as a frame with the columns :data:`FIELDS` (amount float64)."""
        frame = pd.DataFrame(
            {
                F.REGION: self.region,
                F.VEHICLE_MODEL: self.vehicle_model,
                F.WEEK: self.week_start,
                F.INCENTIVE_TYPE: self.incentive_type,
                F.INCENTIVE_AMOUNT: np.asarray(self.incentive_amount, dtype=np.float64),
            },
            columns=list(FIELDS),
        )
        return frame


def _check_size(n: int, where: str, limits: Limits) -> None:
    if n == 0:
        raise InputError(where, "must hold at least one scenario")
    if n > limits.max_batch:
        raise InputError(
            where, f"holds {n} scenarios; at most {limits.max_batch} per request", PAYLOAD_TOO_LARGE
        )


# --------------------------------------------------------------------------- v1


def parse_v1(body: Any, vocab: Vocabulary, limits: Limits) -> pd.DataFrame:
    """A v1 request body (decoded JSON) -> checked scenario rows, in order."""
    return check_v1(body, vocab, limits).frame()


def check_v1(body: Any, vocab: Vocabulary, limits: Limits) -> Scenarios:
    """:func:`parse_v1`'s rows as :class:`Scenarios` (no frame)."""
    if not isinstance(body, Mapping):
        raise InputError("body", f'must be a JSON object {{"instances": [...]}}, got {_type_name(body)}')
    if "instances" not in body:
        raise InputError("instances", 'missing: a v1 request is {"instances": [{...}, ...]}')
    extra = sorted(str(k) for k in body if k != "instances")
    if extra:
        raise InputError(member("", extra[0]), "unknown field; a v1 request holds only instances")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise InputError("instances", f"must be an array of scenario objects, got {_type_name(instances)}")
    _check_size(len(instances), "instances", limits)
    rows: list[Row] = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, Mapping):
            raise InputError(f"instances[{i}]", f"must be an object with {', '.join(FIELDS)}")
        for f in FIELDS:
            if f not in inst or inst[f] is None:
                raise InputError(f"instances[{i}].{f}", "missing" if f not in inst else "must not be null")
        unknown = sorted(str(k) for k in inst if k not in FIELDS)
        if unknown:
            raise InputError(
                member(f"instances[{i}]", unknown[0]), f"unknown field; a scenario holds {', '.join(FIELDS)}"
            )

        def path(f: str, i: int = i) -> str:
            return f"instances[{i}].{f}"

        rows.append(check_row(inst, vocab, limits, path))
    return Scenarios.of(rows)


# --------------------------------------------------------------------------- v2


def _flat(data: Any, where: str) -> list[Any]:
    """Tensor data in row-major order: flat, or nested one level ([[a], [b]])."""
    if isinstance(data, np.ndarray):
        return list(data.reshape(-1))
    if not isinstance(data, list | tuple):
        raise InputError(where, f"must be an array, got {_type_name(data)}")
    out: list[Any] = []
    for item in data:
        if isinstance(item, list | tuple):
            if any(isinstance(x, list | tuple) for x in item):
                raise InputError(where, "is nested too deeply for a tensor of shape [n] or [n, 1]")
            out.extend(item)
        else:
            out.append(item)
    return out


def _rows_of(t: Tensor, where: str) -> int:
    shape = list(t.shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"{where}.shape", f"must be non-negative integers, got {_show(shape)}")
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise InputError(f"{where}.shape", f"must be [n] or [n, 1] (one value per scenario), got {shape}")


def parse_v2(tensors: Sequence[Tensor], vocab: Vocabulary, limits: Limits) -> pd.DataFrame:
    """Named v2 input tensors -> checked scenario rows, in order."""
    return check_v2(tensors, vocab, limits).frame()


def check_v2(tensors: Sequence[Tensor], vocab: Vocabulary, limits: Limits) -> Scenarios:
    """:func:`parse_v2`'s rows as :class:`Scenarios` (no frame)."""
    by_name: dict[str, Tensor] = {}
    for k, t in enumerate(tensors):
        if t.name not in FIELDS:
            raise InputError(
                f"inputs[{k}].name", f"unknown input {_show(t.name)}; the inputs are {', '.join(FIELDS)}"
            )
        if t.name in by_name:
            raise InputError(f"inputs[{k}].name", f"input {t.name!r} is given twice")
        by_name[t.name] = t
    for f in FIELDS:
        if f not in by_name:
            raise InputError(f, "missing input tensor")
    columns: dict[str, list[Any]] = {}
    n: int | None = None
    for f in FIELDS:
        t = by_name[f]
        datatype = str(t.datatype).upper()
        if f in STRING_FIELDS and datatype != STRING_DATATYPE:
            raise InputError(f"{f}.datatype", f"must be {STRING_DATATYPE}, got {_show(t.datatype)}")
        if f == F.INCENTIVE_AMOUNT and datatype not in AMOUNT_DATATYPES:
            raise InputError(
                f"{f}.datatype",
                f"must be a numeric datatype ({', '.join(sorted(AMOUNT_DATATYPES))}),"
                f" got {_show(t.datatype)}",
            )
        rows = _rows_of(t, f)
        _check_size(rows, f"{f}.shape", limits)
        values = _flat(t.data, f"{f}.data")
        if len(values) != rows:
            raise InputError(f"{f}.data", f"holds {len(values)} values; its shape says {rows}")
        if n is None:
            n = rows
        elif rows != n:
            raise InputError(f"{f}.shape", f"has {rows} rows; {FIELDS[0]} has {n}")
        columns[f] = values
    assert n is not None  # FIELDS is not empty
    integral = str(by_name[F.INCENTIVE_AMOUNT].datatype).upper() in INT_DATATYPES
    rows_out: list[Row] = []
    for i in range(n):

        def path(f: str, i: int = i) -> str:
            return f"{f}[{i}]"

        row = {f: columns[f][i] for f in FIELDS}
        for f in FIELDS:
            if row[f] is None:
                raise InputError(path(f), "must not be null")
        rows_out.append(check_row(row, vocab, limits, path, integral_amount=integral))
    return Scenarios.of(rows_out)
