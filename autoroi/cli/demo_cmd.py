"""``autoroi demo``: the whole current capability on embedded defaults.

A simulated dealer database (SQLite file), the ``ingest`` pipeline through
``kfp.local``, a stream of source changes, and ``ingest`` again: what a user
sees when the platform replicates an on-prem database into the lake.
"""

from __future__ import annotations

from pathlib import Path

import click

from autoroi.cli.common import config_option, load


@click.command()
@config_option
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
def demo(config_path: Path | None, workdir: Path, seed: int, scale: str) -> None:
    """Generate a dealer database, ingest it, change it, ingest again."""
    from autoroi.cli.render import console, counts_table, mutation_table, replication_table
    from autoroi.errors import AutoroiError
    from autoroi.replication.replicate import report_from_dict
    from autoroi.source.db import connect_engine, parse_url
    from autoroi.source.generate import generate_source
    from autoroi.source.mutate import mutate_source
    from pipelines.run import PipelineFailed, run_local

    workdir = workdir.resolve()
    source = workdir / "source" / "dms.sqlite"
    source.parent.mkdir(parents=True, exist_ok=True)
    cfg = load(
        config_path,
        source_url=f"sqlite:///{source}",
        lake_uri=str(workdir / "lake"),
        kfp={"pipeline_root": str(workdir / "kfp")},
    )
    engine = connect_engine(parse_url(cfg.source.url))
    logs = workdir / "kfp" / "logs"

    def ingest(step: str, title: str) -> None:
        console.rule(f"{step} ingest through kfp.local: {title}")
        try:
            with console.status("running the ingest pipeline ..."):
                out = run_local("ingest", cfg, logs / f"ingest-{step.replace('/', 'of')}.log")
        except PipelineFailed as e:
            raise AutoroiError(str(e)) from e
        replication_table(report_from_dict(out))

    try:
        console.rule("1/6 generate the dealer database")
        with console.status(f"generating ({scale}, seed {seed}) ..."):
            gen = generate_source(engine, seed=seed, scale=scale, truth_path=workdir / "truth.parquet")
        counts_table(f"source {source} ({gen.seconds:.1f}s)", gen.rows)
        ingest("2/6", "full load")

        console.rule("3/6 change the source: new sales, corrections, cancellations, a new column")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        ingest("4/6", "change capture; the new column reloads sales")

        console.rule("5/6 change the source again")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        ingest("6/6", "change capture")
    finally:
        engine.dispose()
    console.print(
        f"\nlake: {cfg.lake.uri}/raw/<table>/ (Parquet; read with pyarrow.dataset)\n"
        f"ground truth (evaluation only): {workdir / 'truth.parquet'}\n"
        f"kfp.local run artifacts and logs: {cfg.kfp.pipeline_root}"
    )
