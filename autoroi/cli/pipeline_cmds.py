"""``autoroi run`` and ``autoroi compile``."""

from __future__ import annotations

from pathlib import Path

import click

from autoroi.cli.common import config_option, lake_option, load, source_option


@click.command()
@click.argument("pipeline", type=click.Choice(["ingest"]))
@config_option
@source_option
@lake_option
@click.option(
    "--verbose", is_flag=True, help="Stream kfp.local's step output instead of writing it to a log."
)
def run(
    pipeline: str, config_path: Path | None, source_url: str | None, lake_uri: str | None, verbose: bool
) -> None:
    """Run PIPELINE locally through kfp.local (subprocess runner)."""
    from datetime import datetime

    from autoroi.anonymize import load_hmac_key
    from autoroi.cli.render import console, ingest_result
    from autoroi.errors import AutoroiError
    from pipelines.run import PipelineFailed, run_local

    cfg = load(config_path, source_url, lake_uri)
    load_hmac_key(cfg.anonymize)  # fail before replicating when the key is missing or short
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = None if verbose else Path(cfg.kfp.pipeline_root) / "logs" / f"{pipeline}-{stamp}.log"
    try:
        with console.status(f"running {pipeline} through kfp.local ..."):
            out = run_local(pipeline, cfg, log_path)
    except PipelineFailed as e:
        raise AutoroiError(str(e)) from e
    ingest_result(out, cfg.lake.uri)
    if log_path:
        console.print(f"pipeline log: {log_path}")


@click.command("compile")
@config_option
@click.option("--output", type=click.Path(path_type=Path), default=Path("build/pipelines"), show_default=True)
def compile_cmd(config_path: Path | None, output: Path) -> None:
    """Write the pipeline YAML files (KFP IR) for the Kubeflow UI."""
    from pipelines.run import compile_all

    for path in compile_all(load(config_path), output):
        click.echo(str(path))
