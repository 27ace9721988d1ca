"""A Spark standalone cluster on loopback: a master and two workers started
from the venv's pyspark (``spark-class``), one core and 1 GiB each, stopped
(process group killed) after the tests."""

from __future__ import annotations

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

import pyspark
import pytest

from autoroi.deploy.local import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class SparkCluster:
    url: str  # spark://127.0.0.1:PORT
    ui: str  # the master's web UI (its /json/ lists workers and applications)

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as r:
            return json.loads(r.read())


def _spark_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "SPARK_WORKER_DIR": str(tmp / "work"),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_NO_DAEMONIZE": "1",
    }


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


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = _spark_env(tmp)
    port, ui_port = free_port(), free_port()
    procs = [
        _daemon(
            "org.apache.spark.deploy.master.Master",
            ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
            env,
            tmp / "master.log",
        )
    ]
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
        for i in range(2):
            procs.append(
                _daemon(
                    "org.apache.spark.deploy.worker.Worker",
                    [
                        cluster.url,
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        "1",
                        "--memory",
                        "1g",
                        "--webui-port",
                        str(free_port()),
                        "--work-dir",
                        str(tmp / f"work-{i}"),
                    ],
                    env,
                    tmp / f"worker-{i}.log",
                )  # fmt: skip
            )
        while len([w for w in cluster.state()["workers"] if w["state"] == "ALIVE"]) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "two workers did not register:\n" + (tmp / "worker-0.log").read_text()[-3000:]
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
