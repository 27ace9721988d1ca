"""The ``roi`` KServe model: one registered model version, scored through the
artifact's own ``RoiModel.predict``.

Request flow (KServe calls ``preprocess`` -> ``predict``):

- ``preprocess`` turns a v1 body or a v2 ``InferRequest`` into checked scenario
  rows (``autoroi.serving.validation``); a bad request raises
  :class:`~serving.roi_server.errors.RequestRejected` (400, or 413 for a batch
  over ``--max-batch``) before the model runs;
- ``predict`` scores the rows and answers in the request's protocol
  (``autoroi.serving.outputs``): v1 ``{"predictions": [...], "model_name",
  "model_version"}``, v2 an ``InferResponse`` with one tensor per output.

Scoring goes through :class:`autoroi.model.fastpath.FastPredictor` (lookups
precomputed at load, the network as a compiled graph: well under a millisecond
for one scenario), which gives ``RoiModel.predict``'s numbers; ``load`` builds
it and checks it against ``RoiModel.predict`` on a sample. ``fast_path``:
``"auto"`` (default) falls back to ``RoiModel.predict`` (tens of milliseconds
per request) when the fast path cannot be built for this artifact, ``"on"``
refuses to load then, ``"off"`` always uses ``RoiModel.predict``.

``load`` reads the artifact from a local folder or fetches a registry version
from the lake (local folder or S3), whose digest ``fetch_artifact`` checks,
then scores a small sample through the same path as a request (the first call
into TensorFlow is slow, and a model that cannot score must not report
ready), and only then sets ``ready``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from kserve import Model
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from autoroi.config import LakeConfig
from autoroi.errors import AutoroiError, ConfigError
from autoroi.lake.storage import open_lake
from autoroi.model import features as F
from autoroi.model.artifact import RoiModel, load_model
from autoroi.model.fastpath import FastPathUnavailable, FastPredictor, NotCovered
from autoroi.registry import fetch_artifact, get_version
from autoroi.serving.options import options_document
from autoroi.serving.outputs import (
    OUTPUTS,
    Columns,
    input_metadata,
    output_metadata,
    rows_in,
    v1_predictions,
    v2_outputs,
)
from autoroi.serving.validation import (
    MAX_WEEK,
    MIN_WEEK,
    InputError,
    Limits,
    Scenarios,
    Tensor,
    Vocabulary,
    check_v1,
    check_v2,
)
from serving.roi_server.errors import RequestRejected

log = logging.getLogger(__name__)

MODEL_NAME = "roi"
WARM_UP_AMOUNT = 500.0
FAST_PATH_MODES = ("auto", "on", "off")


class ModelLoadError(AutoroiError):
    """The model version cannot be loaded or cannot score its warm-up sample."""


@dataclass(frozen=True)
class Batch:
    """Checked scenario rows and what the answer needs from the request:
    ``request`` is the v2 request (``None`` for v1), ``outputs`` the v2 output
    tensors asked for (``None``: all)."""

    scenarios: Scenarios
    request: InferRequest | None = None
    outputs: list[str] | None = None


def _json_body(raw: bytes | bytearray | str) -> Any:
    """A v1 body KServe left undecoded (a content type it does not read as JSON)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError("body", f"not valid JSON: {e}") from e
    except RecursionError as e:
        raise InputError("body", "not valid JSON: nested too deeply") from e


def _tensor(inp: InferInput) -> Tensor:
    data = inp.data
    # gRPC raw_input_contents: KServe keeps the bytes aside and decodes them on demand
    if not data and getattr(inp, "_raw_data", None) is not None:
        try:
            data = inp.as_numpy().reshape(-1).tolist()
        except (ValueError, TypeError) as e:
            raise InputError(f"{inp.name}.data", f"cannot be read as {inp.datatype}: {e}") from e
    return Tensor(name=str(inp.name), datatype=str(inp.datatype), shape=list(inp.shape), data=data or [])


def _requested_outputs(request: InferRequest) -> list[str] | None:
    if not request.request_outputs:
        return None
    names: list[str] = []
    for k, out in enumerate(request.request_outputs):
        if out.name not in OUTPUTS:
            reason = f"unknown output {out.name!r}; one of {', '.join(OUTPUTS)}"
            raise InputError(f"outputs[{k}].name", reason)
        if out.name not in names:
            names.append(out.name)
    return names


class RoiModelServer(Model):
    """The KServe model ``roi`` (module docstring). Give ``model_dir`` (an
    artifact folder) or ``lake_uri`` and ``version`` (a registry version)."""

    def __init__(
        self,
        name: str = MODEL_NAME,
        *,
        model_dir: str | Path | None = None,
        lake_uri: str | None = None,
        version: str | None = None,
        lake_config: LakeConfig | None = None,
        limits: Limits | None = None,
        fast_path: str = "auto",
    ) -> None:
        super().__init__(name)
        if fast_path not in FAST_PATH_MODES:
            raise ConfigError(f"fast_path must be one of {', '.join(FAST_PATH_MODES)}, got {fast_path!r}")
        if (model_dir is None) == (lake_uri is None):
            raise ConfigError("give either a model folder or a lake URI and a version")
        if lake_uri is not None and not version:
            raise ConfigError("loading from the lake needs the model version (--version)")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.lake_uri = lake_uri
        self.requested_version = version
        self.lake_config = lake_config or LakeConfig()
        self.limits = limits or Limits()
        self.version: str | None = None
        self.model: RoiModel | None = None
        self.vocabulary: Vocabulary | None = None
        self.fast_path = fast_path
        self.fast: FastPredictor | None = None
        self.options: dict[str, Any] | None = None

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> bool:
        started = time.perf_counter()
        if self.model_dir is not None:
            model = self._load_artifact(self.model_dir)
            version = model.version or self.model_dir.name
            source = str(self.model_dir)
        else:
            assert self.lake_uri is not None and self.requested_version is not None
            lake = open_lake(self.lake_uri, self.lake_config)
            mv = get_version(lake, self.requested_version)
            with tempfile.TemporaryDirectory(prefix="roi-model-") as tmp:
                path = fetch_artifact(lake, mv.version, Path(tmp) / "model")  # checks the digest
                model = self._load_artifact(path)
            version, source = mv.version, mv.artifact_location
            log.info("model version %s is %s in the registry", version, mv.status or "of unknown status")
        self.model = model
        self.version = version
        self.vocabulary = Vocabulary.from_context(model.context, model.metadata.get("incentive_types_seen"))
        # what the dashboard's pickers offer (GET /v2/models/roi/options), from the artifact's context
        self.options = options_document(model.context, model.metadata.get("incentive_types_seen"), version)
        self.fast = self._build_fast_path(model, self.vocabulary)
        self._warm_up()
        self.ready = True
        log.info(
            "model %s version %s from %s ready in %.1f s (%d regions, %d vehicle models, max batch %d,"
            " %s)",
            self.name,
            version,
            source,
            time.perf_counter() - started,
            len(self.vocabulary.regions),
            len(self.vocabulary.vehicle_models),
            self.limits.max_batch,
            "fast path" if self.fast is not None else "reference path (RoiModel.predict)",
        )
        return self.ready

    def _build_fast_path(self, model: RoiModel, vocabulary: Vocabulary) -> FastPredictor | None:
        if self.fast_path == "off":
            return None
        try:
            return FastPredictor.build(
                model, pairs=vocabulary.pairs, first_week=MIN_WEEK, last_week=MAX_WEEK, verify=True
            )
        except FastPathUnavailable as e:
            if self.fast_path == "on":
                raise ModelLoadError(f"model version {self.version}: no fast path: {e}") from e
            log.warning("model version %s: no fast path, using RoiModel.predict: %s", self.version, e)
            return None

    @staticmethod
    def _load_artifact(path: Path) -> RoiModel:
        try:
            return load_model(path)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load the model artifact {path}: {e}") from e

    def sample_instances(self) -> list[dict[str, Any]]:
        """Two v1 instances the model can score: one with an incentive, one
        without, in a finest-level cell at the newest week it knows."""
        assert self.model is not None and self.vocabulary is not None
        ctx = self.model.context
        fine = ctx[ctx[F.CELL_LEVEL] == F.FINEST_LEVEL]
        row = (fine if len(fine) else ctx).sort_values([F.REGION, F.VEHICLE_MODEL, F.WEEK]).iloc[-1]
        week = pd.Timestamp(row[F.WEEK]).date().isoformat()
        kinds = [t for t in self.vocabulary.incentive_types if t != F.NO_INCENTIVE]
        base = {F.REGION: str(row[F.REGION]), F.VEHICLE_MODEL: str(row[F.VEHICLE_MODEL]), F.WEEK: week}
        out = [{**base, F.INCENTIVE_TYPE: F.NO_INCENTIVE, F.INCENTIVE_AMOUNT: 0.0}]
        if kinds:
            amount = min(WARM_UP_AMOUNT, self.limits.max_amount)
            out.insert(0, {**base, F.INCENTIVE_TYPE: kinds[0], F.INCENTIVE_AMOUNT: amount})
        return out

    def _warm_up(self) -> None:
        started = time.perf_counter()
        try:
            answer = self.predict(self.preprocess({"instances": self.sample_instances()}))
        except (InputError, RequestRejected) as e:
            raise ModelLoadError(f"model version {self.version} refuses its own warm-up sample: {e}") from e
        units = [p["predicted_units"] for p in answer["predictions"]]
        if any(u is None for u in units):
            raise ModelLoadError(f"model version {self.version}: non-finite units for its warm-up sample")
        log.info("warm-up prediction in %.0f ms: %s units", (time.perf_counter() - started) * 1e3, units)

    # -- v2 metadata -----------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return input_metadata()

    def get_output_types(self) -> list[dict[str, Any]]:
        return output_metadata()

    # -- requests --------------------------------------------------------------------------
    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Batch:
        """Checked scenario rows of a v1 body or a v2 request; a bad request
        raises ``RequestRejected`` here, before the model runs."""
        assert self.vocabulary is not None
        try:
            if isinstance(payload, ModelInferRequest):
                payload = InferRequest.from_grpc(payload)
            if isinstance(payload, InferRequest):
                tensors = [_tensor(t) for t in payload.inputs]
                scenarios = check_v2(tensors, self.vocabulary, self.limits)
                return Batch(scenarios, payload, _requested_outputs(payload))
            if isinstance(payload, bytes | bytearray | str):
                payload = _json_body(payload)
            return Batch(check_v1(payload, self.vocabulary, self.limits))
        except InputError as e:
            raise RequestRejected.of(e) from e

    def predict(
        self,
        payload: Batch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        frame = self._score(payload.scenarios)
        request = payload.request
        if request is None:
            return {
                "predictions": v1_predictions(frame, self.version),
                "model_name": self.name,
                "model_version": self.version,
            }
        n = rows_in(frame)
        outputs = [
            InferOutput(name=name, shape=[n], datatype=datatype, data=values)
            for name, datatype, values in v2_outputs(frame, payload.outputs)
        ]
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            model_version=self.version,
            use_binary_outputs=bool(request.use_binary_outputs),
        )

    def _score(self, scenarios: Scenarios) -> Columns:
        """The prediction columns of checked scenarios: through the fast path,
        or ``RoiModel.predict`` where the fast path does not cover them."""
        assert self.model is not None
        if self.fast is not None:
            try:
                return self.fast.predict(
                    scenarios.region,
                    scenarios.vehicle_model,
                    scenarios.week_start,
                    scenarios.incentive_type,
                    scenarios.incentive_amount,
                )
            except NotCovered as e:  # checked input should always be covered: say so, answer anyway
                log.warning("the fast path does not cover a checked request (%s); using RoiModel.predict", e)
        try:
            frame = self.model.predict(scenarios.frame())
        except F.ScenarioError as e:
            # the server's checks should have refused it first: say so, but answer 400, not 500
            log.warning("the model refused a scenario that passed the server's checks: %s", e)
            raise RequestRejected(e.field, str(e).split(": ", 1)[-1]) from e
        if len(frame) != len(scenarios):
            raise RuntimeError(f"the model answered {len(frame)} rows for {len(scenarios)} scenarios")
        return frame
