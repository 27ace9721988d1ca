"""Preprocessing of feature rows into network inputs: vocabularies with an
out-of-vocabulary bucket, normalization statistics and the feature order.

It is fitted once on the training rows and saved with the model
(``preprocessing.json`` in the artifact), so serving feeds the network exactly
what training fed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model.features import CONTEXT_MODEL, CONTEXT_REGION, REGION, VEHICLE_MODEL, FeatureSpec

OOV_INDEX = 0  # every vocabulary maps unknown values here; known values start at 1
NUMERIC_INPUT = "numeric"
TREAT_INPUT = "treat"  # (n, types): 0/1 per incentive type
DEPTH_INPUT = "depth"  # (n, types): amount / MSRP per incentive type, 0 when off


ANSWERING = {REGION: CONTEXT_REGION, VEHICLE_MODEL: CONTEXT_MODEL}


def input_name(column: str) -> str:
    return f"cat_{column}"


@dataclass
class Preprocessor:
    spec: FeatureSpec
    vocabularies: dict[str, list[str]]
    means: list[float]
    stds: list[float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: FeatureSpec) -> Preprocessor:
        vocab = {c: sorted({str(v) for v in frame[c]}) for c in spec.categorical}
        x = cls._numeric_raw(frame, spec)
        means = x.mean(axis=0)
        stds = x.std(axis=0)
        stds = np.where(stds > 1e-9, stds, 1.0)
        return cls(spec, vocab, [float(v) for v in means], [float(v) for v in stds])

    @staticmethod
    def _numeric_raw(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
        cols = list(spec.numeric)
        x = frame[cols].to_numpy(np.float64, copy=True)
        logs = [i for i, c in enumerate(cols) if c in spec.log_columns]
        x[:, logs] = np.log1p(np.clip(x[:, logs], 0.0, None))
        return np.nan_to_num(x, nan=0.0)

    @property
    def n_ended(self) -> int:
        """The ended-program columns, last among the numeric ones (the network's dip)."""
        return len(self.spec.ended_columns)

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Embedding rows per categorical: the vocabulary plus the OOV bucket."""
        return {c: len(v) + 1 for c, v in self.vocabularies.items()}

    @property
    def n_numeric(self) -> int:
        return len(self.spec.numeric)

    @property
    def n_treatments(self) -> int:
        return len(self.spec.treatments)

    def encode(self, column: str, values: pd.Series) -> np.ndarray:
        index = {v: i + 1 for i, v in enumerate(self.vocabularies[column])}
        return np.array([index.get(str(v), OOV_INDEX) for v in values], dtype=np.int32)

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Feature rows -> the network's named inputs (float32 / int32)."""
        # the cell as the model knows it: a scenario answered from a coarser cell is
        # that cell's names (features.scenario_features), as its rows were trained
        source = {c: ANSWERING.get(c, c) for c in self.spec.categorical}
        out: dict[str, np.ndarray] = {
            input_name(c): self.encode(c, frame[source[c] if source[c] in frame.columns else c]).reshape(
                -1, 1
            )
            for c in self.spec.categorical
        }
        x = (self._numeric_raw(frame, self.spec) - np.asarray(self.means)) / np.asarray(self.stds)
        out[NUMERIC_INPUT] = x.astype(np.float32)
        for name, cols in ((TREAT_INPUT, self.spec.treat_columns), (DEPTH_INPUT, self.spec.depth_columns)):
            out[name] = np.nan_to_num(frame[list(cols)].to_numpy(np.float64), nan=0.0).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "numeric_order": list(self.spec.numeric),
            "treatment_order": list(self.spec.treatments),
            "categorical_order": list(self.spec.categorical),
            "oov_index": OOV_INDEX,
            "vocabularies": self.vocabularies,
            "means": self.means,
            "stds": self.stds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessor:
        spec = FeatureSpec.from_dict(d["spec"])
        if list(spec.numeric) != list(d["numeric_order"]):
            raise ValueError("preprocessing.json: numeric feature order does not match its spec")
        return cls(
            spec, {k: list(v) for k, v in d["vocabularies"].items()}, list(d["means"]), list(d["stds"])
        )
