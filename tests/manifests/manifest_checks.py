"""Static checks of the cluster path, shared by tests/manifests/ and ``make scan``.

Nothing here needs a cluster, a registry or a Docker engine:

- :func:`render` runs ``kubectl kustomize`` on an overlay (optionally with the
  optional components added, in a scratch copy of ``manifests/``);
- :func:`k8s_schema_errors` validates an object against the Kubernetes
  OpenAPI schema of :data:`K8S_VERSION` (the ``kubernetes-validate`` wheel
  carries the schemas, so nothing is fetched), :func:`crd_schema_errors` a
  custom resource against its CRD;
- :func:`run_checkov` scans rendered manifests and Dockerfiles with checkov
  (its own locked environment, ``tests/manifests/checkov/``), and
  :func:`unsuppressed` applies ``manifests/security-suppressions.yaml``.

    .venv/bin/python tests/manifests/manifest_checks.py scan     # what `make scan` runs
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CONTAINERS = REPO / "containers"
OVERLAYS = ("dev", "prod")
OPTIONAL_COMPONENTS = ("spark-on-kubernetes", "inferenceservice", "monitoring")
# the renders the checks look at: the overlays as they are, and prod with every
# optional component (Spark on Kubernetes, the declarative InferenceService,
# the Prometheus monitors)
RENDERS = (*OVERLAYS, "prod-all-components")
SUPPRESSIONS = MANIFESTS / "security-suppressions.yaml"
CHECKOV_PROJECT = Path(__file__).resolve().parent / "checkov"
UV = REPO / ".tools" / "bin" / "uv"

# The Kubernetes minor version whose OpenAPI schema every object must satisfy
# (the oldest one supported: KServe 0.14+ and Kubeflow 1.9+ run on 1.29+, and
# CronJob.timeZone is GA since 1.27). kubernetes-validate ships the schema.
K8S_VERSION = "1.31.0"

# KServe's InferenceService CRD, a gzipped copy of the reference
# (serving.kserve.io_inferenceservices.yaml) kept in the repository so the
# check runs wherever the tests run; AUTOROI_KSERVE_CRD points at another.
KSERVE_CRD = Path(
    os.environ.get("AUTOROI_KSERVE_CRD")
    or REPO / "tests" / "data" / "serving.kserve.io_inferenceservices.yaml.gz"
)

POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
    "InferenceService": ("spec", "predictor"),
}


class ToolMissing(RuntimeError):
    """A tool the check needs is not installed (the message says which, and how to get it)."""


def missing_tool(e: ToolMissing) -> None:
    """In CI a missing tool fails the check; elsewhere it is skipped, saying which."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(str(e))
    pytest.skip(str(e))


# --------------------------------------------------------------------------- rendering


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise ToolMissing("kubectl (with its built-in kustomize) is not on PATH")
    return path


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR`` as a list of objects."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def scratch_manifests(workdir: Path) -> Path:
    """A copy of ``manifests/`` to change (add components, set images) and render."""
    target = workdir / "manifests"
    shutil.copytree(MANIFESTS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def add_to_overlay(manifests: Path, overlay: str, components: Iterable[str] = (), **fields: Any) -> None:
    """Add components (by folder name under components/) and top-level fields
    (such as ``images``) to an overlay of a scratch copy."""
    path = manifests / "overlays" / overlay / "kustomization.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["components"] = list(doc.get("components") or []) + [f"../../components/{c}" for c in components]
    doc.update(fields)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def render(overlay: str, components: Iterable[str] = (), **fields: Any) -> list[dict[str, Any]]:
    """An overlay as ``kubectl apply -k`` would send it; with ``components``
    or other fields, from a scratch copy that has them added."""
    components = tuple(components)
    if not components and not fields:
        return kustomize(MANIFESTS / "overlays" / overlay)
    with tempfile.TemporaryDirectory(prefix="autoroi-manifests-") as tmp:
        copy = scratch_manifests(Path(tmp))
        add_to_overlay(copy, overlay, components, **fields)
        return kustomize(copy / "overlays" / overlay)


def ident(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


# --------------------------------------------------------------------------- schemas


def k8s_schema_errors(obj: Mapping[str, Any], version: str = K8S_VERSION) -> list[str]:
    """Errors of ``obj`` against the strict OpenAPI schema of Kubernetes
    ``version`` (unknown fields are errors, as ``kubectl apply --validate=strict``)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema in Kubernetes {version}: {e.message}"]
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        return [f"{where}: {e.message}"]
    return []


def _int_or_string(node: Any) -> Any:
    """jsonschema ignores ``x-kubernetes-int-or-string``: spell it out."""
    if isinstance(node, dict):
        out = {k: _int_or_string(v) for k, v in node.items()}
        if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(node, list):
        return [_int_or_string(v) for v in node]
    return node


def crd_schema(crd_file: Path, version: str) -> dict[str, Any]:
    import gzip

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = crd_file.read_bytes()
    text = (gzip.decompress(raw) if crd_file.suffix == ".gz" else raw).decode("utf-8")
    crd = yaml.load(text, Loader=loader)  # a safe loader
    (spec,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return dict(_int_or_string(spec["schema"]["openAPIV3Schema"]))


def _unknown_fields(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    """Keys a structural schema does not declare: the API server drops them silently."""
    out: list[str] = []
    if path == ".metadata" or schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if props is not None and key in props:
                out += _unknown_fields(props[key], sub, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += _unknown_fields(extra, sub, f"{path}.{key}")
            elif props is not None:
                out.append(f"{path}.{key}: not in the schema")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += _unknown_fields(schema["items"], item, f"{path}[{i}]")
    return out


def crd_schema_errors(schema: Mapping[str, Any], obj: Mapping[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]
    return errors + _unknown_fields(schema, obj, "")


# --------------------------------------------------------------------------- pods


def pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, pod spec)`` of every pod template an object carries."""
    path = POD_TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return
    node: Any = obj
    for key in path:
        node = (node or {}).get(key)
    if isinstance(node, dict):
        yield ident(obj), node


def containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What the Pod Security "restricted" level (and this project's rule of a
    read-only root filesystem) rejects in a pod spec."""
    out = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key} is set")
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            out.append(f"volume {vol.get('name')} is a hostPath")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    for c in containers(pod):
        name = c.get("name")
        sc = c.get("securityContext") or {}
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot is not true (pod or container)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser is 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            out.append(f"{name}: capabilities.drop is not [ALL]")
        if set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile is not RuntimeDefault (pod or container)")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem is not true")
    return out


# --------------------------------------------------------------------------- Dockerfiles


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        text = " ".join(buf)
        buf = []
        keyword, _, args = text.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def without_flags(args: str) -> list[str]:
    return [a for a in shlex.split(args) if not a.startswith("--")]


def copy_flags(args: str) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in shlex.split(args) if a.startswith("--") and "=" in a)


# --------------------------------------------------------------------------- checkov


@dataclass(frozen=True)
class Finding:
    check_id: str
    name: str
    framework: str
    resource: str  # "Kind.namespace.name" (kubernetes) or the Dockerfile's repo path (dockerfile)
    file: str

    def __str__(self) -> str:
        return f"{self.check_id} {self.resource}: {self.name}"


def checkov_command() -> list[str]:
    """checkov from its own locked environment (installed on first use)."""
    exe = CHECKOV_PROJECT / ".venv" / "bin" / "checkov"
    if not exe.exists():
        if not UV.exists():
            raise ToolMissing(f"{UV} is missing: run `make venv` first")
        proc = subprocess.run(
            [str(UV), "sync", "--project", str(CHECKOV_PROJECT), "--frozen", "--quiet"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0 or not exe.exists():
            raise ToolMissing(
                f"checkov could not be installed from {CHECKOV_PROJECT / 'uv.lock'}:"
                f" {proc.stderr.strip()[-500:]}"
            )
    return [str(exe)]


def run_checkov(rendered: Mapping[str, list[dict[str, Any]]], dockerfiles: Iterable[Path]) -> list[Finding]:
    """Failed checks of checkov over the rendered manifests (one file per
    render) and the Dockerfiles, without any suppression applied."""
    with tempfile.TemporaryDirectory(prefix="autoroi-checkov-") as tmp:
        root = Path(tmp) / "scan"
        (root / "k8s").mkdir(parents=True)
        for name, objs in rendered.items():
            (root / "k8s" / f"{name}.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
        # Dockerfiles under their repository paths (checkov ignores --file next to --directory)
        for f in dockerfiles:
            rel = Path(f).resolve().relative_to(REPO)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, root / rel)
        cmd = [
            *checkov_command(),
            "--directory",
            str(root),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",  # no call home: the policies in the wheel
        ]
        env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp, check=False)
        if proc.returncode not in (0, 1):
            raise AssertionError(f"checkov failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        try:
            reports = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"checkov printed no JSON: {proc.stdout[:500]} {proc.stderr[-1000:]}") from e
    if isinstance(reports, dict):
        reports = [reports]
    findings = []
    for report in reports:
        framework = str(report.get("check_type"))
        for r in (report.get("results") or {}).get("failed_checks") or []:
            resource = str(r.get("resource"))
            file = str(r.get("file_path") or "").lstrip("/")
            if framework == "dockerfile":
                resource = file  # the repository path
            findings.append(Finding(str(r["check_id"]), str(r.get("check_name")), framework, resource, file))
    return sorted(set(findings), key=lambda f: (f.check_id, f.resource))


@dataclass(frozen=True)
class Suppression:
    check: str
    resources: tuple[str, ...]  # fnmatch patterns of Finding.resource
    reason: str

    def covers(self, f: Finding) -> bool:
        return f.check_id == self.check and any(fnmatch.fnmatchcase(f.resource, p) for p in self.resources)


def load_suppressions(path: Path = SUPPRESSIONS) -> list[Suppression]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for item in doc.get("checkov") or []:
        out.append(
            Suppression(str(item["check"]), tuple(item["resources"]), " ".join(str(item["reason"]).split()))
        )
    return out


def unsuppressed(findings: Iterable[Finding], suppressions: Iterable[Suppression]) -> list[Finding]:
    sups = list(suppressions)
    return [f for f in findings if not any(s.covers(f) for s in sups)]


def unused(findings: Iterable[Finding], suppressions: Iterable[Suppression]) -> list[Suppression]:
    fs = list(findings)
    return [s for s in suppressions if not any(s.covers(f) for f in fs)]


def all_dockerfiles() -> list[Path]:
    return sorted(CONTAINERS.glob("*/Dockerfile"))


def scan_renders() -> dict[str, list[dict[str, Any]]]:
    """What the scan looks at: each overlay, and prod with every optional component."""
    out = {o: render(o) for o in OVERLAYS}
    out["prod-all-components"] = render("prod", OPTIONAL_COMPONENTS)
    return out


def _scan_main() -> int:
    findings = run_checkov(scan_renders(), all_dockerfiles())
    sups = load_suppressions()
    left = unsuppressed(findings, sups)
    for s in sups:
        hits = [f for f in findings if s.covers(f)]
        print(f"suppressed {s.check} ({len(hits)}x): {s.reason}")
    for s in unused(findings, sups):
        print(f"UNUSED suppression {s.check} {s.resources}")
    for f in left:
        print(f"FAILED {f}")
    print(f"checkov: {len(findings)} failed checks, {len(findings) - len(left)} suppressed, {len(left)} left")
    return 1 if left or unused(findings, sups) else 0


if __name__ == "__main__":
    if sys.argv[1:] != ["scan"]:
        sys.exit(f"usage: {sys.argv[0]} scan")
    sys.exit(_scan_main())


__all__ = [
    "K8S_VERSION",
    "KSERVE_CRD",
    "MANIFESTS",
    "OPTIONAL_COMPONENTS",
    "OVERLAYS",
    "RENDERS",
    "REPO",
    "Finding",
    "Suppression",
    "ToolMissing",
    "containers",
    "copy_flags",
    "crd_schema",
    "crd_schema_errors",
    "ident",
    "k8s_schema_errors",
    "load_suppressions",
    "missing_tool",
    "parse_dockerfile",
    "pod_specs",
    "render",
    "restricted_violations",
    "run_checkov",
    "stages",
    "unsuppressed",
    "unused",
    "without_flags",
]
