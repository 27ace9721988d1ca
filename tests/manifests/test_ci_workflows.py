"""The GitHub workflows: tests on pull requests; on pushes to main that touch
what goes into an image, every image is built and pushed under the commit's
SHA and the pipelines are compiled against those images and uploaded."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifest_checks import REPO, all_dockerfiles, copy_flags, parse_dockerfile, without_flags

WORKFLOWS = REPO / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in doc:
        doc["on"] = doc.pop(True)
    return dict(doc)


def _steps(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_tests_run_on_pull_requests() -> None:
    ci = _load("ci.yml")
    assert "pull_request" in ci["on"]
    assert "test" in ci["jobs"]
    assert any("run" in s for s in ci["jobs"]["test"]["steps"])


def test_every_action_is_pinned() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for job in _load(path.name)["jobs"].values():
            for step in job["steps"]:
                uses = step.get("uses")
                if uses:
                    assert re.fullmatch(
                        r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", uses
                    ), f"{path.name}: {uses}"


def test_pushes_to_main_that_change_an_image_build_it() -> None:
    wf = _load("images.yml")
    push = wf["on"]["push"]
    assert push["branches"] == ["main"]
    patterns = push["paths"]
    # whatever a Dockerfile copies is a path that triggers the build
    for dockerfile in all_dockerfiles():
        assert any(fnmatch.fnmatch(str(dockerfile.relative_to(REPO)), p) for p in patterns), dockerfile
        for ins in parse_dockerfile(dockerfile):
            if ins.keyword != "COPY" or "from" in copy_flags(ins.args):
                continue
            for src in without_flags(ins.args)[:-1]:
                probe = src if not (REPO / src).is_dir() else f"{src}/x.py"
                assert any(fnmatch.fnmatch(probe, p) for p in patterns), f"{src} does not trigger images.yml"
    assert wf["permissions"] == {"contents": "read"}


def test_every_image_is_built_and_pushed_under_the_commit() -> None:
    build = _load("images.yml")["jobs"]["build"]
    assert build["permissions"]["packages"] == "write"
    images = build["strategy"]["matrix"]["image"]
    assert sorted(images) == sorted(p.parent.name for p in all_dockerfiles())
    (login,) = _steps(build, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    (push,) = _steps(build, "docker/build-push-action")
    w = push["with"]
    assert w["context"] == "." and w["file"] == "containers/${{ matrix.image }}/Dockerfile"
    assert w["push"] is True
    assert w["tags"].endswith("/${{ matrix.image }}:${{ github.sha }}")
    assert "GIT_SHA=${{ github.sha }}" in w["build-args"]


def test_the_pipelines_are_compiled_against_those_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoroi.config import load_config

    compile_job = _load("images.yml")["jobs"]["compile"]
    assert compile_job["needs"] == "build"
    (step,) = [s for s in compile_job["steps"] if "autoroi compile" in str(s.get("run", ""))]
    assert "--output build/pipelines" in step["run"]
    env = step["env"]
    # the variables are config overrides autoroi understands (AUTOROI_<SECTION>__<FIELD>)
    for var in [v for v in os.environ if v.startswith("AUTOROI_")]:
        monkeypatch.delenv(var)
    sample = {"${{ github.sha }}": "0123abc"}
    for k, v in env.items():
        value = re.sub(
            r"\$\{\{ steps\.images\.outputs\.(\w+) \}\}", r"ghcr.io/acme/autoroi/\1:0123abc@sha256:00", v
        )
        monkeypatch.setenv(k, sample.get(v, value))
    cfg = load_config(None)
    assert cfg.kfp.image("components").startswith("ghcr.io/acme/autoroi/components:0123abc")
    assert cfg.kfp.image("spark").startswith("ghcr.io/acme/autoroi/spark:0123abc")
    assert cfg.kfp.image("trainer").startswith("ghcr.io/acme/autoroi/trainer:0123abc")
    assert cfg.serving.image.startswith("ghcr.io/acme/autoroi/serving:0123abc")
    uploads = [s["with"]["path"] for s in _steps(compile_job, "actions/upload-artifact")]
    assert "build/pipelines/*.yaml" in uploads


def test_ci_renders_the_overlay_it_documents() -> None:
    """The images the workflow sets in the prod overlay are the overlay's own."""
    compile_job = _load("images.yml")["jobs"]["compile"]
    (step,) = [s for s in compile_job["steps"] if "kustomize edit set image" in str(s.get("run", ""))]
    overlay = yaml.safe_load((REPO / "manifests/overlays/prod/kustomization.yaml").read_text())
    names = {i["name"] for i in overlay["images"]}
    for name in names:
        assert f'"{name}=' in step["run"], name
    assert Path(REPO / "manifests/overlays/prod").is_dir()
