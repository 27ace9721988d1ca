"""Scale-out benchmark (issue 16): the hyperparameter search in one process
against Keras Tuner's distributed mode (a chief and N workers), at the same
trial budget, on a demo-scale master table.

    .venv/bin/python bench/scale.py [--master DIR] [--trials 6] [--workers 2] [--epochs 20]

The master table: ``--master`` (a folder of Parquet), or the one
``bench/model_quality.py`` keeps for ``--seed`` (made when missing). The time
budget is set far above what the trials need, so both searches run exactly
``--trials`` trials; the reference is the in-process search of the same run.
Prints one table: processes, trials, wall seconds, best validation loss,
ratio to the reference; and which process ran each trial.

The master-table part of the issue (10 M sales, ``local[2]`` against a Spark
standalone cluster) is not here: see bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_quality as mq
from cpuload import machine_info, table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", type=Path, help="a master table folder (default: model_quality's for --seed)")
    p.add_argument("--seed", type=int, default=301, help="the source seed of the default master table")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the config's)")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pyarrow.parquet as pq

    from autoroi.config import load_config
    from autoroi.evaluation.folds import holdout_split
    from autoroi.model import features as F
    from autoroi.model.distributed import tune_distributed
    from autoroi.model.tuning import tune_hyperparameters

    if args.master is None:
        work = mq.REPO / "var" / "bench" / "model_quality"
        mq.prepare(work, args.seed, mq.SCALE, False)
        args.master = mq.input_dir(work, args.seed, mq.SCALE) / "master"
    cfg = load_config().training
    epochs = args.epochs or cfg.epochs
    master = pq.read_table(args.master).to_pandas()
    train, val = holdout_split(F.training_frame(master), cfg.validation_weeks)
    budget = 3600.0  # far above the trials: the trial count binds
    common = (train, val, cfg.search_space, args.trials, budget, cfg.seed)
    info = machine_info(("tensorflow", "keras-tuner"))
    rows, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for name in ("in-process", "distributed"):
            t0 = time.perf_counter()
            if name == "in-process":
                r = tune_hyperparameters(
                    *common, Path(tmp) / name, overwrite=True, epochs=epochs, patience=cfg.patience
                )
                procs = 1
            else:
                r = tune_distributed(*common, Path(tmp) / name, True, workers=args.workers, epochs=epochs,
                                     patience=cfg.patience)  # fmt: skip
                procs = 1 + args.workers
            wall = time.perf_counter() - t0
            runs[name] = (r, wall)
            mq.log(f"{name}: {len(r.trials)} trials in {wall:.1f} s, best val_loss {r.best_score:.5f}")
            rows.append((name, procs, r, wall))
    ref = runs["in-process"][1]
    print(
        f"{len(master):,} master rows ({len(train):,} training, {len(val):,} validation),"
        f" {args.trials} trials, {epochs} epochs at most each (early stopping, patience {cfg.patience});"
        f" {info['cores']} cores"
    )
    print(
        table(
            ["search", "processes", "trials", "wall s", "best val_loss", "ratio"],
            [
                [
                    name,
                    str(procs),
                    str(len(r.trials)),
                    f"{wall:.1f}",
                    f"{r.best_score:.5f}",
                    f"{wall / ref:.2f}",
                ]
                for name, procs, r, wall in rows
            ],
        )
    )
    dist = runs["distributed"][0]
    by = {}
    for t in dist.trials:
        by.setdefault(t["tuner"], []).append(f"{t['trial_id']} ({t['seconds']:.0f} s)")
    print("distributed trials by worker: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(by.items())))
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
