"""``autoroi models list`` and ``autoroi models show VERSION``: the model registry
(``<lake>/models/roi/``) as tables, or as JSON with ``--json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load

KEY_METRICS = (
    ("wape", "WAPE"),
    ("roi_mae", "ROI MAE"),
    ("roi_spearman", "ROI Spearman"),
    ("roi_balanced_accuracy", "pays back BA"),
)
STATUS_STYLE = {
    "pending_approval": "yellow",
    "rejected_by_gate": "red",
    "approved": "green",
    "rejected": "red",
    "deployed": "bold green",
    "retired": "dim",
}


def _num(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    return f"{x:.4g}" if math.isfinite(x) else "-"


def _when(iso: str) -> str:
    """``2026-03-02T09:30:15.123+00:00`` -> ``2026-03-02 09:30:15Z``."""
    if len(iso) >= 19 and iso[10] == "T":
        return iso[:10] + " " + iso[11:19] + ("Z" if iso.endswith(("+00:00", "Z")) else "")
    return iso


def _gate(passed: bool | None) -> Any:
    from rich.text import Text

    if passed is None:
        return Text("-")
    return Text("pass", style="green") if passed else Text("FAIL", style="bold red")


def _open(config_path: Path | None, lake_uri: str | None) -> Any:
    from autoroi.lake.storage import open_lake

    cfg = load(config_path, lake_uri=lake_uri)
    return open_lake(cfg.lake.uri, cfg.lake)


@click.group()
def models() -> None:
    """Inspect the model registry (<lake>/models/roi)."""


@models.command("list")
@config_option
@lake_option
@click.option("--json", "as_json", is_flag=True, help="Print the versions' metadata as JSON.")
def list_cmd(config_path: Path | None, lake_uri: str | None, as_json: bool) -> None:
    """Every registered model version, oldest first."""
    from rich.table import Table
    from rich.text import Text

    from autoroi.cli.render import console
    from autoroi.registry import list_versions

    lake = _open(config_path, lake_uri)
    versions = list_versions(lake)
    if as_json:
        click.echo(
            json.dumps([{**v.metadata, "location": v.location} for v in versions], indent=2, default=str)
        )
        return
    if not versions:
        click.echo(f"no model versions in lake {lake.uri}")
        return
    table = Table(title=f"model registry {lake.display(lake.path('models', 'roi'))}")
    # identifiers and times are copied into other commands: never wrapped; metric headings wrap instead
    table.add_column("version", no_wrap=True, min_width=max(len(v.version) for v in versions))
    for col in ("status", "master version", "created (UTC)"):
        table.add_column(col, no_wrap=True)
    for _, heading in KEY_METRICS:
        table.add_column(heading, justify="right")
    table.add_column("gate")
    for v in versions:
        table.add_row(
            Text(v.version),
            Text(v.status, style=STATUS_STYLE.get(v.status, "")),
            Text(v.master_version or "-"),
            Text(_when(v.created_at)),
            *(Text(_num(v.metrics.get(k))) for k, _ in KEY_METRICS),
            _gate(v.gate_passed),
        )
    console.print(table)


@models.command("show")
@click.argument("version")
@config_option
@lake_option
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def show_cmd(version: str, config_path: Path | None, lake_uri: str | None, as_json: bool) -> None:
    """One version: metadata, metrics, gate decision, status history and where the report is."""
    from rich.table import Table
    from rich.text import Text

    from autoroi.cli.render import console
    from autoroi.registry import get_version

    lake = _open(config_path, lake_uri)
    mv = get_version(lake, version)
    if as_json:
        doc = {
            **mv.metadata,
            "location": mv.location,
            "report_location": mv.report_location,
            "artifact_location": mv.artifact_location,
        }
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    meta = mv.metadata
    head = Table(title=f"model version {mv.version}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    rows = [
        ("status", Text(mv.status, style=STATUS_STYLE.get(mv.status, ""))),
        ("master version", Text(mv.master_version or "-")),
        ("code version", Text(str(meta.get("code_version", "-")))),
        ("created (UTC)", Text(_when(mv.created_at))),
        ("digest (sha256)", Text(mv.digest)),
        ("gate", _gate(mv.gate_passed)),
        ("report", Text(mv.report_location)),
        ("artifact", Text(mv.artifact_location)),
        ("evaluation", Text(mv.evaluation_location)),
    ]
    hp = meta.get("hyperparameters") or {}
    if hp:
        rows.append(("hyperparameters", Text(", ".join(f"{k}={v}" for k, v in sorted(hp.items())))))
    for name, value in rows:
        head.add_row(name, value)
    console.print(head)

    if mv.metrics:
        mt = Table(title="backtest metrics (candidate)")
        mt.add_column("metric")
        mt.add_column("value", justify="right")
        for k, v in mv.metrics.items():
            mt.add_row(Text(str(k)), Text(_num(v)))
        console.print(mt)

    checks = mv.gate.get("checks") or []
    if checks:
        gt = Table(title="gate checks")
        for col in ("check", "result", "detail"):
            gt.add_column(col)
        for c in checks:
            gt.add_row(Text(str(c.get("name", ""))), _gate(c.get("passed")), Text(str(c.get("detail", ""))))
        console.print(gt)
    for reason in mv.gate.get("reasons") or []:
        console.print(Text(f"gate failure: {reason}", style="red"))

    ht = Table(title="status history")
    for col in ("at (UTC)", "from", "status", "by", "reason"):
        ht.add_column(col)
    for h in mv.history:
        status = str(h.get("status", ""))
        reason = str(h.get("reason") or "") + (" [override]" if h.get("override") else "")
        ht.add_row(
            Text(_when(str(h.get("at", "")))),
            Text(str(h.get("from") or "-")),
            Text(status, style=STATUS_STYLE.get(status, "")),
            Text(str(h.get("by", ""))),
            Text(reason),
        )
    console.print(ht)
    click.echo(f"report: {mv.report_location}")
