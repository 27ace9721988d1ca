"""``autoroi approve``, ``autoroi reject`` and ``autoroi deploy``: a person's
decision about a model version, and the ``deploy`` pipeline it starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load


def _deploy_options(f: Any) -> Any:
    f = click.option(
        "--host",
        default=None,
        help="Kubeflow Pipelines API: submit deploy there instead of running it locally.",
    )(f)
    f = click.option("--token", envvar="AUTOROI_KFP_TOKEN", default=None, help="Bearer token for --host.")(f)
    f = click.option(
        "--verbose", is_flag=True, help="Stream kfp.local's step output instead of writing it to a log."
    )(f)
    return f


def start_deploy(cfg: Any, version: str, host: str | None, verbose: bool, token: str | None = None) -> None:
    """The ``deploy`` pipeline: through kfp.local, or submitted to ``host``."""
    from datetime import datetime

    from autoroi.cli.render import console
    from autoroi.errors import AutoroiError
    from pipelines.run import KfpApiError, PipelineFailed, run_local, submit

    if host:
        from autoroi.cli.pipeline_cmds import connect

        try:
            run_id = submit(
                "deploy", cfg, connect(host, token, False, None, None), params={"version": version}
            )
        except KfpApiError as e:
            raise AutoroiError(str(e)) from e
        console.print(f"deploy of {version} submitted to {host}: run {run_id}")
        return
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = None if verbose else Path(cfg.kfp.pipeline_root) / "logs" / f"deploy-{stamp}.log"
    try:
        with console.status(f"deploying {version} through kfp.local ({cfg.serving.target}) ..."):
            run_local("deploy", cfg, log_path, params={"version": version})
    except PipelineFailed as e:
        raise AutoroiError(str(e)) from e
    from autoroi.lake.storage import open_lake
    from autoroi.registry import get_version

    mv = get_version(open_lake(cfg.lake.uri, cfg.lake), version)
    console.print(f"[green]{version} is {mv.status}[/green] on the {cfg.serving.target} target")
    if cfg.serving.target == "local":
        console.print(
            f"local endpoint: http://{cfg.serving.host}:{cfg.serving.port} once `autoroi dashboard` runs"
            f" (model server log: {cfg.serving.state_dir}/logs/)"
        )
    if log_path:
        console.print(f"pipeline log: {log_path}")


@click.command()
@click.argument("version")
@click.option("--by", "by", required=True, help="Who approves (recorded).")
@click.option("--comment", default="", help="Why (required with --override).")
@click.option("--override", is_flag=True, help="Approve a version that failed its validation gates.")
@click.option("--no-deploy", is_flag=True, help="Record the approval only; do not start the deploy pipeline.")
@config_option
@lake_option
@_deploy_options
def approve(
    version: str,
    by: str,
    comment: str,
    override: bool,
    no_deploy: bool,
    config_path: Path | None,
    lake_uri: str | None,
    host: str | None,
    token: str | None,
    verbose: bool,
) -> None:
    """Approve VERSION (bound to its artifact's digest) and start deploy."""
    from autoroi.approval import APPROVE, decide
    from autoroi.cli.render import console
    from autoroi.lake.storage import open_lake

    cfg = load(config_path, None, lake_uri)
    record = decide(open_lake(cfg.lake.uri, cfg.lake), version, APPROVE, by, comment, override=override)
    console.print(f"{version} approved by {record.by} at {record.at} (digest {record.digest[:12]}…)")
    if not no_deploy:
        start_deploy(cfg, version, host, verbose, token)


@click.command()
@click.argument("version")
@click.option("--by", "by", required=True, help="Who rejects (recorded).")
@click.option("--comment", required=True, help="Why (recorded).")
@config_option
@lake_option
def reject(version: str, by: str, comment: str, config_path: Path | None, lake_uri: str | None) -> None:
    """Reject VERSION: it can never be deployed."""
    from autoroi.approval import REJECT, decide
    from autoroi.cli.render import console
    from autoroi.lake.storage import open_lake

    cfg = load(config_path, None, lake_uri)
    record = decide(open_lake(cfg.lake.uri, cfg.lake), version, REJECT, by, comment)
    console.print(f"{version} rejected by {record.by} at {record.at}: {record.comment}")


@click.command()
@click.argument("version")
@config_option
@lake_option
@_deploy_options
def deploy(
    version: str,
    config_path: Path | None,
    lake_uri: str | None,
    host: str | None,
    token: str | None,
    verbose: bool,
) -> None:
    """Run the deploy pipeline for an approved VERSION (again)."""
    start_deploy(load(config_path, None, lake_uri), version, host, verbose, token)
