"""Where the served ROI's error comes from: k-anonymity, the pull-forward dip, or the model.

Issue 12's diagnosis, as a command. For each seed, the inputs of
``bench/model_quality.py`` (a generated source, replicated, anonymized,
preprocessed by Spark) and one more master table of the same curated data at
``k = 1`` (every fine cell-week published: no k-anonymity; for diagnosis only,
such a table must never leave the lake). On each master, one network with the
demo's hyperparameters (no search) is fitted twice: with the features the
model ships with, and with the ended-program features
(``FeatureSpec.ended``) and the ROI netted of the pull-forward that the model
itself reads (``features.estimate_pull_forward``). Every truth row of the last
26 weeks is answered by the reference path (``RoiModel.predict``) and scored
against the truth, split into the rows whose cell-week k-anonymity published
on its own ("published") and those it merged into a coarser cell ("merged").

This is a diagnosis, not a quality claim: the claims are made by
``bench/model_quality.py`` through the served path.

    .venv/bin/python bench/roi_sources.py --seeds 880901 880902
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_quality as MQ

from autoroi.evaluation.metrics import roi_metrics
from autoroi.evaluation.truth import score_truth
from autoroi.model import features as F

EPOCHS = 20


def k1_master(folder: Path) -> Path:
    """The same curated data preprocessed with ``k = 1`` (kept beside the inputs)."""
    from autoroi.config import load_config
    from autoroi.master.io import preprocess_dir

    out = folder / "master-k1"
    if not (out / "manifest.json").exists() and not any(out.glob("*.parquet")):
        cfg = load_config().master.model_copy(update={"k": 1})
        preprocess_dir(cfg, folder / "curated", out)
    return out


def filled(folder: Path, master: pd.DataFrame) -> pd.DataFrame:
    """``master`` (the folder's, as published) with its fine weeks merged by
    k-anonymity filled from the curated program tables (``programs.filled_master``)."""
    from autoroi.model.programs import PROGRAM_TABLES, filled_master

    return filled_master(master, {t: pq.read_table(folder / "curated" / t) for t in PROGRAM_TABLES})


def published_cells(master: pd.DataFrame) -> pd.DataFrame:
    m = F.normalize_master(master)
    fine = m[m[F.CELL_LEVEL] == F.FINEST_LEVEL]
    return fine[[F.REGION, F.VEHICLE_MODEL, F.WEEK]].assign(_published=True)


def score(model: Any, truth: pd.DataFrame, published: pd.DataFrame) -> dict:
    """Truth rows answered by the model (its incremental units net of the
    pull-forward it read, where it has ended-program features)."""
    rows = score_truth(model.predict, truth).rows
    rows = rows.merge(published, on=[F.REGION, F.VEHICLE_MODEL, F.WEEK], how="left")
    rows["_published"] = rows["_published"].eq(True)
    rows["pred_gross"] = rows["pred_predicted_units"] - rows["pred_baseline_units"]
    rows["pred_net"] = rows["pred_incremental_units"]
    rows["gross"] = rows["units_with"] - rows["units_without"]
    out: dict[str, Any] = {}
    for name, sel in (
        ("all", np.ones(len(rows), bool)),
        ("published", rows["_published"].to_numpy()),
        ("merged", ~rows["_published"].to_numpy()),
    ):
        d = rows[sel]
        m = roi_metrics(d["roi"], d["pred_roi"])
        prog = d.groupby("program_id").agg(
            tp=("true_net_profit", "sum"), tc=("incentive_cost", "sum"),
            pp=("pred_profit", "sum"), pc=("pred_incentive_cost", "sum"),
        )  # fmt: skip
        out[name] = {
            "rows": int(len(d)),
            "bias": m["roi_bias"],
            "mae": m["roi_mae"],
            "spearman": m["roi_spearman"],
            "ba": m.get("roi_balanced_accuracy", float("nan")),
            "program_mae": float(np.mean(np.abs(prog.pp / prog.pc - prog.tp / prog.tc))),
            "with": [float(d["pred_predicted_units"].mean()), float(d["units_with"].mean())],
            "base": [float(d["pred_baseline_units"].mean()), float(d["units_without"].mean())],
            "gross": [float(d["pred_gross"].mean()), float(d["gross"].mean())],
            "net": [float(d["pred_net"].mean()), float(d["incremental_units"].mean())],
            "cost": [float(d["pred_incentive_cost"].mean()), float(d["incentive_cost"].mean())],
        }
    return out


def run_seed(work: Path, seed: int) -> list[dict[str, Any]]:
    from autoroi.model.train import train_model

    MQ.prepare(work, seed, "small", False)
    folder = MQ.input_dir(work, seed, "small")
    truth = pd.read_parquet(folder / "truth.parquet")
    k5 = pq.read_table(folder / "master").to_pandas()
    published = published_cells(k5)
    k1 = pq.read_table(k1_master(folder)).to_pandas()
    runs = [
        ("k-anonymous (k=5), as published (trained so)", k5, False),
        ("k-anonymous (k=5), merged weeks filled", filled(folder, k5), True),
        ("no anonymity (k=1)", k1, False),
        ("no anonymity (k=1)", k1, True),
    ]
    results = []
    for mname, master, ended in runs:
        t0 = time.monotonic()
        model = train_model(master, None, epochs=EPOCHS, seed=42, spec=F.FeatureSpec(ended=ended))
        res = score(model, truth, published)
        results.append(
            {
                "seed": seed,
                "master": mname,
                "model": "ended programs, net of pull-forward" if ended else "previous features, gross",
                "pull_forward": dict(model.pull_forward),
                "seconds": round(time.monotonic() - t0, 1),
                **res,
            }
        )
        MQ.log(f"seed {seed} {mname} ended={ended}: bias {res['all']['bias']:+.3f}")
    return results


def _pair(d: dict[str, Any], key: str) -> str:
    return f"{d[key][0]:.2f} / {d[key][1]:.2f}"


def render(results: list[dict[str, Any]]) -> str:
    head = (
        "| seed | master | model | rows | bias | MAE | Spearman | BA | program MAE "
        "| with (pred/true) | base | gross lift | net lift | cost $ | bias published / merged |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in results:
        a, p, m = r["all"], r["published"], r["merged"]
        lines.append(
            f"| {r['seed']} | {r['master']} | {r['model']} | {a['rows']} | {a['bias']:+.3f} | {a['mae']:.3f} "
            f"| {a['spearman']:.3f} | {a['ba']:.3f} | {a['program_mae']:.3f} | {_pair(a, 'with')} "
            f"| {_pair(a, 'base')} | {_pair(a, 'gross')} | {_pair(a, 'net')} "
            f"| {a['cost'][0]:,.0f} / {a['cost'][1]:,.0f} "
            f"| {p['bias']:+.3f} / {m['bias']:+.3f} |"
        )
    for r in results:
        if r["pull_forward"]:
            pf = ", ".join(f"{k} {v:.2f}" for k, v in r["pull_forward"].items())
            lines.append(f"\npull-forward read by the model, seed {r['seed']}, {r['master']}: {pf}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help="source seeds no test uses")
    ap.add_argument("--work-dir", type=Path, default=Path("var/bench/model_quality"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = [r for s in args.seeds for r in run_seed(args.work_dir, s)]
    sys.stdout.write(render(results) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
