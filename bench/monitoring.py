"""Monitoring loop: does the monitor stay quiet on ordinary weeks and speak up
after a shock (issue 15)?

    .venv/bin/python bench/monitoring.py --seeds 880811 880812 880813 [--ordinary 10] [--sales-rows N]
        [--snapshot-after 3] [--work-dir DIR] [--json F]

Per seed (one no test uses and nobody tuned on), at the demo's scale:

1. ``autoroi generate`` into SQLite, then the ``ingest`` pipeline through
   kfp.local with its nested ``train`` (tune, validate, fit, register), so the
   judged model is exactly what a user gets; the version is approved and
   marked deployed in the registry (the monitor reads the registry; serving it
   is ``bench/serving.py``'s subject).
2. ``--ordinary`` times: one ``autoroi mutate`` batch (a week of the world,
   continued), then the ingest steps (replicate, anonymize, preprocess with
   Spark, publish) and the ``monitor`` step's function, in this process
   (``autoroi.monitoring.run.monitor_master``; the pipeline wiring has its own
   test). Training stays off, so every ingest judges the same model.
3. From the state after ``--snapshot-after`` ordinary ingests (the database
   and the lake copied), each shock: a batch with ``--shock``, an ingest, one
   more ordinary batch, an ingest.

Targets: no alarm (status other than ok) over the ordinary ingests; each shock
reported as degraded or drift within its two ingests. Prints a table per seed
and a summary; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuload import machine_info  # noqa: E402

SHOCKS = ("demand_drop", "lift_change", "new_model")
QUIET = ("ok", "no_data")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def config(work: Path, url: str, *, train: bool) -> Any:
    from autoroi.config import load_config

    return load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": str(work / "lake")},
            "kfp": {"pipeline_root": str(work / "kfp")},
            "training": {"on_master_change": train, "on_degraded": False},
        }
    )


def ingest(cfg: Any) -> dict[str, Any]:
    """The ingest steps and the monitor step, in this process."""
    from autoroi.anonymize.run import anonymize_lake
    from autoroi.lake.datasets import read_dataset_dir, read_table_dir
    from autoroi.lake.storage import open_lake
    from autoroi.master.io import preprocess_dir
    from autoroi.monitoring.run import monitor_master
    from autoroi.release import publish_ingest, read_report
    from autoroi.replication import replicate_tables

    t0 = time.monotonic()
    report = replicate_tables(cfg, source_url=cfg.source.url, lake_uri=cfg.lake.uri)
    if not report.ok:
        raise RuntimeError(f"replication failed: {[t.message for t in report.failed]}")
    lake = open_lake(cfg.lake.uri, cfg.lake)
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        curated, master = f"{tmp}/curated", f"{tmp}/master"
        anonymize_lake(lake, cfg, curated)
        preprocess_dir(cfg.master, curated, master, cfg.lake)
        published = publish_ingest(
            lake,
            cfg,
            read_table_dir(curated),
            read_dataset_dir(master),
            read_report(master),
            source=read_report(curated).get("source"),
        )
    record = monitor_master(lake, cfg, published.version)
    record["seconds"] = round(time.monotonic() - t0, 1)
    return record


def mutate(url: str, seed: int, shock: str | None = None) -> str | None:
    from autoroi.source.db import connect_engine, parse_url
    from autoroi.source.mutate import mutate_source

    engine = connect_engine(parse_url(url))
    try:
        report = mutate_source(engine, seed=seed, batches=1, shock=shock)
    finally:
        engine.dispose()
    return report.batches[0].shock


def first_model(work: Path, url: str, seed: int, sales_rows: int) -> str:
    """Generate, ingest with the nested train pipeline, approve and deploy."""
    from autoroi.approval import APPROVE, decide
    from autoroi.lake.storage import open_lake
    from autoroi.registry import DEPLOYED, list_versions, set_status
    from autoroi.source.db import connect_engine, parse_url
    from autoroi.source.generate import generate_source
    from pipelines.run import run_local

    engine = connect_engine(parse_url(url))
    try:
        generate_source(engine, seed=seed, sales_rows=sales_rows)
    finally:
        engine.dispose()
    cfg = config(work, url, train=True)
    run_local("ingest", cfg, log_path=work / "ingest-train.log")
    lake = open_lake(cfg.lake.uri)
    (mv,) = list_versions(lake)
    decide(lake, mv.version, APPROVE, "bench", override=mv.status != "pending_approval", comment="bench")
    set_status(lake, mv.version, DEPLOYED, "bench", "deployed for the monitoring bench")
    return mv.version


def row(kind: str, step: int, record: dict[str, Any], shock: str | None = None) -> dict[str, Any]:
    acc = record.get("accuracy") or {}
    tests = [(g.get("region") or g.get("segment"), g["window"], g["z"]) for g in acc.get("by_group", [])] + [
        (t["incentive_type"], w, t.get(k))
        for t in (acc.get("lift") or {}).get("by_type", [])
        for w, k in (("lift", "z"), ("lift change", "change_z"))
        if t.get(k) is not None
    ]
    return {
        "largest_z": sorted(tests, key=lambda x: -x[2])[:3],
        "lift": [
            {k: t.get(k) for k in ("incentive_type", "cells", "ratio", "z", "change_1", "change_2")}
            for t in (acc.get("lift") or {}).get("by_type", [])
        ],
        "kind": kind,
        "step": step,
        "status": record["status"],
        "weeks": acc.get("weeks", 0),
        "wape": acc.get("wape"),
        "ratio": acc.get("ratio"),
        "reasons": record.get("reasons", []),
        "shock": shock,
        "seconds": record.get("seconds"),
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    work = args.work_dir / str(seed)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    url = f"sqlite:///{work / 'dms.sqlite'}"
    t0 = time.monotonic()
    version = first_model(work, url, seed, args.sales_rows)
    log(f"seed {seed}: deployed {version} after {time.monotonic() - t0:.0f} s")
    cfg = config(work, url, train=False)
    rows = []
    for k in range(1, args.ordinary + 1):
        mutate(url, seed * 100 + k)
        rec = ingest(cfg)
        rows.append(row("ordinary", k, rec))
        log(f"seed {seed} ordinary {k}: {rec['status']} {rec.get('reasons')}")
        if k == args.snapshot_after:
            shutil.copytree(work, args.work_dir / f"{seed}-snapshot", symlinks=True)
    for shock in SHOCKS:
        branch = args.work_dir / f"{seed}-{shock}"
        shutil.rmtree(branch, ignore_errors=True)
        shutil.copytree(args.work_dir / f"{seed}-snapshot", branch, symlinks=True)
        b_url = f"sqlite:///{branch / 'dms.sqlite'}"
        b_cfg = config(branch, b_url, train=False)
        said = mutate(b_url, seed * 100 + 50, shock)
        first = ingest(b_cfg)
        rows.append(row(shock, 1, first, said))
        mutate(b_url, seed * 100 + 51)
        second = ingest(b_cfg)
        rows.append(row(shock, 2, second))
        log(f"seed {seed} {shock} ({said}): {first['status']}, {second['status']} {second.get('reasons')}")
        shutil.rmtree(branch, ignore_errors=True)
    shutil.rmtree(args.work_dir / f"{seed}-snapshot", ignore_errors=True)
    ordinary = [r for r in rows if r["kind"] == "ordinary"]
    detected = {s: any(r["status"] not in QUIET for r in rows if r["kind"] == s) for s in SHOCKS}
    return {
        "seed": seed,
        "model_version": version,
        "rows": rows,
        "false_alarms": sum(r["status"] not in QUIET for r in ordinary),
        "detected": detected,
        "seconds": round(time.monotonic() - t0, 1),
    }


def render(res: dict[str, Any]) -> str:
    lines = [
        f"seed {res['seed']} (model {res['model_version']}, {res['seconds']:.0f} s)",
        f"| {'ingest':<16} | {'weeks':>5} | {'WAPE':>6} | {'x bt':>5} | {'status':<9} | reasons",
        f"|{'-' * 18}|{'-' * 7}|{'-' * 8}|{'-' * 7}|{'-' * 11}|{'-' * 40}",
    ]
    for r in res["rows"]:
        wape = f"{r['wape']:.3f}" if isinstance(r["wape"], float) else "-"
        ratio = f"{r['ratio']:.2f}" if isinstance(r["ratio"], float) else "-"
        why = "; ".join(r["reasons"])[:160] or "-"
        name = f"{r['kind']} {r['step']}"
        lines.append(f"| {name:<16} | {r['weeks']:>5} | {wape:>6} | {ratio:>5} | {r['status']:<9} | {why}")
        if r["shock"]:
            lines.append(f"|   shock: {r['shock']}")
    found = ", ".join(f"{s} {'yes' if v else 'NO'}" for s, v in res["detected"].items())
    n = sum(r["kind"] == "ordinary" for r in res["rows"])
    lines.append(f"false alarms {res['false_alarms']} of {n}; detected: {found}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--ordinary", type=int, default=10)
    p.add_argument("--snapshot-after", type=int, default=3)
    p.add_argument("--sales-rows", type=int, default=200_000)
    p.add_argument("--work-dir", type=Path, default=REPO / "var" / "bench-monitoring")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not 1 <= args.snapshot_after <= args.ordinary:
        p.error("--snapshot-after must be from 1 to --ordinary")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("AUTOROI_HMAC_KEY", "bench-monitoring-" + "k" * 32)
    info = machine_info()
    info.pop("load", None)
    results = [run_seed(seed, args) for seed in args.seeds]
    print(f"monitoring loop, {args.sales_rows:,} sales, {info}")
    for res in results:
        print()
        print(render(res))
    false_alarms = sum(r["false_alarms"] for r in results)
    missed = [(r["seed"], s) for r in results for s, v in r["detected"].items() if not v]
    print()
    print(f"false alarms over all ordinary ingests: {false_alarms}; shocks missed: {missed or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2, default=str))
    return 1 if false_alarms or missed else 0


if __name__ == "__main__":
    sys.exit(main())
