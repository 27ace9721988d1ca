"""Scale-out benchmark (issue 16): the master table built by ``local[2]``
against a Spark standalone cluster on the same machine, and the
hyperparameter search in one process against Keras Tuner's distributed mode
(a chief and N workers) at the same trial budget.

    .venv/bin/python bench/scale.py spark [--rows 10000000] [--rounds 2]
    .venv/bin/python bench/scale.py tuner [--master DIR] [--trials 6] [--workers 2] [--epochs 20]

Spark: the curated tables of ``bench/preprocess.py`` (``--rows`` sales,
generated once into its work folder), built by its Spark worker (a process of
its own: session start, build, a second warm build) with ``local[2]`` and with
a master and two workers of one core each (executors of ``--executor-memory``);
same 2 cores, so the point is that the cluster gives the same master table and
what its overhead is, not a speed-up. Prints the times, the ratio and whether
the two master tables are equal.

Tuner:
the master table ``--master`` (a folder of Parquet), or the one
``bench/model_quality.py`` keeps for ``--seed`` (made when missing). The time
budget is set far above what the trials need, so both searches run exactly
``--trials`` trials; the reference is the in-process search of the same run.
Prints one table: processes, trials, wall seconds, best validation loss,
ratio to the reference; and which process ran each trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import model_quality as mq
import preprocess as pre
from cpuload import machine_info, table


def spark_part(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from tests.scale.cluster import standalone_cluster

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # the drivers too stay on loopback
    work = mq.REPO / "var" / "bench" / "preprocess"
    inputs = pre.prepare(work, args.rows, pre.SEED)
    curated = pre.curated_dir(work, args.rows)
    info = machine_info(("pyspark",))
    runs: dict[str, list[pre.Run]] = {"local[2]": [], "cluster": []}
    outs: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        with standalone_cluster(
            Path(tmp) / "cluster", workers=2, cores=1, memory=args.worker_memory
        ) as cluster:
            masters = {"local[2]": ("local[2]", {}), "cluster": (cluster.url, {
                "spark.executor.memory": args.executor_memory, "spark.cores.max": "2"})}  # fmt: skip
            for r in range(args.rounds):
                for name, (url, conf) in masters.items():
                    outs[name] = Path(tmp) / f"{name}.parquet"
                    spec = {"curated": str(curated), "k": pre.K, "out": str(outs[name]), "rows": args.rows,
                            "master": url, "conf": conf}  # fmt: skip
                    run = pre.run_worker("spark", spec)
                    runs[name].append(run)
                    res = run.result
                    mq.log(
                        f"round {r + 1} {name}: start {res['start_s']:.1f} s, build {res['build_s']:.1f} s,"
                        f" warm {res['warm_s']:.1f} s, process {run.wall_s:.1f} s, others {run.others:.2f}"
                    )
            apps = cluster.completed_apps()
        same = pq.read_table(outs["local[2]"]).equals(pq.read_table(outs["cluster"]))
    best = {name: min(rs, key=lambda x: x.result["build_s"]) for name, rs in runs.items()}
    ref = best["local[2]"].result
    rows = []
    for name, run in best.items():
        res = run.result
        rows.append([name, f"{res['start_s']:.1f}", f"{res['build_s']:.1f}", f"{res['warm_s']:.1f}",
                     f"{run.wall_s:.1f}", f"{res['build_s'] / ref['build_s']:.2f}",
                     f"{res['warm_s'] / ref['warm_s']:.2f}", f"{run.others:.2f}"])  # fmt: skip
    print(
        f"{args.rows:,} sales ({inputs['scale']} world), k = {pre.K}; {args.rounds} rounds, the fastest build"
        f" counts; {info['cores']} cores; cluster: 2 workers x 1 core, executors {args.executor_memory}"
    )
    head = [
        "spark.master",
        "start s",
        "build s",
        "warm s",
        "process s",
        "build ratio",
        "warm ratio",
        "others",
    ]
    print(table(head, rows))
    cores = sorted({a["cores"] for a in apps})
    print(
        f"master tables equal: {same} ({best['local[2]'].result['rows']:,} rows);"
        f" applications the cluster ran: {len(apps)}, cores {cores}"
    )
    return 0 if same else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    sp = sub.add_parser("spark", help="the master table: local[2] against a standalone cluster")
    sp.add_argument("--rows", type=int, default=10_000_000)
    sp.add_argument("--rounds", type=int, default=2)
    sp.add_argument("--worker-memory", default="5g")
    sp.add_argument("--executor-memory", default="4g")
    tp = sub.add_parser("tuner", help="the search: in one process against a chief and N workers")
    tp.add_argument("--master", type=Path, help="a master table folder (default: model_quality's for --seed)")
    tp.add_argument("--seed", type=int, default=301, help="the source seed of the default master table")
    tp.add_argument("--trials", type=int, default=6)
    tp.add_argument("--workers", type=int, default=2)
    tp.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the config's)")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return spark_part(args) if args.part == "spark" else tuner_part(args)


def tuner_part(args: argparse.Namespace) -> int:
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
    by: dict[str, list[str]] = {}
    for t in dist.trials:
        by.setdefault(t["tuner"], []).append(f"{t['trial_id']} ({t['seconds']:.0f} s)")
    print("distributed trials by worker: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(by.items())))
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
