"""What the model server answers, per protocol, from ``RoiModel.predict``'s frame.

One list of outputs for both protocols (:data:`OUTPUTS`): the ROI columns of
``autoroi.model.roi`` and the context cell level the prediction used. v1 gives
one object per scenario (the scenario as the model read it, the outputs and
the model version); v2 gives one tensor per output, in request order, with the
model version in the response's ``model_version``.

ROI is undefined where the incentive costs nothing (``roi`` NaN): JSON has no
NaN, so both protocols write ``null`` there, the one place where a v2 ``FP64``
tensor holds a non-number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.roi import ROI_COLUMNS
from autoroi.serving.validation import FIELDS, STRING_DATATYPE, STRING_FIELDS

NUMBER_OUTPUTS: tuple[str, ...] = ROI_COLUMNS
OUTPUTS: tuple[str, ...] = (*ROI_COLUMNS, F.CELL_LEVEL)
FLOAT_DATATYPE = "FP64"
MODEL_VERSION = "model_version"


def input_metadata() -> list[dict[str, Any]]:
    """v2 model metadata ``inputs``: one tensor per scenario field."""
    return [
        {"name": f, "datatype": STRING_DATATYPE if f in STRING_FIELDS else FLOAT_DATATYPE, "shape": [-1]}
        for f in FIELDS
    ]


def output_metadata() -> list[dict[str, Any]]:
    """v2 model metadata ``outputs``."""
    return [
        {"name": o, "datatype": FLOAT_DATATYPE if o in NUMBER_OUTPUTS else STRING_DATATYPE, "shape": [-1]}
        for o in OUTPUTS
    ]


def _number(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def v1_predictions(frame: pd.DataFrame, version: str | None) -> list[dict[str, Any]]:
    """One JSON-ready object per scenario: its fields, the outputs, the version."""
    cols = {c: frame[c].tolist() for c in (*FIELDS, *OUTPUTS)}
    out = []
    for i in range(len(frame)):
        rec: dict[str, Any] = {f: cols[f][i] for f in FIELDS}
        rec[F.INCENTIVE_AMOUNT] = float(rec[F.INCENTIVE_AMOUNT])
        for o in NUMBER_OUTPUTS:
            rec[o] = _number(cols[o][i])
        rec[F.CELL_LEVEL] = str(cols[F.CELL_LEVEL][i])
        rec[MODEL_VERSION] = version
        out.append(rec)
    return out


def v2_outputs(frame: pd.DataFrame, names: list[str] | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(name, datatype, values) per output tensor, all of them or ``names``."""
    out = []
    for o in names if names is not None else OUTPUTS:
        if o in NUMBER_OUTPUTS:
            out.append((o, FLOAT_DATATYPE, frame[o].to_numpy(np.float64)))
        else:
            out.append((o, STRING_DATATYPE, frame[o].astype(str).to_numpy(dtype=object)))
    return out
