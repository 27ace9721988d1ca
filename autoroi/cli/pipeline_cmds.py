"""``autoroi run`` and ``autoroi compile``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load, source_option


@click.command()
@click.argument("pipeline", type=click.Choice(["ingest", "train"]))
@config_option
@source_option
@lake_option
@click.option(
    "--master-version", default=None, help="train: the master version to train on (default: latest)."
)
@click.option(
    "--train/--no-train",
    "train_on_change",
    default=None,
    help="ingest: run train when the master version changed (default: training.on_master_change).",
)
@click.option(
    "--verbose", is_flag=True, help="Stream kfp.local's step output instead of writing it to a log."
)
def run(
    pipeline: str,
    config_path: Path | None,
    source_url: str | None,
    lake_uri: str | None,
    master_version: str | None,
    train_on_change: bool | None,
    verbose: bool,
) -> None:
    """Run PIPELINE locally through kfp.local (subprocess runner)."""
    from autoroi.anonymize import load_hmac_key

    extra = {} if train_on_change is None else {"training": {"on_master_change": train_on_change}}
    cfg = load(config_path, source_url, lake_uri, **extra)
    if pipeline == "ingest":
        load_hmac_key(cfg.anonymize)  # fail before replicating when the key is missing or short
    params = {"master_version": master_version} if pipeline == "train" and master_version else None
    run_and_render(pipeline, cfg, verbose=verbose, params=params)


def run_and_render(
    pipeline: str, cfg: Any, *, verbose: bool = False, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run one pipeline locally, print what it did, say where its log is."""
    from datetime import datetime

    from autoroi.cli.render import console, ingest_result, train_result
    from autoroi.errors import AutoroiError
    from pipelines.run import PipelineFailed, run_local

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = None if verbose else Path(cfg.kfp.pipeline_root) / "logs" / f"{pipeline}-{stamp}.log"
    try:
        with console.status(f"running {pipeline} through kfp.local ..."):
            out = run_local(pipeline, cfg, log_path, params=params)
    except PipelineFailed as e:
        raise AutoroiError(str(e)) from e
    if pipeline == "ingest":
        ingest_result(out, cfg.lake.uri)
        if out.get("master_changed") and cfg.training.on_master_change:
            train_result({"master_version": out.get("master_version")}, cfg.lake.uri)
    else:
        train_result(out, cfg.lake.uri)
    if log_path:
        console.print(f"pipeline log: {log_path}")
    return out


@click.command()
@config_option
@lake_option
@click.option("--dry-run", is_flag=True, help="Only say whether train would run.")
@click.option(
    "--verbose", is_flag=True, help="Stream kfp.local's step output instead of writing it to a log."
)
def trigger(config_path: Path | None, lake_uri: str | None, dry_run: bool, verbose: bool) -> None:
    """Run train if the latest master version has no model version yet (for a
    CronJob or CI); exit 0 either way, saying what it decided."""
    from autoroi.cli.render import console
    from autoroi.lake.storage import open_lake
    from autoroi.training import needs_training

    cfg = load(config_path, None, lake_uri)
    decision = needs_training(open_lake(cfg.lake.uri, cfg.lake))
    verdict = "train" if decision.train else "nothing to do"
    console.print(f"trigger: {verdict}: {decision.reason}")
    if decision.train and not dry_run:
        run_and_render("train", cfg, verbose=verbose, params={"master_version": decision.master_version})


@click.command("compile")
@config_option
@click.option("--output", type=click.Path(path_type=Path), default=Path("build/pipelines"), show_default=True)
def compile_cmd(config_path: Path | None, output: Path) -> None:
    """Write the pipeline YAML files (KFP IR) for the Kubeflow UI."""
    from pipelines.run import compile_all

    for path in compile_all(load(config_path), output):
        click.echo(str(path))


def kfp_options(f: Any) -> Any:
    """Where the Kubeflow Pipelines API is and how to authenticate."""
    f = click.option("--namespace", default=None, help="KFP namespace (multi-user deployments).")(f)
    f = click.option(
        "--kube-context", default=None, help="Without --host: the kubeconfig context to go through."
    )(f)
    f = click.option(
        "--in-cluster", is_flag=True, help="Authenticate with the pod's projected ServiceAccount token."
    )(f)
    f = click.option(
        "--token", envvar="AUTOROI_KFP_TOKEN", default=None, help="Bearer token (or AUTOROI_KFP_TOKEN)."
    )(f)
    f = click.option(
        "--host",
        default=None,
        help="KFP API URL, e.g. https://kubeflow.example.com/pipeline (default: kubeconfig).",
    )(f)
    return f


def connect(
    host: str | None, token: str | None, in_cluster: bool, kube_context: str | None, namespace: str | None
) -> Any:
    from autoroi.errors import AutoroiError
    from pipelines.run import KfpApiError, kfp_client

    try:
        return kfp_client(
            host, token=token, in_cluster=in_cluster, kube_context=kube_context, namespace=namespace
        )
    except KfpApiError as e:
        raise AutoroiError(str(e)) from e


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="--param")
        out[key] = yaml.safe_load(value) if value else ""
    return out


@click.command()
@click.argument("pipeline", type=click.Choice(["ingest", "train", "deploy"]))
@config_option
@kfp_options
@click.option("--experiment", default="autoroi", show_default=True)
@click.option("--param", "params", multiple=True, help="Pipeline argument key=value (repeatable).")
def submit(
    pipeline: str,
    config_path: Path | None,
    host: str | None,
    token: str | None,
    in_cluster: bool,
    kube_context: str | None,
    namespace: str | None,
    experiment: str,
    params: tuple[str, ...],
) -> None:
    """Submit one run of PIPELINE to a Kubeflow Pipelines API."""
    from autoroi.cli.render import console
    from autoroi.errors import AutoroiError
    from pipelines.run import KfpApiError
    from pipelines.run import submit as submit_run

    cfg = load(config_path)
    client = connect(host, token, in_cluster, kube_context, namespace)
    try:
        run_id = submit_run(pipeline, cfg, client, _params(params), experiment=experiment)
    except KfpApiError as e:
        raise AutoroiError(str(e)) from e
    console.print(f"submitted {pipeline}: run {run_id} in experiment {experiment}")


@click.command()
@click.argument("pipeline", type=click.Choice(["ingest"]))
@click.option(
    "--cron", required=True, help="Cron expression: 5 fields ('0 2 * * *') or KFP's 6 with seconds."
)
@config_option
@kfp_options
@click.option("--experiment", default="autoroi", show_default=True)
@click.option("--name", "job_name", default=None, help="Name of the recurring run.")
def schedule(
    pipeline: str,
    cron: str,
    config_path: Path | None,
    host: str | None,
    token: str | None,
    in_cluster: bool,
    kube_context: str | None,
    namespace: str | None,
    experiment: str,
    job_name: str | None,
) -> None:
    """Create a recurring run of PIPELINE (ingest) on a Kubeflow Pipelines API."""
    from autoroi.cli.render import console
    from autoroi.errors import AutoroiError
    from pipelines.run import KfpApiError, cron_6
    from pipelines.run import schedule as schedule_run

    try:
        cron_6(cron)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--cron") from e
    cfg = load(config_path)
    client = connect(host, token, in_cluster, kube_context, namespace)
    try:
        job = schedule_run(pipeline, cfg, client, cron, experiment=experiment, job_name=job_name)
    except KfpApiError as e:
        raise AutoroiError(str(e)) from e
    console.print(f"scheduled {pipeline} ({cron_6(cron)}): recurring run {job}")
