"""``autoroi monitor show``: what the ``monitor`` step of every ``ingest`` found
about the deployed model (realized accuracy, drift), oldest first, as a table
that fits 100 columns or as JSON with ``--json``
(``autoroi.monitoring.history`` reads the records)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load

WIDTH = 100
STATUS_STYLE = {"ok": "green", "degraded": "bold yellow", "drift": "bold red", "no_data": "dim"}
NO_MONITOR = (
    "no monitor has run yet in lake {lake}: the monitor step runs in `ingest` after publish"
    " once a model version is deployed (`autoroi run ingest`, or a scheduled ingest on the cluster)"
)


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def _drift_cell(flags: dict[str, Any]) -> str:
    """Drifted features, then the columns with categories the model never saw."""
    parts = [f["feature"] for f in flags["features"]]
    parts += [f"new {col}" for col in flags["unknown_categories"]]
    return ", ".join(parts) or "—"


@click.group()
def monitor() -> None:
    """Model health after each ingest: realized accuracy and drift (<lake>/monitoring/roi)."""


@monitor.command("show")
@config_option
@lake_option
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the newest N records.")
def show_cmd(config_path: Path | None, lake_uri: str | None, as_json: bool, last: int | None) -> None:
    """The monitor's history, oldest first: per master version the judged model,
    its status, realized units WAPE against the backtest's, realized / predicted
    program lift, drifted features, and the reasons of every alarm. Unreadable
    records are named in a warning and left out."""
    from rich.table import Table
    from rich.text import Text

    from autoroi.cli.render import console
    from autoroi.lake.storage import open_lake
    from autoroi.monitoring.history import accuracy, drift_flags, history_root, read_history, reasons
    from autoroi.registry.store import plain

    cfg = load(config_path, lake_uri=lake_uri)
    lake = open_lake(cfg.lake.uri, cfg.lake)
    history = read_history(lake, last=last)
    if as_json:
        click.echo(json.dumps(plain(history.records), indent=2))
        return
    if not history.records:
        click.echo(NO_MONITOR.format(lake=lake.uri))
        return
    width = min(console.width, WIDTH)
    table = Table(
        title=f"monitor history {lake.display(history_root(lake))}",
        box=None,
        padding=(0, 1),
        pad_edge=False,
        header_style="bold underline",
    )
    # identifiers are copied into other commands: never wrapped; the drift list wraps instead
    for name, right in (
        ("master version", False),
        ("date", False),
        ("model judged", False),
        ("status", False),
        ("WAPE/ref", True),
        ("lift", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    table.add_column("drifted", overflow="fold")
    why = Table(title="reasons", box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    why.add_column("master version", no_wrap=True)
    why.add_column("reason")
    for r in history.records:
        acc, status, master = accuracy(r), str(r.get("status") or "—"), str(r.get("master_version"))
        table.add_row(
            Text(master),
            Text(str(r.get("created_at") or "—")[:10]),
            Text(str(r.get("model_version") or "—")),
            Text(status, style=STATUS_STYLE.get(status, "")),
            Text(f"{_fmt(acc['wape'])}/{_fmt(acc['reference_wape'])}"),
            Text(_fmt(acc["lift_ratio"])),
            Text(_drift_cell(drift_flags(r))),
        )
        for reason in reasons(r):
            why.add_row(Text(master), Text(reason))
    if history.skipped:
        table.caption = f"{len(history.skipped)} unreadable record(s) left out: see the warnings"
    console.print(table, width=width)
    if why.row_count:
        console.print(why, width=width)
