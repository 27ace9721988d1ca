"""``autoroi programs``: what every incentive program in the history returned,
as a registered model version estimates it (``autoroi.model.programs``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load


def _pick_version(lake: Any, version: str | None) -> str:
    from autoroi.errors import AutoroiError
    from autoroi.registry import list_versions, production_version

    if version:
        return version
    deployed = production_version(lake)
    if deployed is not None:
        return deployed.version
    versions = list_versions(lake)
    if not versions:
        raise AutoroiError(
            "no model version is registered yet: run `autoroi run ingest` (or `make demo`) first"
        )
    return versions[-1].version


def program_table(cfg: Any, version: str | None) -> tuple[str, Any, int]:
    """(version, the per-program frame, rows left out) for the lake of ``cfg``."""
    from autoroi.errors import AutoroiError
    from autoroi.lake.storage import open_lake
    from autoroi.model.artifact import load_model
    from autoroi.registry import fetch_artifact
    from autoroi.training import estimate_programs

    lake = open_lake(cfg.lake.uri, cfg.lake)
    chosen = _pick_version(lake, version)
    with tempfile.TemporaryDirectory(prefix="autoroi-programs-") as tmp:
        model = load_model(fetch_artifact(lake, chosen, Path(tmp) / "model"))
    out, skipped = estimate_programs(lake, cfg, model)
    if out is None:
        raise AutoroiError("the lake's curated zone has no program tables: run `autoroi run ingest` first")
    return chosen, out, skipped


@click.command()
@config_option
@lake_option
@click.option("--version", help="Model version (default: the deployed one, else the latest registered).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per program.")
def programs(config_path: Path | None, lake_uri: str | None, version: str | None, as_json: bool) -> None:
    """Estimated incremental units, cost, profit and ROI (with its 90 % interval)
    of every incentive program in the master table's history; beside the
    simulator's truth when training.truth_path is set."""
    from rich.table import Table

    from autoroi.cli.render import console

    cfg = load(config_path, lake_uri=lake_uri)
    chosen, out, skipped = program_table(cfg, version)
    if as_json:
        recs = json.loads(out.to_json(orient="records"))
        click.echo(json.dumps({"model_version": chosen, "skipped_rows": skipped, "programs": recs}, indent=2))
        return
    truth = "true_roi" in out.columns
    table = Table(title=f"programs as model {chosen} estimates them", pad_edge=False)
    heads = [
        "program",
        "type",
        "$/unit",
        "weeks",
        "cells",
        "+units",
        "cost $k",
        "profit $k",
        "ROI",
        "90% interval",
    ]
    for h in [*heads, *(["true ROI"] if truth else [])]:
        table.add_column(h, justify="left" if h in ("program", "type", "weeks") else "right", no_wrap=True)

    def pct(v: Any) -> str:
        return "—" if v is None or v != v else f"{v:+.0%}"

    for r in out.to_dict(orient="records"):
        row = [
            str(r["code"]),
            str(r["incentive_type"]),
            f"{r['incentive_amount']:,.0f}",
            f"{r['first_week']}..{r['last_week'][5:]}",
            str(r["cells"]),
            f"{r['incremental_units']:,.0f}",
            f"{r['incentive_cost'] / 1000:,.0f}",
            f"{r['incremental_profit'] / 1000:,.0f}",
            pct(r["roi"]),
            f"{pct(r['roi_lower'])}..{pct(r['roi_upper'])}",
        ]
        if truth:
            row.append(pct(r.get("true_roi")))
        table.add_row(*row)
    console.print(table)
    if skipped:
        console.print(f"{skipped:,} program cell-weeks in cells the model does not serve were left out")
