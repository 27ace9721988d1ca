"""``autoroi plan``: spend a budget on the incentives that return most
(``autoroi.planning``), scored by a registered model version as the server
scores them, or by a running endpoint."""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import check_frame_path, config_option, lake_option, load, write_frame


@click.command()
@config_option
@lake_option
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), required=True, help="USD to spend.")
@click.option("--from", "first", required=True, help="First week (a Monday, YYYY-MM-DD).")
@click.option("--to", "last", required=True, help="Last week (a Monday).")
@click.option("--regions", help="Comma-separated regions (default: every region the model serves).")
@click.option("--models", help="Comma-separated vehicle models (default: every one).")
@click.option("--types", help="Comma-separated incentive types (default: every type the model knows).")
@click.option(
    "--amounts", default="500:3000:500", show_default=True, help="Amount grid, LO:HI:STEP or A,B,..."
)
@click.option(
    "--min-prob-pays-back",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Only scenarios at least this likely to pay back (P(ROI > 0)).",
)
@click.option("--objective", type=click.Choice(["profit", "roi"]), default="profit", show_default=True)
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), help="plan.csv or plan.parquet")
@click.option("--version", help="Model version (default: the deployed one, else the latest registered).")
@click.option("--url", help="Score through this endpoint instead (v1; no portfolio interval then).")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
def plan(
    config_path: Path | None,
    lake_uri: str | None,
    budget: float,
    first: str,
    last: str,
    regions: str | None,
    models: str | None,
    types: str | None,
    amounts: str,
    min_prob_pays_back: float | None,
    objective: str,
    output: Path | None,
    version: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Choose, for each cell and week, at most one incentive (type, amount) so
    that the expected incentive cost stays within the budget and the expected
    incremental profit (or the return per dollar) is largest."""
    from autoroi.cli.render import console, roi_table
    from autoroi.errors import AutoroiError
    from autoroi.model.plan import make_plan, score_options
    from autoroi.planning import PlanRequestError, plan_request

    if output is not None:
        check_frame_path(output, "--output")
    started = time.perf_counter()
    if url:
        chosen_version, options, score = _options_from_endpoint(url)
    else:
        cfg = load(config_path, lake_uri=lake_uri)
        chosen_version, model, options = _local_model(cfg, version)
        score = functools.partial(score_options, model)

    def names(text: str | None) -> list[str] | None:
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    # the checks of the server's plan route, the flags named as the user typed them
    body = {"budget": budget, "from": first, "to": last, "regions": names(regions), "models": names(models),
            "types": names(types), "amounts": amounts, "objective": objective,
            "min_prob_pays_back": min_prob_pays_back}  # fmt: skip
    try:
        req = plan_request(body, options)
    except PlanRequestError as e:
        raise AutoroiError(f"--{e.field.replace('_', '-')}: {e.reason}") from e
    chosen, totals = make_plan(
        req.pairs, req.types, req.weeks, req.amounts, score, req.budget, req.objective, req.min_prob_pays_back
    )
    totals.update(model_version=chosen_version, seconds=round(time.perf_counter() - started, 1))
    if output is not None:
        write_frame(output, chosen)
        totals["output"] = str(output)
    if as_json:
        click.echo(json.dumps(totals, indent=2))
        return
    console.print(_totals_table(totals))
    if len(chosen):
        top = chosen.sort_values("incremental_profit", ascending=False).head(15)
        records = json.loads(top.to_json(orient="records", date_format="iso"))
        console.print(roi_table(records, f"the {len(top)} most profitable of {len(chosen)} chosen scenarios"))


def _totals_table(t: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"plan ({t['model_version']}, objective {t['objective']})", box=None, show_header=False
    )
    table.add_column(justify="left")
    table.add_column(justify="right")
    interval = "—" if t["roi_lower"] is None else f"{t['roi_lower']:+.2f}..{t['roi_upper']:+.2f}"
    for k, v in (
        ("budget", f"${t['budget']:,.0f}"),
        ("expected incentive cost", f"${t['incentive_cost']:,.0f}"),
        ("incremental units", f"{t['incremental_units']:,.0f}"),
        ("incremental profit", f"${t['incremental_profit']:,.0f}"),
        ("portfolio ROI", "—" if t["scenarios"] == 0 else f"{t['roi']:+.2f}"),
        ("90% interval", interval),
        ("P(ROI > 0)", "—" if t["prob_pays_back"] is None else f"{t['prob_pays_back']:.0%}"),
        (
            "scenarios chosen",
            f"{t['scenarios']:,} of {t['options']:,} ({t['cells']} cells x {t['weeks']} weeks)",
        ),
        ("seconds", f"{t['seconds']}"),
    ):
        table.add_row(k, v)
    return table


def _local_model(cfg: Any, version: str | None) -> tuple[str, Any, dict[str, Any]]:
    from autoroi.cli.programs_cmd import _pick_version
    from autoroi.lake.storage import open_lake
    from autoroi.model.artifact import load_model
    from autoroi.registry import fetch_artifact
    from autoroi.serving.options import options_document

    lake = open_lake(cfg.lake.uri, cfg.lake)
    chosen = _pick_version(lake, version)
    with tempfile.TemporaryDirectory(prefix="autoroi-plan-") as tmp:
        model = load_model(fetch_artifact(lake, chosen, Path(tmp) / "model"))
    return chosen, model, options_document(model.context, model.metadata.get("incentive_types_seen"), chosen)


def _options_from_endpoint(url: str) -> tuple[str, dict[str, Any], Any]:
    """The endpoint's version and options (``/v2/models/roi/options``), and a
    scorer that sends scenarios to its v1 route."""
    import httpx
    import pandas as pd

    from autoroi.cli.serve_cmds import _post_v1
    from autoroi.errors import AutoroiError

    base = url.rstrip("/")
    try:
        r = httpx.get(f"{base}/v2/models/roi/options", timeout=30)
    except httpx.HTTPError as e:
        raise AutoroiError(f"cannot reach {url}: {e}") from e
    if r.status_code != 200:
        raise AutoroiError(f"{url} has no options for planning (GET /v2/models/roi/options: {r.status_code})")
    options = r.json()

    def scored(scenarios: pd.DataFrame) -> tuple[pd.DataFrame, None, None]:
        fields = ["region", "vehicle_model", "week_start", "incentive_type", "incentive_amount"]
        answers = []
        for i in range(0, len(scenarios), 1024):
            chunk: list[dict[str, Any]] = scenarios.iloc[i : i + 1024][fields].to_dict(orient="records")  # type: ignore[assignment]
            answers += _post_v1(url, chunk)["predictions"]
        served = pd.DataFrame(answers).drop(columns=fields, errors="ignore")
        return pd.concat([scenarios.reset_index(drop=True), served], axis=1), None, None

    return str(options.get("version")), options, scored
