"""``autoroi generate`` and ``autoroi mutate``: the simulated dealer database."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import Engine

from autoroi.cli.common import config_option, load, sales_rows_option, scale_option, source_option


def _engine(config_path: Path | None, source_url: str | None) -> Engine:
    from autoroi.source.db import connect_engine, resolve_url

    cfg = load(config_path, source_url)
    url = resolve_url(cfg.source)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return connect_engine(url, cfg.source.connect_timeout_s)


@click.command()
@config_option
@source_option
@click.option("--seed", type=int, default=42, show_default=True)
@sales_rows_option
@scale_option
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the ground truth (Parquet) here; it never enters the pipeline.",
)
def generate(
    config_path: Path | None,
    source_url: str | None,
    seed: int,
    sales_rows: int | None,
    scale: str,
    truth_path: Path | None,
) -> None:
    """Create the dealer management system database, deterministic per seed."""
    from autoroi.cli.render import console, counts_table
    from autoroi.source.generate import generate_source

    engine = _engine(config_path, source_url)
    try:
        with console.status("generating dealer database ..."):
            report = generate_source(
                engine, seed=seed, sales_rows=sales_rows, scale=scale, truth_path=truth_path
            )
    finally:
        engine.dispose()
    counts_table(f"generated in {report.seconds:.1f}s", report.rows)
    if truth_path:
        console.print(f"ground truth: {truth_path}")


@click.command()
@config_option
@source_option
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--batches", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--shock",
    type=click.Choice(["demand_drop", "lift_change", "new_model"]),
    default=None,
    help="a regime change from this run's first batch on: one region's base demand falls 30 %,"
    " one incentive type's lift doubles, or a new vehicle model goes on sale",
)
def mutate(
    config_path: Path | None, source_url: str | None, seed: int, batches: int, shock: str | None
) -> None:
    """Apply a week of new sales per batch (the generated world, continued), corrections,
    cancellations, new programs and a new column."""
    from autoroi.cli.render import console, mutation_table
    from autoroi.source.mutate import mutate_source

    engine = _engine(config_path, source_url)
    try:
        report = mutate_source(engine, seed=seed, batches=batches, shock=shock)
    finally:
        engine.dispose()
    mutation_table(report)
    for b in report.batches:
        if b.shock:
            console.print(f"shock: {b.shock}")
    console.print("mutations applied")


@click.group()
def truth() -> None:
    """The simulator's ground truth, for evaluation only (never the pipeline's input)."""


@truth.command("score")
@click.option(
    "--seed",
    type=int,
    required=True,
    help="The seed the source was generated with (and --sales-rows/--scale as generate had them).",
)
@sales_rows_option
@scale_option
@click.option(
    "--scenarios",
    "scenarios_path",
    type=click.Path(path_type=Path),
    required=True,
    help="CSV or Parquet with region, vehicle_model, week_start, incentive_type, incentive_amount"
    " (a plan's output will do; other columns are ignored).",
)
@click.option("--output", type=click.Path(path_type=Path), required=True, help=".csv or .parquet")
def truth_score(seed: int, sales_rows: int | None, scale: str, scenarios_path: Path, output: Path) -> None:
    """The true expected units with and without each scenario, its pull-forward,
    cost, profit and ROI, as the only incentive in its cell and week, with the
    truth file's column names (autoroi/source/truth.py)."""
    from autoroi.cli.common import check_frame_path, read_frame, write_frame
    from autoroi.source.truth import score_scenarios, truth_world

    check_frame_path(output, "--output")
    scenarios = read_frame(scenarios_path, "--scenarios")
    scored = score_scenarios(truth_world(seed, scale=scale, sales_rows=sales_rows), scenarios)
    write_frame(output, scored)
    cost = float(scored["incentive_cost"].sum())
    net = float(scored["incremental_profit"].sum()) - cost
    click.echo(
        f"{len(scored):,} scenarios -> {output}: true cost ${cost:,.0f}, incremental units"
        f" {scored['incremental_units'].sum():,.1f}, incremental profit after cost ${net:,.0f},"
        f" ROI {net / cost if cost else float('nan'):+.3f}"
    )
