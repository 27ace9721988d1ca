"""A Spark standalone cluster on loopback: a master and workers started from
the venv's pyspark (``spark-class``), stopped (process groups terminated,
then killed) on exit. Used by the scale tier and ``bench/scale.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark

from autoroi.deploy.local import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class SparkCluster:
    url: str  # spark://127.0.0.1:PORT
    ui: str  # the master's web UI (its /json/ lists workers and applications)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc

    def completed_apps(self) -> list[dict[str, Any]]:
        return list(self.state().get("completedapps", []))


def _daemon(cls: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), cls, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def standalone_cluster(
    tmp: Path, workers: int = 2, cores: int = 1, memory: str = "1g"
) -> Iterator[SparkCluster]:
    """A master and ``workers`` workers of ``cores`` cores and ``memory`` each."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_NO_DAEMONIZE": "1",
    }
    port, ui_port = free_port(), free_port()
    master_args = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]
    procs = [_daemon("org.apache.spark.deploy.master.Master", master_args, env, tmp / "master.log")]
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                cluster.state()
                break
            except OSError:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError((tmp / "master.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        for i in range(workers):
            args = [cluster.url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                    "--webui-port", str(free_port()), "--work-dir", str(tmp / f"work-{i}")]  # fmt: skip
            procs.append(_daemon("org.apache.spark.deploy.worker.Worker", args, env, tmp / f"worker-{i}.log"))
        while len([w for w in cluster.state()["workers"] if w["state"] == "ALIVE"]) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "the workers did not register:\n" + (tmp / "worker-0.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield cluster
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
