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

from autoroi.cli.common import config_option, load, scale_option


@click.command()
@config_option
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@scale_option
@click.option("--stop", is_flag=True, help="Only stop the servers a previous demo left running.")
def demo(config_path: Path | None, workdir: Path, seed: int, scale: str, stop: bool) -> None:
    """Generate a dealer database, ingest it, change it, ingest and train,
    approve, deploy locally, predict."""
    from autoroi.approval import APPROVE, decide
    from autoroi.cli.approval_cmds import start_deploy
    from autoroi.cli.pipeline_cmds import run_and_render
    from autoroi.cli.render import console, counts_table, mutation_table
    from autoroi.deploy.smoke import read_samples
    from autoroi.errors import AutoroiError
    from autoroi.lake.storage import open_lake
    from autoroi.registry import fetch_artifact, list_versions
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
        serving={"state_dir": str(workdir / "serving")},
    )
    _stop_previous(cfg)
    if stop:
        console.print(f"stopped the demo's local endpoint and model servers ({workdir / 'serving'})")
        return
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
        console.rule("1/11 generate the dealer database")
        with console.status(f"generating ({scale}, seed {seed}) ..."):
            gen = generate_source(engine, seed=seed, scale=scale, truth_path=workdir / "truth.parquet")
        counts_table(f"source {source} ({gen.seconds:.1f}s)", gen.rows)
        ingest("2/11", "full load (training skipped in the demo)")

        console.rule("3/11 change the source: new sales, corrections, cancellations, a new column")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        ingest("4/11", "change capture; the new column reloads sales (training skipped in the demo)")

        console.rule("5/11 change the source again")
        mutation_table(mutate_source(engine, seed=seed, batches=1))
        out = ingest("6/11", "change capture; the new master version runs train (nested)", train=True)
        ingest("7/11", "nothing changed: same master version, latest stays, no training", train=True)
    finally:
        engine.dispose()

    console.rule("8/11 the reviewer's turn")
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

    console.rule(
        "9/11 approve (recorded as approved by 'demo': an automatic demo decision, not a human review)"
    )
    override = mv.status == "rejected_by_gate"
    record = decide(
        lake,
        mv.version,
        APPROVE,
        "demo",
        "automatic approval by `autoroi demo`; no person reviewed this version"
        + ("; overriding its failed gates for the demo" if override else ""),
        override=override,
    )
    console.print(
        f"{mv.version} approved by [bold]{record.by}[/bold] (demo) at {record.at},"
        f" digest {record.digest[:12]}…;"
        f" record: {cfg.lake.uri}/approvals/roi/{mv.version}.json"
    )

    console.rule("10/11 deploy through kfp.local: roll out, smoke test, promote (local KServe model server)")
    start_deploy(cfg, mv.version, None, False)

    console.rule("11/11 the local endpoint, sample predictions and the dashboard")
    endpoint = _start_endpoint(cfg)
    samples = read_samples(fetch_artifact(lake, mv.version, workdir / "serving" / "samples" / mv.version))
    _show_predictions(endpoint, samples["instances"][:8])
    console.print(
        f"\n[bold green]dashboard: {endpoint}/[/bold green]   REST: {endpoint}/v1/models/roi:predict,"
        f" {endpoint}/v2/models/roi/infer\n"
        f"try: autoroi predict --url {endpoint} --input FILE.csv\n"
        + (
            f"every answered prediction is logged to {cfg.lake.uri}/predictions/roi/ (Parquet, batched)\n"
            if cfg.monitoring.log_predictions
            else ""
        )
        + "the endpoint and the model server keep running; stop them with: autoroi demo --stop"
        + ("" if workdir == Path("var/demo").resolve() else f" --workdir {workdir}")
    )


def _stop_previous(cfg: Any) -> None:
    """Servers a previous demo left running in this work folder."""
    from autoroi.deploy.local import LocalTarget, stop_endpoint

    LocalTarget(cfg.serving.state_dir, cfg.lake.uri).stop_all()
    stop_endpoint(cfg.serving.state_dir)


def _start_endpoint(cfg: Any) -> str:
    """The local endpoint (with the dashboard when it is installed) on
    ``serving.port``, or on a free port when that one is taken."""
    import socket

    import serving
    from autoroi.cli.render import console
    from autoroi.deploy.local import free_port, start_endpoint

    port = cfg.serving.port
    with socket.socket() as s:
        if s.connect_ex((cfg.serving.host, port)) == 0:
            new = free_port(cfg.serving.host)
            console.print(f"[yellow]port {port} is taken; the local endpoint uses {new}[/yellow]")
            port = new
    static = Path(serving.__file__).parent / "dashboard"
    doc = start_endpoint(
        cfg.serving.state_dir,
        cfg.serving.host,
        port,
        static_dir=static if (static / "index.html").exists() else None,
        lake_uri=cfg.lake.uri,
        monitoring=cfg.monitoring,
    )
    return str(doc["url"])


def _show_predictions(url: str, instances: list[dict[str, Any]]) -> None:
    import httpx

    from autoroi.cli.render import console, roi_table
    from autoroi.errors import AutoroiError

    r = httpx.post(f"{url}/v1/models/roi:predict", json={"instances": instances}, timeout=60)
    if r.status_code != 200:
        raise AutoroiError(f"the local endpoint answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    title = f"sample predictions through {url} (model {body.get('model_version')})"
    console.print(roi_table(body["predictions"], title))


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
