"""The request checks and response shapes of the model server, as plain
functions (``autoroi.serving``): no KServe, no TensorFlow, no HTTP."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autoroi.model import features as F
from autoroi.serving import (
    FIELDS,
    OUTPUTS,
    InputError,
    Limits,
    Tensor,
    Vocabulary,
    input_metadata,
    output_metadata,
    parse_v1,
    parse_v2,
    v1_predictions,
    v2_outputs,
)


def context() -> pd.DataFrame:
    """Cells at every level: Northeast and Pacific (super region East/West) at
    the finest level; Mountain only merged into West; model Zed only as its
    segment 'ev' in the West; one week each."""
    rows = [
        ("Northeast", "Pico", "region_model", "compact", "East"),
        ("Northeast", "Volta", "region_model", "ev", "East"),
        ("Pacific", "Pico", "region_model", "compact", "West"),
        ("Mountain", "Pico", "region_model", "compact", "West"),
        ("West", "Volta", "super_region_model", "ev", "West"),
        ("Pacific", "ev", "region_segment", "ev", "West"),
        ("West", "ev", "super_region_segment", "ev", "West"),
        ("Southeast", "suv", "region_segment", "suv", "South"),
    ]
    frame = pd.DataFrame(rows, columns=[F.REGION, F.VEHICLE_MODEL, F.CELL_LEVEL, F.SEGMENT, F.SUPER_REGION])
    frame[F.WEEK] = pd.Timestamp("2026-03-02")
    return frame


VOCAB = Vocabulary.from_context(context(), ["cash_rebate", "loyalty"])
LIMITS = Limits(max_batch=4, max_amount=10_000)
GOOD = {
    "region": "Northeast",
    "vehicle_model": "Pico",
    "week_start": "2026-03-02",
    "incentive_type": "cash_rebate",
    "incentive_amount": 1500,
}


def refusal(fn: Any, *args: Any) -> InputError:
    with pytest.raises(InputError) as e:
        fn(*args)
    return e.value


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_resolves_pairs_as_the_model_does() -> None:
    """Every (region, model) pair the server accepts is one the model's own
    cell resolution (features._resolve_cells) can score, and no other."""
    ctx = context()
    names_r = [*sorted(set(ctx[F.REGION])), "Atlantis"]
    names_m = [*sorted(set(ctx[F.VEHICLE_MODEL])), "Zed"]
    vocab = Vocabulary.from_context(ctx)
    for r in names_r:
        for m in names_m:
            pair = pd.DataFrame({F.REGION: [r], F.VEHICLE_MODEL: [m]})
            try:
                F._resolve_cells(pair, ctx)
                resolvable = True
            except F.ScenarioError:
                resolvable = False
            assert ((r, m) in vocab.pairs) == resolvable, (r, m)
    assert ("Mountain", "Volta") in vocab.pairs  # through the super region West
    assert ("Southeast", "Pico") not in vocab.pairs  # Southeast only has suv
    assert vocab.incentive_types == F.SCENARIO_TYPES


def test_vocabulary_narrows_incentive_types_to_those_seen_in_training() -> None:
    assert VOCAB.incentive_types == ("none", "cash_rebate", "loyalty")
    e = refusal(parse_v1, {"instances": [{**GOOD, "incentive_type": "conquest"}]}, VOCAB, LIMITS)
    assert e.field == "instances[0].incentive_type"
    assert e.reason == "the model has no training data for 'conquest'; one of none, cash_rebate, loyalty"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Limits(max_batch=0)
    with pytest.raises(ValueError, match="max_amount"):
        Limits(max_amount=math.inf)


# --------------------------------------------------------------------------- v1


def test_v1_rows_are_checked_and_normalized() -> None:
    body = {
        "instances": [
            GOOD,
            {**GOOD, "incentive_type": "none", "incentive_amount": 0},
            {**GOOD, "region": "Mountain", "vehicle_model": "Volta", "week_start": "2026-W10-1"},
        ]
    }
    frame = parse_v1(body, VOCAB, LIMITS)
    assert list(frame.columns) == list(FIELDS)
    assert frame[F.INCENTIVE_AMOUNT].dtype == np.float64
    assert frame.to_dict("records")[2] == {
        "region": "Mountain",
        "vehicle_model": "Volta",
        "week_start": "2026-03-02",  # ISO week date, normalized
        "incentive_type": "cash_rebate",
        "incentive_amount": 1500.0,
    }


V1_BAD: list[tuple[Any, str, str, int]] = [
    ([1], "body", "must be a JSON object", 400),
    ({}, "instances", "missing", 400),
    ({"instances": [], "other": 1}, "other", "unknown field", 400),
    ({"instances": "x"}, "instances", "must be an array of scenario objects, got a string", 400),
    ({"instances": []}, "instances", "must hold at least one scenario", 400),
    ({"instances": [GOOD] * 5}, "instances", "holds 5 scenarios; at most 4 per request", 413),
    ({"instances": [GOOD, 3]}, "instances[1]", "must be an object", 400),
    ({"instances": [{**GOOD, "x": 1}]}, "instances[0].x", "unknown field", 400),
    ({"instances": [{**GOOD, "region": None}]}, "instances[0].region", "must not be null", 400),
    ({"instances": [{**GOOD, "region": " "}]}, "instances[0].region", "must be a non-empty string", 400),
    (
        {"instances": [{**GOOD, "region": ["a"]}]},
        "instances[0].region",
        "must be a string, got an array",
        400,
    ),
    ({"instances": [{**GOOD, "region": "Mars"}]}, "instances[0].region", "unknown region 'Mars'", 400),
    (
        {"instances": [{**GOOD, "region": "Southeast"}]},
        "instances[0].vehicle_model",
        "the model has no data",
        400,
    ),
    ({"instances": [{**GOOD, "week_start": "2026-3-2"}]}, "instances[0].week_start", "must be a date", 400),
    (
        {"instances": [{**GOOD, "week_start": "1850-01-07"}]},
        "instances[0].week_start",
        "must be between",
        400,
    ),
    (
        {"instances": [{**GOOD, "week_start": "2026-03-08"}]},
        "instances[0].week_start",
        "must be a Monday",
        400,
    ),
    ({"instances": [{**GOOD, "incentive_type": "bogus"}]}, "instances[0].incentive_type", "unknown", 400),
    (
        {"instances": [{**GOOD, "incentive_amount": math.nan}]},
        "instances[0].incentive_amount",
        "must be finite",
        400,
    ),
    (
        {"instances": [{**GOOD, "incentive_amount": -math.inf}]},
        "instances[0].incentive_amount",
        "must be finite",
        400,
    ),
    (
        {"instances": [{**GOOD, "incentive_amount": 10**400}]},
        "instances[0].incentive_amount",
        "must be finite",
        400,
    ),
    (
        {"instances": [{**GOOD, "incentive_amount": -0.01}]},
        "instances[0].incentive_amount",
        "must be >= 0",
        400,
    ),
    (
        {"instances": [{**GOOD, "incentive_amount": 10_001}]},
        "instances[0].incentive_amount",
        "must be <= 10000",
        400,
    ),
    (
        {"instances": [{**GOOD, "incentive_amount": False}]},
        "instances[0].incentive_amount",
        "must be a number",
        400,
    ),
]


@pytest.mark.parametrize(("body", "field", "reason", "status"), V1_BAD, ids=[c[1] for c in V1_BAD])
def test_v1_refusals_name_the_field(body: Any, field: str, reason: str, status: int) -> None:
    e = refusal(parse_v1, body, VOCAB, LIMITS)
    assert (e.field, e.status) == (field, status)
    assert e.reason.startswith(reason), e.reason
    assert e.body() == {"error": f"{field}: {e.reason}", "field": field, "reason": e.reason}


def test_the_first_bad_row_and_field_are_reported() -> None:
    bad = {**GOOD, "region": "Mars", "incentive_amount": -1}
    e = refusal(parse_v1, {"instances": [GOOD, GOOD, bad, {**GOOD, "week_start": "x"}]}, VOCAB, LIMITS)
    assert e.field == "instances[2].region"


def test_long_values_are_not_echoed_whole() -> None:
    e = refusal(parse_v1, {"instances": [{**GOOD, "region": "x" * 10_000}]}, VOCAB, LIMITS)
    assert len(e.reason) < 200 and "..." in e.reason


# --------------------------------------------------------------------------- v2


def tensors(rows: list[dict[str, Any]], amount_type: str = "FP64") -> list[Tensor]:
    return [
        Tensor(f, amount_type if f == F.INCENTIVE_AMOUNT else "BYTES", [len(rows)], [r[f] for r in rows])
        for f in FIELDS
    ]


def test_v2_gives_the_same_rows_as_v1() -> None:
    rows = [GOOD, {**GOOD, "vehicle_model": "Volta", "incentive_type": "none", "incentive_amount": 0}]
    expected = parse_v1({"instances": rows}, VOCAB, LIMITS)
    pd.testing.assert_frame_equal(parse_v2(tensors(rows), VOCAB, LIMITS), expected)
    # [n, 1] columns, nested data, bytes (as gRPC carries strings), integer amounts, any order
    shaped = [
        Tensor(t.name, t.datatype, [2, 1], [[v.encode() if isinstance(v, str) else v] for v in t.data])
        for t in reversed(tensors(rows, "INT32"))
    ]
    pd.testing.assert_frame_equal(parse_v2(shaped, VOCAB, LIMITS), expected)


def replaced(k: int, t: Tensor | None) -> list[Tensor]:
    out = tensors([GOOD, GOOD])
    if t is None:
        del out[k]
    else:
        out[k] = t
    return out


AMT = F.INCENTIVE_AMOUNT
V2_BAD: list[tuple[list[Tensor], str, str, int]] = [
    (replaced(1, None), "vehicle_model", "missing input tensor", 400),
    (
        [*tensors([GOOD]), Tensor("region", "BYTES", [1], ["Pacific"])],
        "inputs[5].name",
        "input 'region' is given twice",
        400,
    ),
    (replaced(0, Tensor("zone", "BYTES", [2], ["a", "b"])), "inputs[0].name", "unknown input 'zone'", 400),
    (
        replaced(0, Tensor("region", "INT32", [2], [1, 2])),
        "region.datatype",
        "must be BYTES, got 'INT32'",
        400,
    ),
    (
        replaced(4, Tensor(AMT, "BOOL", [2], [True, False])),
        f"{AMT}.datatype",
        "must be a numeric datatype",
        400,
    ),
    (replaced(4, Tensor(AMT, "FP64", [1, 2], [1, 2])), f"{AMT}.shape", "must be [n] or [n, 1]", 400),
    (replaced(4, Tensor(AMT, "FP64", [2, 1, 1], [1, 2])), f"{AMT}.shape", "must be [n] or [n, 1]", 400),
    (replaced(4, Tensor(AMT, "FP64", [-2], [1, 2])), f"{AMT}.shape", "must be non-negative integers", 400),
    (
        replaced(4, Tensor(AMT, "FP64", [2], [1, 2, 3])),
        f"{AMT}.data",
        "holds 3 values; its shape says 2",
        400,
    ),
    (replaced(4, Tensor(AMT, "FP64", [2], [[[1]], [2]])), f"{AMT}.data", "is nested too deeply", 400),
    (replaced(4, Tensor(AMT, "FP64", [2], "12")), f"{AMT}.data", "must be an array", 400),
    (replaced(4, Tensor(AMT, "FP64", [3], [1, 2, 3])), f"{AMT}.shape", "has 3 rows; region has 2", 400),
    (replaced(4, Tensor(AMT, "FP64", [2], [1, math.nan])), f"{AMT}[1]", "must be finite", 400),
    (replaced(4, Tensor(AMT, "FP64", [2], [1, "2"])), f"{AMT}[1]", "must be a number, got a string", 400),
    (replaced(4, Tensor(AMT, "UINT8", [2], [1, 2.0])), f"{AMT}[1]", "must be an integer", 400),
    (
        replaced(0, Tensor("region", "BYTES", [2], ["Northeast", b"\xff"])),
        "region[1]",
        "must be UTF-8 text",
        400,
    ),
    (
        replaced(2, Tensor("week_start", "BYTES", [2], ["2026-03-02", None])),
        "week_start[1]",
        "must not be null",
        400,
    ),
    (tensors([GOOD] * 5), "region.shape", "holds 5 scenarios; at most 4", 413),
    (tensors([]), "region.shape", "must hold at least one scenario", 400),
]


@pytest.mark.parametrize(("given", "field", "reason", "status"), V2_BAD, ids=[c[1] for c in V2_BAD])
def test_v2_refusals_name_the_field(given: list[Tensor], field: str, reason: str, status: int) -> None:
    e = refusal(parse_v2, given, VOCAB, LIMITS)
    assert (e.field, e.status) == (field, status)
    assert e.reason.startswith(reason), e.reason


# --------------------------------------------------------------------------- outputs


def predicted() -> pd.DataFrame:
    frame = parse_v1(
        {"instances": [GOOD, {**GOOD, "incentive_type": "none", "incentive_amount": 0}]}, VOCAB, LIMITS
    )
    frame["predicted_units"] = [12.5, 11.0]
    frame["baseline_units"] = [11.0, 11.0]
    frame["incremental_units"] = [1.5, 0.0]
    frame["incentive_cost"] = [18750.0, 0.0]
    frame["incremental_profit"] = [-3750.0, 0.0]
    frame["roi"] = [-0.2, np.nan]
    frame["roi_lower"] = [-0.5, np.nan]
    frame["roi_upper"] = [0.1, np.nan]
    frame["prob_pays_back"] = [0.12, np.nan]
    frame[F.CELL_LEVEL] = "region_model"
    frame[F.CONTEXT_REGION] = frame[F.REGION]
    frame[F.CONTEXT_MODEL] = frame[F.VEHICLE_MODEL]
    return frame


def test_v1_predictions_are_json_ready() -> None:
    recs = v1_predictions(predicted(), "v1")
    assert recs[0] == {
        **GOOD,
        "incentive_amount": 1500.0,
        "predicted_units": 12.5,
        "baseline_units": 11.0,
        "incremental_units": 1.5,
        "incentive_cost": 18750.0,
        "incremental_profit": -3750.0,
        "roi": -0.2,
        "roi_lower": -0.5,
        "roi_upper": 0.1,
        "prob_pays_back": 0.12,
        "cell_level": "region_model",
        "context_region": GOOD["region"],
        "context_vehicle_model": GOOD["vehicle_model"],
        "model_version": "v1",
    }
    assert recs[1]["roi"] is None and recs[1]["roi_lower"] is None  # undefined: null, never NaN


def test_v2_outputs_and_metadata_agree() -> None:
    outs = v2_outputs(predicted())
    assert [o[0] for o in outs] == list(OUTPUTS) == [t["name"] for t in output_metadata()]
    assert {o[0]: o[1] for o in outs} == {t["name"]: t["datatype"] for t in output_metadata()}
    roi = dict((o[0], o[2]) for o in outs)["roi"]
    assert roi.dtype == np.float64 and np.isnan(roi[1])
    assert [o[0] for o in v2_outputs(predicted(), ["roi"])] == ["roi"]
    assert [t["name"] for t in input_metadata()] == list(FIELDS)
    assert all(t["shape"] == [-1] for t in input_metadata() + output_metadata())
