"""What the model server answers, per protocol, from ``RoiModel.predict``'s frame.

One list of outputs for both protocols (:data:`OUTPUTS`): the ROI columns of
``autoroi.model.roi``, the ROI's 90 % interval and ``prob_pays_back`` (from the
ensemble's members; null for a model of one network), and the cell that
answered: its level and its names (``context_region``,
``context_vehicle_model``: the requested cell, or the coarser one
k-anonymity merged it into). v1 gives
one object per scenario (the scenario as the model read it, the outputs and
the model version); v2 gives one tensor per output, in request order, with the
model version in the response's ``model_version``.

ROI is undefined where the incentive costs nothing (``roi`` NaN): JSON has no
NaN, so both protocols write ``null`` there, the one place where a v2 ``FP64``
tensor holds a non-number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.roi import INTERVAL_COLUMNS, ROI_COLUMNS
from autoroi.serving.validation import FIELDS, STRING_DATATYPE, STRING_FIELDS

NUMBER_OUTPUTS: tuple[str, ...] = (*ROI_COLUMNS, *INTERVAL_COLUMNS)
OUTPUTS: tuple[str, ...] = (*NUMBER_OUTPUTS, F.CELL_LEVEL, F.CONTEXT_REGION, F.CONTEXT_MODEL)
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


Columns = pd.DataFrame | Mapping[str, Any]  # a prediction frame, or the fast path's columns (arrays)


def _values(column: Any) -> list[Any]:
    return column.tolist() if hasattr(column, "tolist") else list(column)


def rows_in(frame: Columns) -> int:
    """Scenarios in a prediction frame or a mapping of columns."""
    return len(frame) if isinstance(frame, pd.DataFrame) else len(frame[OUTPUTS[0]])


def v1_predictions(frame: Columns, version: str | None) -> list[dict[str, Any]]:
    """One JSON-ready object per scenario: its fields, the outputs, the version.
    ``frame``: ``RoiModel.predict``'s frame or the fast path's columns."""
    cols = {c: _values(frame[c]) for c in (*FIELDS, *OUTPUTS)}
    numbers = [(o, cols[o]) for o in NUMBER_OUTPUTS]
    fields = [(f, cols[f]) for f in FIELDS]
    texts = [(o, cols[o]) for o in OUTPUTS if o not in NUMBER_OUTPUTS]
    amounts = cols[F.INCENTIVE_AMOUNT]
    out = []
    for i in range(len(amounts)):
        rec: dict[str, Any] = {f: values[i] for f, values in fields}
        rec[F.INCENTIVE_AMOUNT] = float(amounts[i])
        for o, values in numbers:
            v = float(values[i])
            rec[o] = v if math.isfinite(v) else None
        for o, values in texts:
            rec[o] = str(values[i])
        rec[MODEL_VERSION] = version
        out.append(rec)
    return out


def v2_outputs(frame: Columns, names: list[str] | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(name, datatype, values) per output tensor, all of them or ``names``."""
    out = []
    for o in names if names is not None else OUTPUTS:
        if o in NUMBER_OUTPUTS:
            out.append((o, FLOAT_DATATYPE, np.asarray(frame[o], dtype=np.float64)))
        else:
            out.append((o, STRING_DATATYPE, np.asarray([str(v) for v in _values(frame[o])], dtype=object)))
    return out
