"""The committed InferenceService is what autoroi.deploy.kserve builds: a
fresh rendering by manifests/generate.py gives the same bytes."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import yaml
from manifest_checks import MANIFESTS


def _generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autoroi_manifests_generate", MANIFESTS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date() -> None:
    gen = _generate()
    for path, text in gen.outputs().items():
        assert path.exists(), f"{path} is missing: run .venv/bin/python manifests/generate.py"
        assert (
            path.read_text(encoding="utf-8") == text
        ), f"{path.relative_to(MANIFESTS.parent)} is stale: run .venv/bin/python manifests/generate.py"
    assert gen.main(["--check"]) == 0


def test_the_inference_service_is_the_deploy_pipelines_object() -> None:
    from autoroi.config import load_config
    from autoroi.deploy.kserve import inference_service

    gen = _generate()
    committed = yaml.safe_load(gen.ISVC_FILE.read_text())
    cfg = load_config(gen.CONFIG)
    assert committed == inference_service(
        gen.PLACEHOLDER_VERSION,
        image=cfg.serving.image,
        lake_uri=cfg.lake.uri,
        options=gen.serving_options(cfg),
    )
    # the predictor reads the lake with the curated-only credentials
    env = {e["name"]: e for e in committed["spec"]["predictor"]["containers"][0]["env"]}
    assert (
        env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"]
        == cfg.cluster.lake_secret
        == "autoroi-lake-s3"
    )


def test_another_version_can_be_pinned() -> None:
    gen = _generate()
    text = gen.render_inference_service("v20260302-101500-0badcafe")
    obj = yaml.safe_load(text)
    args = obj["spec"]["predictor"]["containers"][0]["args"]
    assert args[args.index("--version") + 1] == "v20260302-101500-0badcafe"
