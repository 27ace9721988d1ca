"""Plan quality: the true profit of ``autoroi plan``'s allocation against the
simulator's optimum and two plans an analyst makes without a model (issue 14).

    .venv/bin/python bench/plan_quality.py --seeds 880501 880502 880503
        [--budgets 0.25,0.5,1] [--amounts 500:3000:500] [--weeks 13] [--fresh] [--json F]

Per seed (one no test uses): the source, its truth and master table at the
demo's scale (bench/model_quality.py's inputs, kept in ``--work-dir``), a model
tuned and fitted as the ``train`` pipeline fits it, in a process of its own.
Then the 13 weeks after the master's last week, every served cell x 6 types x
the amount grid, scored once by the model (``autoroi.model.plan.score_options``,
the server's plan path) and once by the truth (``autoroi.source.truth``, as
``autoroi truth score`` does: each scenario the only incentive in its cell and
week, its pull-forward against it). At each budget:

- **autoroi**: ``make_plan`` (the CLI's and the server's planner) on the model;
- **oracle**: the same allocator on the true cost and profit of the same grid;
- **last year**: the programs that ran 52 weeks before each planned week (the
  highest offer of a cell-week), same cells, weeks and types, their amounts
  scaled by one factor so that the model's expected cost is the budget;
- **even**: the budget split evenly over the cell-weeks, each getting the type
  its cell ran most last year, at the largest amount (a $100 grid) whose
  expected cost fits its share.

Every plan is scored by the truth: incremental profit after the incentive's
cost (``incremental_profit - incentive_cost`` of the truth's columns), and its
true cost against the budget. The budgets are fractions of the most the
oracle spends at a profit (its plan's cost with no budget limit): above it no
plan changes, and last year's programs often cost several times that. Also: autoroi's plan with
``--min-prob-pays-back 0.8``, the share of its rows whose true ROI < 0.

Targets: autoroi >= 90 % of the oracle's true profit at every budget and seed,
above last year and even; the P >= 0.8 plan loses money in <= 10 % of its rows.
Prints one table per seed and the mean; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_quality as mq
from cpuload import machine_info

REPO = mq.REPO
TARGET_ORACLE = 0.90
TARGET_LOSS_ROWS = 0.10
CONFIDENT = 0.8
EVEN_GRID = np.arange(100.0, 6001.0, 100.0)
KEYS = ["region", "vehicle_model", "week_start"]


def log(msg: str) -> None:
    mq.log(msg)


# =========================================================================== the model, as train fits it


def worker_fit(spec: dict[str, Any]) -> dict[str, Any]:
    """Tune and fit on the master table (the ``train`` pipeline's model steps;
    validation only judges, so it is left out) and save the artifact."""
    import pyarrow.parquet as pq

    from autoroi.config import load_config
    from autoroi.evaluation.folds import holdout_split
    from autoroi.model import features as F
    from autoroi.model.artifact import save_model
    from autoroi.model.train import train_model
    from autoroi.model.tuning import tune_hyperparameters

    logging.basicConfig(level=logging.WARNING)
    folder = Path(spec["folder"])
    cfg = load_config().training
    master = pq.read_table(folder / "master").to_pandas()
    t0 = time.perf_counter()
    train, val = holdout_split(F.training_frame(master), cfg.validation_weeks)
    with tempfile.TemporaryDirectory(prefix="bench-tuner-") as tmp:
        tuning = tune_hyperparameters(
            train, val, cfg.search_space, cfg.max_trials, cfg.max_seconds, cfg.seed, Path(tmp),
            overwrite=True, epochs=cfg.epochs, patience=cfg.patience,
        )  # fmt: skip
    epochs = int(cfg.final_epochs or max(1, tuning.best_epochs))
    model = train_model(
        master, tuning.best_hyperparameters, epochs=epochs, seed=cfg.seed, members=cfg.ensemble_members
    )
    save_model(folder / "model", model, overwrite=True)
    return {"seconds": round(time.perf_counter() - t0, 1), "epochs": epochs}


def fitted_model(folder: Path, fresh: bool) -> Path:
    if fresh or not (folder / "model").exists():
        log(f"tuning and fitting on {folder.name} (a process of its own)")
        mq.run_worker("fit", {"folder": str(folder)}, script=__file__)
    return folder / "model"


# =========================================================================== the plans


def true_net(scored: pd.DataFrame) -> float:
    return float((scored["incremental_profit"] - scored["incentive_cost"]).sum())


def last_year(truth: pd.DataFrame, weeks: list[str], served: set[tuple[str, str]]) -> pd.DataFrame:
    """The programs that ran 52 weeks before each planned week: one per
    cell-week (its highest offer), moved to the planned week."""
    t = truth.copy()
    t["week_start"] = pd.to_datetime(t["week_start"]) + pd.Timedelta(weeks=52)
    t = t[t["week_start"].dt.strftime("%Y-%m-%d").isin(weeks)]
    t = t[[(r, m) in served for r, m in zip(t["region"], t["vehicle_model"], strict=True)]]
    t = t.sort_values("incentive_amount", ascending=False).drop_duplicates(KEYS)
    t["week_start"] = t["week_start"].dt.strftime("%Y-%m-%d")
    cols = [*KEYS, "incentive_type", "incentive_amount"]
    return t[cols].sort_values(KEYS).reset_index(drop=True)


def scaled_to_budget(model: Any, scenarios: pd.DataFrame, budget: float) -> pd.DataFrame:
    """``scenarios`` with every amount times one factor, chosen (bisection) so
    that the model's expected cost is the budget."""
    from autoroi.model.plan import score_options

    def cost(s: float) -> float:
        x = scenarios.assign(incentive_amount=scenarios["incentive_amount"] * s)
        return float(score_options(model, x)[0]["incentive_cost"].fillna(0).sum())

    lo, hi = 0.0, 1.0
    while cost(hi) < budget and hi < 64:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return scenarios.assign(incentive_amount=scenarios["incentive_amount"] * lo)


def even_spread(
    model: Any, pairs: list[tuple[str, str]], weeks: list[str], truth: pd.DataFrame, first: dt.date
) -> pd.DataFrame:
    """Every cell-week with its cell's most frequent type of the last year, and
    the model's expected cost of each amount of EVEN_GRID (scored once)."""
    from autoroi.model.plan import score_options

    year = truth[pd.to_datetime(truth["week_start"]) >= pd.Timestamp(first - dt.timedelta(weeks=52))]
    runs = year.drop_duplicates([*KEYS, "incentive_type"])
    common = runs["incentive_type"].mode().iloc[0]
    by_cell = runs.groupby(["region", "vehicle_model"])["incentive_type"].agg(lambda s: s.mode().iloc[0])
    rows = [(r, m, w, by_cell.get((r, m), common), a) for r, m in pairs for w in weeks for a in EVEN_GRID]
    grid = pd.DataFrame(rows, columns=[*KEYS, "incentive_type", "incentive_amount"])
    frame = score_options(model, grid)[0]
    return grid.assign(cost=frame["incentive_cost"].fillna(np.inf).to_numpy())


def even_plan(costed: pd.DataFrame, budget: float) -> pd.DataFrame:
    share = budget / costed[KEYS].drop_duplicates().shape[0]
    fit = costed[costed["cost"] <= share]
    best = fit.sort_values("incentive_amount").drop_duplicates(KEYS, keep="last")
    return best.drop(columns="cost").reset_index(drop=True)


def evaluate_seed(
    folder: Path, seed: int, fractions: list[float], amounts: str, n_weeks: int
) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoroi.decisions import parse_amount_grid
    from autoroi.model.artifact import load_model
    from autoroi.model.plan import make_plan, score_options
    from autoroi.planning import allocate, plan_grid
    from autoroi.serving.options import options_document
    from autoroi.source.truth import score_scenarios, truth_world

    model = load_model(fitted_model(folder, False))
    opts = options_document(model.context, model.metadata.get("incentive_types_seen"), None)
    pairs = [(str(r), str(m)) for r, m in opts["pairs"]]
    types = list(opts["incentive_types"])
    first = dt.date.fromisoformat(str(model.metadata["weeks"][1])[:10]) + dt.timedelta(weeks=1)
    weeks = [(first + dt.timedelta(weeks=i)).isoformat() for i in range(n_weeks)]
    grid_amounts = parse_amount_grid(amounts)
    tw = truth_world(seed, scale=mq.SCALE)
    truth = pd.read_parquet(folder / "truth.parquet")

    t0 = time.perf_counter()
    grid = plan_grid(pairs, weeks, types, grid_amounts)
    scored = score_options(model, grid)
    score_s = time.perf_counter() - t0
    true_grid = score_scenarios(tw, grid)
    t_cost = true_grid["incentive_cost"].to_numpy()
    t_net = (true_grid["incremental_profit"] - true_grid["incentive_cost"]).to_numpy()

    ly = last_year(truth, weeks, set(pairs))
    ly_true_cost = float(score_scenarios(tw, ly)["incentive_cost"].sum()) if len(ly) else 0.0
    ly_weeks = truth[
        pd.to_datetime(truth["week_start"])
        .dt.strftime("%Y-%m-%d")
        .isin([(dt.date.fromisoformat(w) - dt.timedelta(weeks=52)).isoformat() for w in weeks])
    ]
    reference = float(ly_weeks["incentive_cost"].sum())
    costed = even_spread(model, pairs, weeks, truth, first)
    # the most the oracle spends at a profit: larger budgets change no plan
    group = grid["group"].to_numpy()
    saturation = allocate(group, t_cost, t_net, float(t_cost[t_net > 0].sum()) + 1.0).cost
    rows = []
    for frac in fractions:
        budget = frac * saturation
        log(f"seed {seed}: budget {frac:g} x ${saturation:,.0f} = ${budget:,.0f}")
        chosen, totals = make_plan(pairs, types, weeks, grid_amounts, lambda _s: scored, budget)
        mine = score_scenarios(tw, chosen)
        oracle = allocate(group, t_cost, t_net, budget)
        ly_plan = scaled_to_budget(model, ly, budget) if len(ly) else ly
        ly_true = score_scenarios(tw, ly_plan) if len(ly_plan) else None
        ev = even_plan(costed, budget)
        ev_true = score_scenarios(tw, ev)
        sure, _ = make_plan(pairs, types, weeks, grid_amounts, lambda _s: scored, budget, "profit", CONFIDENT)
        sure_true = score_scenarios(tw, sure) if len(sure) else None
        rows.append(
            {
                "fraction": frac,
                "budget": budget,
                "autoroi": true_net(mine),
                "autoroi_expected": totals["incremental_profit"],
                "autoroi_true_cost": float(mine["incentive_cost"].sum()),
                "autoroi_rows": len(mine),
                "oracle": oracle.value,
                "oracle_cost": oracle.cost,
                "last_year": true_net(ly_true) if ly_true is not None else 0.0,
                "last_year_true_cost": float(ly_true["incentive_cost"].sum()) if ly_true is not None else 0.0,
                "even": true_net(ev_true),
                "even_true_cost": float(ev_true["incentive_cost"].sum()),
                "sure_rows": len(sure),
                "sure_loss_share": float((sure_true["roi"] < 0).mean()) if sure_true is not None else 0.0,
                "sure_true_profit": true_net(sure_true) if sure_true is not None else 0.0,
            }
        )
    return {
        "seed": seed,
        "cells": len(pairs),
        "weeks": weeks,
        "options": len(grid),
        "score_s": round(score_s, 2),
        "last_year_cost": reference,
        "saturation_cost": saturation,
        "last_year_scenarios": len(ly),
        "last_year_true_cost_unscaled": ly_true_cost,
        "rows": rows,
    }


def verdicts(res: dict[str, Any]) -> list[str]:
    missed = []
    for r in res["rows"]:
        tag = f"seed {res['seed']} budget {r['fraction']:g}x"
        if r["autoroi"] < TARGET_ORACLE * r["oracle"]:
            missed.append(
                f"{tag}: {r['autoroi'] / r['oracle']:.1%} of the oracle (target {TARGET_ORACLE:.0%})"
            )
        if r["autoroi"] <= max(r["last_year"], r["even"]):
            missed.append(f"{tag}: not above last year and even")
        if r["sure_loss_share"] > TARGET_LOSS_ROWS:
            missed.append(f"{tag}: P>={CONFIDENT} plan loses money in {r['sure_loss_share']:.1%} of rows")
    return missed


def render(res: dict[str, Any]) -> str:
    k = 1e3
    out = [
        f"seed {res['seed']}: {res['cells']} cells x {len(res['weeks'])} weeks from {res['weeks'][0]}"
        f" = {res['options']:,} options (model scored them in {res['score_s']} s); budgets are fractions"
        f" of the most the oracle spends at a profit (${res['saturation_cost']:,.0f}; last year's programs"
        f" cost ${res['last_year_cost']:,.0f} in the same weeks); true profit after the incentive cost, $k"
        " (expected: what autoroi's plan said it would make)",
        f"{'budget':>12} {'expected':>9} {'autoroi':>9} {'oracle':>9} {'ratio':>6} {'last yr':>9} {'even':>9}"
        f" {'true cost/budget a|o|ly|ev':>27} {'P>=.8 rows':>10} {'loss':>6}",
    ]
    for r in res["rows"]:
        b = r["budget"]
        ratio = r["autoroi"] / r["oracle"] if r["oracle"] else float("nan")
        costs = "|".join(
            f"{c / b:.2f}" for c in (r["autoroi_true_cost"], r["oracle_cost"], r["last_year_true_cost"],
                                     r["even_true_cost"])
        )  # fmt: skip
        out.append(
            f"{b / k:>11,.0f}k {r['autoroi_expected'] / k:9,.1f} {r['autoroi'] / k:9,.1f}"
            f" {r['oracle'] / k:9,.1f} {ratio:6.3f}"
            f" {r['last_year'] / k:9,.1f} {r['even'] / k:9,.1f} {costs:>27} {r['sure_rows']:>10}"
            f" {r['sure_loss_share']:6.1%}"
        )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", required=False, default=None)
    p.add_argument(
        "--budgets", default="0.25,0.5,1", help="fractions of the most the oracle spends at a profit"
    )
    p.add_argument("--amounts", default="500:3000:500")
    p.add_argument("--weeks", type=int, default=13)
    p.add_argument("--work-dir", type=Path, default=REPO / "var" / "bench" / "model_quality")
    p.add_argument("--fresh", action="store_true", help="regenerate inputs and refit")
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", choices=["fit"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        out = worker_fit(json.loads(os.environ["BENCH_WORKER_SPEC"]))
        print(mq.RESULT_PREFIX + json.dumps(out), flush=True)
        return 0
    if not args.seeds:
        p.error("--seeds: give the seeds (ones no test uses)")
    info = machine_info(("tensorflow",))
    fractions = [float(x) for x in args.budgets.split(",")]
    results, missed = [], []
    for seed in args.seeds:
        mq.prepare(args.work_dir, seed, mq.SCALE, args.fresh)
        folder = mq.input_dir(args.work_dir, seed, mq.SCALE)
        fitted_model(folder, args.fresh)
        res = evaluate_seed(folder, seed, fractions, args.amounts, args.weeks)
        results.append(res)
        missed += verdicts(res)
        print(render(res), flush=True)
        print()
    print(f"mean over {len(results)} seeds: true profit after cost ($k) and autoroi / oracle")
    print(
        f"{'budget':>8} {'autoroi':>9} {'oracle':>9} {'last yr':>9} {'even':>9}"
        f" {'ratio':>6} {'P>=.8 loss':>10}"
    )
    for i, frac in enumerate(fractions):
        col = {k: float(np.mean([r["rows"][i][k] for r in results])) for k in results[0]["rows"][i]}
        ratio = float(np.mean([r["rows"][i]["autoroi"] / r["rows"][i]["oracle"] for r in results]))
        print(
            f"{frac:>7g}x {col['autoroi'] / 1e3:9,.1f} {col['oracle'] / 1e3:9,.1f}"
            f" {col['last_year'] / 1e3:9,.1f}"
            f" {col['even'] / 1e3:9,.1f} {ratio:6.3f} {col['sure_loss_share']:10.1%}"
        )
    print(f"machine: {info['cores']} cores; targets: " + ("all met" if not missed else "MISSED"))
    for m in missed:
        print(f"  missed: {m}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results, "missed": missed}, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
