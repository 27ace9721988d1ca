"""The model artifact: one folder that holds everything serving needs.

Layout of ``<dir>/``::

    model.keras          the Keras 3 network (custom layers autoroi>IncentiveLift, autoroi>ExpRate)
    preprocessing.json   format version, feature spec and order, vocabularies
                         (index 0 = out-of-vocabulary), normalization means and
                         standard deviations, take rates per incentive type,
                         hyperparameters, model version, extra metadata
    context.parquet      the context table (features.build_context): per cell
                         and week, the cell's attributes and history features

:func:`save_model` writes the folder under a temporary name beside the target
and renames it into place, so a crash never leaves a half-written artifact
under the final name. :func:`artifact_digest` is the sha256 of the folder's
files (names and bytes), for the registry and the approval check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.network import CUSTOM_OBJECTS
from autoroi.model.preprocess import Preprocessor
from autoroi.model.roi import score_features

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
CONTEXT_FILE = "context.parquet"
ARTIFACT_FILES = (MODEL_FILE, PREPROCESSING_FILE, CONTEXT_FILE)
PREDICT_CHUNK = 65_536


def predict_member_rates(network: keras.Model, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Expected units for preprocessed inputs, one column per ensemble member
    (``(rows, members)``; one column for a single network): one forward pass
    per chunk, no dropout. The training path and the loaded artifact both
    predict here."""
    n = len(next(iter(inputs.values())))
    parts = []
    for lo in range(0, n, PREDICT_CHUNK):
        part = {k: v[lo : lo + PREDICT_CHUNK] for k, v in inputs.items()}
        parts.append(
            np.asarray(network(part, training=False), dtype=np.float64).reshape(
                len(part[next(iter(part))]), -1
            )
        )
    return np.concatenate(parts) if parts else np.empty((0, 1))


def predict_rates(network: keras.Model, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Expected units for preprocessed inputs: the mean over the ensemble's members."""
    return predict_member_rates(network, inputs).mean(axis=1)


@dataclass
class RoiModel:
    """A trained units model with what it needs to score scenarios."""

    network: keras.Model
    preprocessor: Preprocessor
    context: pd.DataFrame
    take_rates: dict[str, float] = field(default_factory=dict)
    uptake: dict[str, float] = field(default_factory=dict)  # features.estimate_uptake; empty: take_rates
    pull_forward: dict[str, float] = field(default_factory=dict)  # features.estimate_pull_forward
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> F.FeatureSpec:
        return self.preprocessor.spec

    # -- the training path: feature rows in, units out ---------------------------------
    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_rates(self.network, self.preprocessor.transform(frame))

    def predict_members(self, frame: pd.DataFrame) -> np.ndarray:
        """Units per ensemble member, ``(rows, members)``: the spread the ROI interval comes from."""
        return predict_member_rates(self.network, self.preprocessor.transform(frame))

    @property
    def members(self) -> int:
        return int(self.network.outputs[0].shape[-1] or 1)

    # -- the serving path: scenarios in ------------------------------------------------
    def check(self, scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Checked, typed scenarios; a ``ScenarioError`` names the bad field
        (including an incentive type the model never saw in training)."""
        checked = F.check_scenarios(scenarios)
        seen = self.metadata.get("incentive_types_seen")
        if seen is not None:
            unseen = sorted(set(checked[F.INCENTIVE_TYPE]) - {F.NO_INCENTIVE, *seen})
            if unseen:
                raise F.ScenarioError(F.INCENTIVE_TYPE, f"the model has no training data for {unseen[0]!r}")
        return checked

    def features(self, scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Checked scenarios as feature rows (:meth:`check`, then
        ``features.scenario_features`` on the artifact's context table)."""
        return F.scenario_features(self.check(scenarios), self.context, self.spec)

    def predict_units(self, scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_features(self.features(scenarios))

    def uptake_of(self, types: Any) -> np.ndarray | None:
        """Per row, the uptake of its type; None for an artifact without (it
        charges the constant take rates)."""
        return F.uptake_of(types, self.uptake) if self.uptake else None

    def predict(self, scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Per scenario: predicted and baseline units, incremental units, cost,
        incremental profit and ROI (``roi.roi_frame``), the context cell used
        and the model version.

        This is the reference implementation (training reports, validation,
        the smoke test and the dashboard's numbers come from here). The model
        server answers through :class:`autoroi.model.fastpath.FastPredictor`,
        which precomputes this method's lookups and compiles the network, and
        is tested (and checked at load) to give the same numbers."""
        feats = self.features(scenarios)
        out = score_features(self.predict_members, feats, self.take_rates, self.uptake, self.pull_forward)
        out.insert(0, F.REGION, feats[F.REGION].to_numpy())
        out.insert(1, F.VEHICLE_MODEL, feats[F.VEHICLE_MODEL].to_numpy())
        out.insert(2, F.WEEK, pd.to_datetime(feats[F.WEEK]).dt.strftime("%Y-%m-%d").to_numpy())
        out.insert(3, F.INCENTIVE_TYPE, feats[F.INCENTIVE_TYPE].to_numpy())
        out.insert(4, F.INCENTIVE_AMOUNT, feats[F.INCENTIVE_AMOUNT].to_numpy())
        out[F.CELL_LEVEL] = feats[F.CELL_LEVEL].to_numpy()
        out[F.CONTEXT_REGION], out[F.CONTEXT_MODEL] = F.reported_context(feats)
        out["model_version"] = self.version
        return out


def _preprocessing_doc(model: RoiModel) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "preprocessor": model.preprocessor.to_dict(),
        "take_rates": model.take_rates,
        "uptake": model.uptake,
        "pull_forward": model.pull_forward,
        "hyperparameters": model.hyperparameters,
        "version": model.version,
        "metadata": model.metadata,
        "keras_version": keras.__version__,
    }


def save_model(directory: str | Path, model: RoiModel, *, overwrite: bool = False) -> Path:
    """Write the artifact folder (layout in the module docstring) atomically."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"model artifact folder {target} exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        model.network.save(tmp / MODEL_FILE)
        doc = json.dumps(_preprocessing_doc(model), indent=2, sort_keys=True, default=str)
        (tmp / PREPROCESSING_FILE).write_text(doc + "\n", encoding="utf-8")
        ctx = model.context.copy()
        ctx.to_parquet(tmp / CONTEXT_FILE, index=False)
        for name in ARTIFACT_FILES:
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved model artifact %s (version %s)", target, model.version)
    return target


def load_model(directory: str | Path) -> RoiModel:
    d = Path(directory)
    missing = [n for n in ARTIFACT_FILES if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not a model artifact: missing {', '.join(missing)}")
    doc = json.loads((d / PREPROCESSING_FILE).read_text(encoding="utf-8"))
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{d}: artifact format {doc.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    network = keras.saving.load_model(d / MODEL_FILE, compile=False, custom_objects=CUSTOM_OBJECTS)
    context = pd.read_parquet(d / CONTEXT_FILE)
    context[F.WEEK] = F.to_week(context[F.WEEK]).to_numpy()
    return RoiModel(
        network=network,
        preprocessor=Preprocessor.from_dict(doc["preprocessor"]),
        context=context,
        take_rates={str(k): float(v) for k, v in doc.get("take_rates", {}).items()},
        uptake={str(k): float(v) for k, v in doc.get("uptake", {}).items()},
        pull_forward={str(k): float(v) for k, v in doc.get("pull_forward", {}).items()},
        hyperparameters=dict(doc.get("hyperparameters", {})),
        version=doc.get("version"),
        metadata=dict(doc.get("metadata", {})),
    )


def artifact_digest(directory: str | Path) -> str:
    """sha256 over the artifact's files, in name order (name, size, bytes)."""
    d = Path(directory)
    h = hashlib.sha256()
    for name in sorted(p.name for p in d.iterdir() if p.is_file()):
        data = (d / name).read_bytes()
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()
