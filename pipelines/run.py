"""Running and compiling pipelines: ``kfp.local`` on one machine, YAML for the
Kubeflow UI."""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

from autoroi.config import AutoroiConfig
from autoroi.source.db import parse_url, without_password

log = logging.getLogger(__name__)

PIPELINES = ("ingest", "train", "deploy")


def build(name: str, cfg: AutoroiConfig) -> Any:
    if name == "ingest":
        from pipelines.ingest.pipeline import build_pipeline

        return build_pipeline(cfg)
    if name == "train":
        from pipelines.train.pipeline import build_pipeline as build_train

        return build_train(cfg)
    if name == "deploy":
        from pipelines.deploy.pipeline import build_pipeline as build_deploy

        return build_deploy(cfg)
    raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")


def arguments(cfg: AutoroiConfig, name: str = "ingest") -> dict[str, Any]:
    """Pipeline arguments from the config; secrets never become parameters."""
    url = without_password(cfg.source.url)
    public = cfg.model_copy(update={"source": cfg.source.model_copy(update={"url": url})})
    args = {"lake_uri": cfg.lake.uri, "config_json": public.model_dump_json()}
    if name == "ingest":
        return {"source_url": url, **args, "train_on_change": cfg.training.on_master_change}
    return args


@contextmanager
def _password_in_env(cfg: AutoroiConfig) -> Iterator[None]:
    """A password given inside the URL travels to the steps as the variable
    named by ``source.password_env``, never as a parameter."""
    password = parse_url(cfg.source.url).password
    if password is None:
        yield
        return
    name = cfg.source.password_env
    old = os.environ.get(name)
    os.environ[name] = password
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class _KfpLocalChatter(logging.Filter):
    """kfp.local logs housekeeping (skipped conditions, workspace clean-up)
    on the root logger, outside the run's log file; keep it off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "kfp" in record.pathname and record.levelno < logging.WARNING)


@contextmanager
def _quiet_kfp() -> Iterator[None]:
    f = _KfpLocalChatter()
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)


class PipelineFailed(RuntimeError):
    """A local run failed; the message carries the end of its log."""


def run_local(
    name: str,
    cfg: AutoroiConfig,
    log_path: Path | None = None,
    params: dict[str, Any] | None = None,
    runner: Any = None,
) -> dict[str, Any]:
    """Run a pipeline through ``kfp.local``; returns its outputs. The runner
    is the subprocess runner (the current environment, no containers) unless
    ``runner`` is another, such as a ``kfp.local.DockerRunner`` that runs every
    step in the image the pipeline names (tests/containers). With
    ``log_path``, kfp's step-by-step output goes there instead of stdout;
    ``params`` adds or replaces pipeline arguments (``master_version``)."""
    from kfp import local

    root = Path(cfg.kfp.pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    pipeline = build(name, cfg)
    args = {**arguments(cfg, name), **(params or {})}
    quiet = _quiet_kfp() if log_path is not None else nullcontext()
    with _password_in_env(cfg), _output_to(log_path), quiet, warnings.catch_warnings():
        # kfp.local notes that display names and images do nothing locally: expected
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
        try:
            task = pipeline(**args)
        except RuntimeError as e:
            if log_path is None:
                raise
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            raise PipelineFailed(f"{e}\n--- last lines of {log_path} ---\n{tail}") from e
    return {name: _decode(value) for name, value in task.outputs.items()}


def _decode(value: Any) -> Any:
    """Outputs that carry a JSON report come back parsed."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@contextmanager
def _output_to(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f, redirect_stdout(f):
        yield


def compile_all(cfg: AutoroiConfig, output: Path) -> list[Path]:
    from kfp import compiler

    cfg = pin_images(cfg)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PIPELINES:
        path = output / f"{name}.yaml"
        compiler.Compiler().compile(build(name, cfg), str(path))
        written.append(path)
    return written


class KfpApiError(RuntimeError):
    """The Kubeflow Pipelines API cannot be reached or refuses us; the
    message says which and what to check."""


def pin_images(cfg: AutoroiConfig, tag: str | None = None) -> AutoroiConfig:
    """``cfg`` with ``kfp.image_tag`` set: the given tag, the configured one,
    or the commit being compiled (``AUTOROI_GIT_SHA`` or ``git rev-parse``),
    so a compiled pipeline names the exact images CI pushed for that commit."""
    chosen = tag or cfg.kfp.image_tag or _git_sha()
    if not chosen:
        log.warning("no image tag configured and no git commit found: images are tagged 'latest'")
        return cfg
    return cfg.model_copy(update={"kfp": cfg.kfp.model_copy(update={"image_tag": chosen})})


def image_refs(cfg: AutoroiConfig, tag: str | None = None) -> dict[str, str]:
    """Every image's reference as a compiled pipeline and the manifests name
    it: ``<kfp.image_registry>/<kind>:<tag>`` (the pinned tag of
    :func:`pin_images`), the serving image as ``serving.image``'s repository
    with that tag. ``make images`` tags its builds with these."""
    cfg = pin_images(cfg, tag)
    refs = {kind: cfg.kfp.image(kind) for kind in ("components", "spark", "trainer")}
    image_tag = cfg.kfp.image_tag or "latest"
    refs["serving"] = f"{cfg.serving.image.rsplit(':', 1)[0]}:{image_tag}"
    refs["dashboard"] = f"{cfg.kfp.image_registry.rstrip('/')}/dashboard:{image_tag}"
    return refs


def _git_sha() -> str | None:
    import subprocess

    sha = os.environ.get("AUTOROI_GIT_SHA", "").strip()
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True, cwd=_REPO
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


_REPO = Path(__file__).resolve().parents[1]


def kfp_client(
    host: str | None,
    *,
    token: str | None = None,
    in_cluster: bool = False,
    kube_context: str | None = None,
    namespace: str | None = None,
    timeout_s: float = 10.0,
) -> Any:
    """A ``kfp.Client`` after a quick health check that turns an unreachable
    host or refused credentials into one clear :class:`KfpApiError`.

    Auth, in order: ``token`` (a bearer token, e.g. from ``AUTOROI_KFP_TOKEN``);
    ``in_cluster`` (the ServiceAccount token KFP projects into pods); neither:
    the existing kubeconfig credentials (with ``host=None`` kfp goes through the
    Kubernetes API server, ``kube_context`` picks the context)."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    credentials = ServiceAccountTokenVolumeCredentials(path=None) if in_cluster and not token else None
    if host:
        _check_health(host, token, credentials, timeout_s)
    kwargs: dict[str, Any] = {"host": host, "existing_token": token, "credentials": credentials}
    if kube_context:
        kwargs["kube_context"] = kube_context
    if namespace:
        kwargs["namespace"] = namespace
    try:
        return kfp.Client(**kwargs)
    except Exception as e:
        raise KfpApiError(
            f"cannot connect to the Kubeflow Pipelines API at {host or 'the kubeconfig cluster'}: {e}"
        ) from e


def _check_health(host: str, token: str | None, credentials: Any, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif credentials is not None:
        try:
            headers["Authorization"] = f"Bearer {credentials.get_token()}"
        except OSError as e:
            raise KfpApiError(f"--in-cluster: no ServiceAccount token to read ({e})") from e
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise KfpApiError(
                f"the Kubeflow Pipelines API at {host} refused the credentials (HTTP {e.code}):"
                " pass --token (or AUTOROI_KFP_TOKEN), --in-cluster in a pod, or check the token's RBAC"
            ) from e
        raise KfpApiError(f"the Kubeflow Pipelines API at {host} answered HTTP {e.code} to {url}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise KfpApiError(f"cannot reach the Kubeflow Pipelines API at {host}: {reason}") from e


def submit(
    name: str,
    cfg: AutoroiConfig,
    client: Any,
    params: dict[str, Any] | None = None,
    experiment: str = "autoroi",
) -> str:
    """Submit one run of pipeline ``name``; returns the run id."""
    cfg = pin_images(cfg)
    args = {**arguments(cfg, name), **(params or {})}
    try:
        run = client.create_run_from_pipeline_func(
            build(name, cfg),
            arguments=args,
            experiment_name=experiment,
            service_account=cfg.cluster.service_account,
            run_name=f"{name} {args.get('version', '')}".strip(),
        )
    except Exception as e:
        raise KfpApiError(f"submitting {name} failed: {_api_message(e)}") from e
    return str(run.run_id)


def cron_6(expr: str) -> str:
    """KFP takes 6-field cron (seconds first); a usual 5-field one gets ``0``
    seconds. Anything else is refused here, not by the server."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(re.fullmatch(r"[0-9*?/,\-A-Za-z#LW]+", f) for f in fields):
        raise ValueError(
            f"not a cron expression: {expr!r} (5 fields, e.g. '0 2 * * *', or KFP's 6 with seconds)"
        )
    return " ".join(fields)


def schedule(
    name: str,
    cfg: AutoroiConfig,
    client: Any,
    cron: str,
    *,
    experiment: str = "autoroi",
    job_name: str | None = None,
    params: dict[str, Any] | None = None,
    max_concurrency: int = 1,
) -> str:
    """A recurring run of pipeline ``name``; returns its id."""
    import tempfile

    cron = cron_6(cron)
    cfg = pin_images(cfg)
    args = {**arguments(cfg, name), **(params or {})}
    with tempfile.TemporaryDirectory() as tmp:
        from kfp import compiler

        package = Path(tmp) / f"{name}.yaml"
        compiler.Compiler().compile(build(name, cfg), str(package))
        try:
            exp = client.create_experiment(experiment)
            job = client.create_recurring_run(
                experiment_id=exp.experiment_id,
                job_name=job_name or f"autoroi {name} ({cron})",
                cron_expression=cron,
                params=args,
                pipeline_package_path=str(package),
                max_concurrency=max_concurrency,
                service_account=cfg.cluster.service_account,
            )
        except Exception as e:
            raise KfpApiError(f"scheduling {name} failed: {_api_message(e)}") from e
    return str(job.recurring_run_id)


def _api_message(e: Exception) -> str:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None)
    if status:
        return f"HTTP {status} {str(body or '')[:300]}".strip()
    return str(e)
