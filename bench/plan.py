"""Planner benchmark: ``autoroi plan``'s work on a whole world (every cell the
model serves x 13 weeks x 6 types x an amount grid), against the 60 s target
of issue 14, with the allocator beside a reference measured in the same run
(the one-pass ratio greedy of ``--objective roi``: a sort of one option per
cell-week, the least an allocator does).

    .venv/bin/python bench/plan.py --lake var/demo/lake [--version V] [--from 2026-09-07]
        [--weeks 13] [--amounts 500:3000:500] [--budget 2000000] [--rounds 3]

Prints one table: seconds per part (median of the rounds), options, and the
ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="var/demo/lake")
    ap.add_argument("--version")
    ap.add_argument(
        "--from", dest="first", default=None, help="first Monday (default: the model's last week)"
    )
    ap.add_argument("--weeks", type=int, default=13)
    ap.add_argument("--amounts", default="500:3000:500")
    ap.add_argument("--budget", type=float, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from autoroi.cli.programs_cmd import _pick_version
    from autoroi.decisions import parse_amount_grid
    from autoroi.lake.storage import open_lake
    from autoroi.model.artifact import load_model
    from autoroi.model.plan import score_options
    from autoroi.planning import allocate, plan_grid
    from autoroi.registry import fetch_artifact
    from autoroi.serving.options import options_document

    lake = open_lake(args.lake)
    version = _pick_version(lake, args.version)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(fetch_artifact(lake, version, Path(tmp) / "model"))
    load_s = time.perf_counter() - t0
    opts = options_document(model.context, model.metadata.get("incentive_types_seen"), version)
    first = dt.date.fromisoformat(args.first or model.metadata["weeks"][1])
    weeks = [(first + dt.timedelta(weeks=i)).isoformat() for i in range(args.weeks)]
    grid = plan_grid(
        [tuple(p) for p in opts["pairs"]], weeks, opts["incentive_types"], parse_amount_grid(args.amounts)
    )

    times: dict[str, list[float]] = {
        "score": [],
        "allocate (hull greedy)": [],
        "allocate (ratio greedy, ref)": [],
    }
    for _ in range(args.rounds):
        t = time.perf_counter()
        frame, _mp, _mc = score_options(model, grid)
        times["score"].append(time.perf_counter() - t)
        g = frame["group"].to_numpy()
        c = frame["incentive_cost"].fillna(0).to_numpy()
        v = frame["incremental_profit"].fillna(0).to_numpy()
        t = time.perf_counter()
        hull = allocate(g, c, v, args.budget, "profit")
        times["allocate (hull greedy)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = allocate(g, c, v, args.budget, "roi")
        times["allocate (ratio greedy, ref)"].append(time.perf_counter() - t)
    med = {k: statistics.median(x) for k, x in times.items()}
    total = load_s + med["score"] + med["allocate (hull greedy)"]
    print(
        f"model {version}: {len(opts['pairs'])} cells x {len(weeks)} weeks"
        f" x {len(opts['incentive_types'])} types x {len(parse_amount_grid(args.amounts))} amounts"
        f" = {len(grid):,} options; {args.rounds} rounds (median)"
    )
    print(f"{'part':<32} {'seconds':>8} {'ratio':>8}")
    print(f"{'load the model':<32} {load_s:8.2f}")
    for k, s in med.items():
        ratio = f"{s / med['allocate (ratio greedy, ref)']:8.2f}" if k.startswith("allocate") else ""
        print(f"{k:<32} {s:8.2f} {ratio}")
    print(
        f"{'total (load + score + hull)':<32} {total:8.2f} {total / TARGET_S:8.3f}"
        f"  of the {TARGET_S:.0f} s target"
    )
    print(
        f"hull greedy: cost ${hull.cost:,.0f} profit ${hull.value:,.0f};"
        f" ratio greedy: cost ${ref.cost:,.0f} profit ${ref.value:,.0f} (budget ${args.budget:,.0f})"
    )
    return 0 if total <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
