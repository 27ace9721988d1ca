"""``autoroi demo``: the whole current capability on embedded defaults.

A simulated dealer database (SQLite file), the ``ingest`` pipeline through
``kfp.local`` (replicate, strip PII, build the master table with Spark,
validate, scan, publish), a stream of source changes, ``ingest`` again; the
third ingest publishes a new master version and so runs ``train`` nested
(tune, validate, fit, register, notify); a last ``ingest`` on unchanged data
leaves the master version alone and trains nothing. The first two ingests
skip training to keep the demo short (``autoroi trigger`` would catch up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, load


@click.command()
@config_option
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
def demo(config_path: Path | None, workdir: Path, seed: int, scale: str) -> None:
    """Generate a dealer database, ingest it, change it, ingest and train."""
    from autoroi.cli.pipeline_cmds import run_and_render
    from autoroi.cli.render import console, counts_table, mutation_table
    from autoroi.errors import AutoroiError
    from autoroi.lake.storage import open_lake
    from autoroi.registry import list_versions
    from autoroi.source.db import connect_engine, parse_url
    from autoroi.source.generate import generate_source
    from autoroi.source.mutate import mutate_source
    from autoroi.training import needs_training

    workdir = workdir.resolve()
    source = workdir / "source" / "dms.sqlite"
    source.parent.mkdir(parents=True, exist_ok=True)
    cfg = load(
        config_path,
        source_url=f"sqlite:///{source}",
        lake_uri=str(workdir / "lake"),
        kfp={"pipeline_root": str(workdir / "kfp")},
        training={"truth_path": str(workdir / "truth.parquet")},
    )
    key_note = _throwaway_key(cfg, workdir)
    if key_note:
        cfg = cfg.model_copy(
            update={"anonymize": cfg.anonymize.model_copy(update={"hmac_key_file": key_note})}
        )
        console.print(
            f"[yellow]no AUTOROI_HMAC_KEY set: generated a throwaway pseudonymization key in {key_note}"
            " (demo only; set AUTOROI_HMAC_KEY or anonymize.hmac_key_file for real data)[/yellow]"
        )
    engine = connect_engine(parse_url(cfg.source.url))

    def ingest(step: str, title: str, train: bool = False) -> dict[str, Any]:
        console.rule(f"{step} ingest through kfp.local: {title}")
        run_cfg = cfg.model_copy(
            update={"training": cfg.training.model_copy(update={"on_master_change": train})}
        )
        return run_and_render("ingest", run_cfg)

    try:
        console.rule("1/8 generate the dealer database")
        with console.status(f"generating ({scale}, seed {seed}) ..."):
            gen = generate_source(engine, seed=seed, scale=scale, truth_path=workdir / "truth.parquet")
        counts_table(f"source {source} ({gen.seconds:.1f}s)", gen.rows)
        ingest("2/8", "full load (training skipped in the demo)")

        console.rule("3/8 change the source: new sales, corrections, cancellations, a new column")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        ingest("4/8", "change capture; the new column reloads sales (training skipped in the demo)")

        console.rule("5/8 change the source again")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        out = ingest("6/8", "change capture; the new master version runs train (nested)", train=True)
        ingest("7/8", "nothing changed: same master version, latest stays, no training", train=True)
    finally:
        engine.dispose()

    console.rule("8/8 the reviewer's turn")
    lake = open_lake(cfg.lake.uri, cfg.lake)
    decision = needs_training(lake)
    console.print(f"trigger: {'train' if decision.train else 'nothing to do'}: {decision.reason}")
    trained = [v for v in list_versions(lake) if v.master_version == out.get("master_version")]
    if not trained:
        raise AutoroiError(f"train registered no model version for master {out.get('master_version')}")
    mv = max(trained, key=lambda v: v.created_at)
    console.print(
        f"\nlake: {cfg.lake.uri}/raw/<table>/ (restricted: PII), curated/<table>/ (anonymized),"
        " master/latest -> master/<version>/data/ (Parquet; read with pyarrow.dataset),"
        " models/roi/<version>/ (registry)\n"
        f"ground truth (evaluation only): {workdir / 'truth.parquet'}\n"
        f"kfp.local run artifacts and logs: {cfg.kfp.pipeline_root}\n"
    )
    console.print(f"[bold]model version {mv.version}: {mv.status}[/bold]")
    console.print(f"[bold]report: {mv.report_location}[/bold]")


def _throwaway_key(cfg: Any, workdir: Path) -> Path | None:
    """The demo's own key when the user has none; kept in the work folder so
    pseudonyms stay the same across the demo's runs."""
    import os
    import secrets

    if cfg.anonymize.hmac_key_file is not None or os.environ.get(cfg.anonymize.hmac_key_env):
        return None
    path = workdir / "secrets" / "hmac.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path
