"""``autoroi plan``: spend a budget on the incentives that return most
(``autoroi.planning``), scored by a registered model version as the server
scores them, or by a running endpoint."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load


def _weeks(first: str, last: str) -> list[str]:
    from autoroi.errors import AutoroiError
    from autoroi.planning import PlanRequestError, plan_weeks

    try:
        return plan_weeks(first, last)
    except PlanRequestError as e:
        raise AutoroiError(f"--{e.field} {e.reason}") from e


def _pick(all_: list[str], asked: str | None, what: str) -> list[str]:
    from autoroi.errors import AutoroiError
    from autoroi.planning import PlanRequestError, pick

    try:
        return pick(all_, [x.strip() for x in (asked or "").split(",") if x.strip()], what)
    except PlanRequestError as e:
        raise AutoroiError(f"--{e.field}: {e.reason}") from e


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
    from autoroi.decisions import parse_amount_grid
    from autoroi.errors import AutoroiError
    from autoroi.model.plan import make_plan

    if output is not None and output.suffix.lower() not in (".csv", ".parquet"):
        raise AutoroiError(f"--output {output}: .csv or .parquet")
    grid = parse_amount_grid(amounts)
    weeks = _weeks(first, last)
    started = time.perf_counter()
    if url:
        chosen_version, options, scored = _options_from_endpoint(url)
    else:
        cfg = load(config_path, lake_uri=lake_uri)
        chosen_version, model, options = _local_model(cfg, version)
    pairs = [tuple(p) for p in options["pairs"]]
    use_regions = set(_pick(sorted({p[0] for p in pairs}), regions, "regions"))
    use_models = set(_pick(sorted({p[1] for p in pairs}), models, "models"))
    pairs = [p for p in pairs if p[0] in use_regions and p[1] in use_models]
    use_types = _pick(list(options["incentive_types"]), types, "types")
    if not pairs:
        raise AutoroiError("no (region, vehicle model) cell is left by --regions and --models")
    if url:
        score = scored
    else:
        from autoroi.model.plan import score_options

        def score(scenarios: Any) -> Any:
            return score_options(model, scenarios)

    chosen, totals = make_plan(pairs, use_types, weeks, grid, score, budget, objective, min_prob_pays_back)
    totals.update(model_version=chosen_version, seconds=round(time.perf_counter() - started, 1))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        if output.suffix.lower() == ".csv":
            chosen.to_csv(tmp, index=False)
        else:
            chosen.to_parquet(tmp, index=False)
        tmp.replace(output)
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
