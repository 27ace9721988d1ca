"""Running and compiling pipelines: ``kfp.local`` on one machine, YAML for the
Kubeflow UI."""

from __future__ import annotations

import json
import logging
import os
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
    name: str, cfg: AutoroiConfig, log_path: Path | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run a pipeline through ``kfp.local`` with the subprocess runner (the
    current environment, no containers); returns its outputs. With
    ``log_path``, kfp's step-by-step output goes there instead of stdout;
    ``params`` adds or replaces pipeline arguments (``master_version``)."""
    from kfp import local

    root = Path(cfg.kfp.pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
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

    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PIPELINES:
        path = output / f"{name}.yaml"
        compiler.Compiler().compile(build(name, cfg), str(path))
        written.append(path)
    return written


def submit(name: str, cfg: AutoroiConfig, host: str, params: dict[str, Any] | None = None) -> str:
    """Submit a run to a Kubeflow Pipelines API at ``host``; returns the run id."""
    import kfp

    client = kfp.Client(host=host)
    args = {**arguments(cfg, name), **(params or {})}
    run = client.create_run_from_pipeline_func(
        build(name, cfg), arguments=args, run_name=f"{name}-{args.get('version', '')}"
    )
    return str(run.run_id)
