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
def run(pipeline: str, config_path: Path | None, source_url: str | None, lake_uri: str | None) -> None:
    """Run PIPELINE locally through kfp.local (subprocess runner)."""
    from autoroi.cli.render import replication_table
    from autoroi.replication.replicate import report_from_dict
    from pipelines.run import run_local

    cfg = load(config_path, source_url, lake_uri)
    out = run_local(pipeline, cfg)
    replication_table(report_from_dict(out))


@click.command("compile")
@config_option
@click.option("--output", type=click.Path(path_type=Path), default=Path("build/pipelines"), show_default=True)
def compile_cmd(config_path: Path | None, output: Path) -> None:
    """Write the pipeline YAML files (KFP IR) for the Kubeflow UI."""
    from pipelines.run import compile_all

    for path in compile_all(load(config_path), output):
        click.echo(str(path))
