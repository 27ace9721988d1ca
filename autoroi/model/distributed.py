"""The search in Keras Tuner's distributed mode: a chief process that serves
the oracle over gRPC and N worker processes that ask it for trials, run them
and report back (``KERASTUNER_TUNER_ID`` ``chief`` / ``tuner<i>``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``; every process sees the
same tuner project folder).

Why processes started here rather than pods: KFP tasks cannot address each
other (a worker would need the chief's pod address before it exists), so in a
pipeline the tune step runs this launcher in its own pod, its chief and
workers as processes sharing the pod's cores (``training.tuner_workers``). A
search spread over nodes is Katib's job (an ``Experiment`` with
``parallelTrialCount``, each trial a pod; DESIGN.md, "Scaling out"): Keras
Tuner's gRPC oracle needs a stable address for the chief, which Kubeflow
Trainer's JobSet gives (``<job>-chief-0-0.<job>``) and plain KFP tasks do not.

The trials are the in-process search's (same oracle, seeds and budget): each
trial builds and fits its network with Keras' seed reset to ``seed``, so which
worker ran it does not change its score. The oracle's Bayesian optimization
proposes a trial from the results in so far, so with several workers in flight
the later proposals see fewer finished trials than a serial search would.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

INPUTS_DIR = "_distributed"
RESULT_FILE = "result.json"
START_TIMEOUT_S = 120.0
GRACE_S = 180.0  # beyond max_seconds: start-up, the last trials' epochs, the chief's 20 s exit polls
JSON_OPTIONS = ("epochs", "patience", "project_name", "initial_points")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as e:
        return f"<no log: {e}>"


def tune_distributed(
    train: pd.DataFrame,
    val: pd.DataFrame,
    space: Mapping[str, Any],
    max_trials: int,
    max_seconds: float,
    seed: int,
    directory: str | Path,
    overwrite: bool,
    *,
    workers: int,
    host: str = "127.0.0.1",
    **options: Any,
) -> Any:
    """``tune_hyperparameters``' search by a chief and ``workers`` worker
    processes; its ``TuningResult``. ``options``: epochs, patience,
    project_name, initial_points."""
    from autoroi.deploy.local import free_port
    from autoroi.model.tuning import TuningResult, _as_plain

    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    unknown = set(options) - set(JSON_OPTIONS)
    if unknown:
        raise ValueError(f"options a distributed search cannot pass to its processes: {sorted(unknown)}")
    directory = Path(directory)
    inputs = directory / INPUTS_DIR
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir(parents=True)
    train.to_parquet(inputs / "train.parquet", index=False)
    val.to_parquet(inputs / "val.parquet", index=False)
    spec = {
        "space": {k: _as_plain(v) for k, v in space.items()},
        "max_trials": max_trials,
        "max_seconds": max_seconds,
        "seed": seed,
        "directory": str(directory),
        "overwrite": overwrite,
        "options": options,
    }
    (inputs / "spec.json").write_text(json.dumps(spec, default=str))
    port = free_port(host)
    env = {**os.environ, "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": str(port)}
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(tuner_id: str) -> None:
        log_path = inputs / f"{tuner_id}.log"
        with open(log_path, "wb") as out:
            procs[tuner_id] = (
                subprocess.Popen(
                    [sys.executable, "-m", "autoroi.model.distributed", str(inputs), tuner_id],
                    env={**env, "KERASTUNER_TUNER_ID": tuner_id},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log_path,
            )

    t0 = time.monotonic()
    try:
        start("chief")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(host, port):
            chief, chief_log = procs["chief"]
            if chief.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the tuner's chief did not start serving on {host}:{port}:\n{_tail(chief_log)}"
                )
            time.sleep(0.2)
        for i in range(workers):
            start(f"tuner{i}")
        log.info("distributed search: chief on %s:%d, %d workers", host, port, workers)
        limit = time.monotonic() + max_seconds + GRACE_S
        for tuner_id, (proc, log_path) in procs.items():
            try:
                code = proc.wait(timeout=max(1.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired as e:
                raise RuntimeError(f"{tuner_id} still running after the budget and {GRACE_S:.0f} s") from e
            if code != 0:
                raise RuntimeError(f"{tuner_id} exited with {code}:\n{_tail(log_path)}")
        doc = json.loads((inputs / RESULT_FILE).read_text())
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        for name in ("train.parquet", "val.parquet"):
            (inputs / name).unlink(missing_ok=True)
    result = TuningResult(**doc)
    result.seconds = time.monotonic() - t0
    result.log.append(f"distributed: a chief and {workers} workers on {host}:{port}")
    return result


def _main(inputs: Path, tuner_id: str) -> None:
    from autoroi.lake.storage import write_json_local
    from autoroi.model.tuning import tune_hyperparameters, tune_worker

    logging.basicConfig(level=logging.WARNING)
    spec = json.loads((inputs / "spec.json").read_text())
    train = pd.read_parquet(inputs / "train.parquet")
    val = pd.read_parquet(inputs / "val.parquet")
    args = (
        train,
        val,
        spec["space"],
        spec["max_trials"],
        spec["max_seconds"],
        spec["seed"],
        spec["directory"],
    )
    if tuner_id == "chief":
        result = tune_hyperparameters(*args, spec["overwrite"], role="chief", **spec["options"])
        write_json_local(inputs / RESULT_FILE, result.to_dict())
    else:
        tune_worker(*args, **spec["options"])


if __name__ == "__main__":
    _main(Path(sys.argv[1]), sys.argv[2])
