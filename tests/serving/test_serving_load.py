"""Loading a model version into the server (in this process, without HTTP):
from an artifact folder, from a local lake's registry and from an S3 lake;
what a broken artifact does; the command line; the mapping of FastAPI's
request errors to the contract's error body."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from autoroi.config import LakeConfig
from autoroi.errors import ConfigError, RegistryError
from autoroi.lake.storage import open_lake
from autoroi.registry import register_model

GATE = {"passed": True, "reasons": [], "checks": []}

pytestmark = pytest.mark.slow  # trains a small model; the HTTP tests also start a server


def register(lake_uri: str, artifact: Path, lake_config: LakeConfig | None = None) -> str:
    lake = open_lake(lake_uri, lake_config)
    mv = register_model(
        lake,
        artifact,
        {"master_version": "m1", "metrics": {"wape": 0.2}, "gate": GATE},
        {"folds": []},
        "<html></html>",
        "pending_approval",
    )
    return mv.version


def ask(model: Any, instances: list[dict[str, Any]]) -> dict[str, Any]:
    return model.predict(model.preprocess({"instances": instances}))


def test_loads_an_artifact_folder(roi_artifact: Path) -> None:
    from serving.roi_server.model import RoiModelServer

    model = RoiModelServer(model_dir=roi_artifact)
    assert not model.ready
    assert model.load() is True and model.ready
    assert model.name == "roi" and model.version == "test-v1"
    answer = ask(model, model.sample_instances())
    assert answer["model_version"] == "test-v1" and len(answer["predictions"]) == 2


def test_loads_a_registry_version_from_a_local_lake(roi_artifact: Path, tmp_path: Path) -> None:
    from serving.roi_server.model import RoiModelServer

    lake = str(tmp_path / "lake")
    version = register(lake, roi_artifact)
    model = RoiModelServer(lake_uri=lake, version=version)
    model.load()
    assert model.ready and model.version == version  # the registry's name, not the artifact's
    assert ask(model, model.sample_instances())["predictions"][0]["model_version"] == version
    assert not list(tmp_path.glob("roi-model-*"))


def test_refuses_a_registry_artifact_changed_after_registration(roi_artifact: Path, tmp_path: Path) -> None:
    from serving.roi_server.model import RoiModelServer

    lake = str(tmp_path / "lake")
    version = register(lake, roi_artifact)
    stored = tmp_path / "lake" / "models" / "roi" / version / "model" / "preprocessing.json"
    stored.write_text(stored.read_text() + " ")
    model = RoiModelServer(lake_uri=lake, version=version)
    with pytest.raises(RegistryError, match="digest"):
        model.load()
    assert not model.ready
    with pytest.raises(RegistryError, match="does not exist"):
        RoiModelServer(lake_uri=lake, version="v-missing").load()


def test_loads_a_registry_version_from_an_s3_lake(roi_artifact: Path, s3_lake: Any) -> None:
    from serving.roi_server.model import RoiModelServer

    cfg = LakeConfig(s3_endpoint_url=s3_lake.endpoint_url)
    version = register(s3_lake.uri, roi_artifact, cfg)
    model = RoiModelServer(lake_uri=s3_lake.uri, version=version, lake_config=cfg)
    model.load()
    assert model.ready and model.version == version


def test_a_broken_artifact_is_a_load_error(roi_artifact: Path, tmp_path: Path) -> None:
    from serving.roi_server.model import ModelLoadError, RoiModelServer

    with pytest.raises(ModelLoadError, match="missing"):
        RoiModelServer(model_dir=tmp_path).load()
    broken = shutil.copytree(roi_artifact, tmp_path / "broken")
    (broken / "preprocessing.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load the model artifact"):
        RoiModelServer(model_dir=broken).load()


def test_one_source_is_required() -> None:
    from serving.roi_server.model import RoiModelServer

    with pytest.raises(ConfigError):
        RoiModelServer()
    with pytest.raises(ConfigError):
        RoiModelServer(model_dir="x", lake_uri="y", version="v")
    with pytest.raises(ConfigError, match="version"):
        RoiModelServer(lake_uri="y")


def test_command_line() -> None:
    from serving.roi_server.__main__ import parse_args

    args = parse_args(
        ["--model-dir", "m", "--http_port", "9001", "--enable_grpc", "false", "--max-batch", "8"]
    )
    assert (args.model_dir, args.http_port, args.enable_grpc, args.max_batch) == ("m", 9001, False, 8)
    assert args.model_name == "roi"
    args = parse_args(["--lake", "s3://b/lake", "--version", "v1"])
    assert (args.lake, args.version, args.model_dir) == ("s3://b/lake", "v1", None)
    for bad in (
        [],
        ["--model-dir", "m", "--lake", "l"],
        ["--lake", "l"],
        ["--model-dir", "m", "--version", "v"],
        ["--model-dir", "m", "--max-batch", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_fastapi_request_errors_become_the_contract_body() -> None:
    from serving.roi_server.errors import _field_and_reason, json_path

    assert json_path(["inputs", 0, "datatype"]) == "inputs[0].datatype"
    assert json_path([]) == ""
    union: list[dict[str, Any]] = [
        {
            "type": "missing",
            "loc": ("body", "InferenceRequest", "inputs", 0, "shape"),
            "msg": "Field required",
        },
        {"type": "bytes_type", "loc": ("body", "bytes"), "msg": "Input should be a valid bytes"},
    ]
    assert _field_and_reason(union) == ("inputs[0].shape", "Field required")
    parameter = [
        {"type": "float_type", "loc": ("body", "InferenceRequest", "parameters", "a", "float"), "msg": "m"},
    ]
    assert _field_and_reason(parameter) == ("parameters.a", "m")
    invalid = [
        {"type": "json_invalid", "loc": ("body", 11), "msg": "JSON decode error", "ctx": {"error": "x"}}
    ]
    assert _field_and_reason(invalid) == ("body", "not valid JSON: x at character 11")
    assert _field_and_reason([]) == ("body", "not a valid inference request")
