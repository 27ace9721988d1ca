"""``autoroi replicate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autoroi.cli.common import config_option, lake_option, load, source_option
from autoroi.errors import AutoroiError


@click.command()
@config_option
@source_option
@lake_option
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@click.option("--full-refresh", is_flag=True, help="Reload every table in full.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--drop-slot",
    is_flag=True,
    help="Drop the lake's PostgreSQL replication slot and publication (the server stops keeping WAL"
    " for it), then exit.",
)
def replicate(
    config_path: Path | None,
    source_url: str | None,
    lake_uri: str | None,
    tables: tuple[str, ...],
    full_refresh: bool,
    as_json: bool,
    drop_slot: bool,
) -> None:
    """Replicate the source into <lake>/raw: full load first, change capture after."""
    from autoroi.cli.render import progress_bar, replication_table
    from autoroi.replication import drop_replication_slot, replicate_tables

    cfg = load(config_path, source_url, lake_uri)
    if drop_slot:
        click.echo(drop_replication_slot(cfg))
        return
    with progress_bar() as progress:
        report = replicate_tables(
            cfg, tables=list(tables) or None, full_refresh=full_refresh, progress=progress
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=str, indent=2))
    else:
        replication_table(report)
    if not report.ok:
        raise AutoroiError("; ".join(t.message for t in report.failed))
