"""Fixtures of the model-server tests.

roi_artifact (session)  Path: a small trained model artifact (tests/model_tables.trained_model)
roi_server (session)    RunningServer: ``python -m serving.roi_server`` on that artifact, a free port,
                        gRPC off, ``--max-batch 16``; ready (``/v2/health/ready`` answered 200)
client (function)       httpx.Client bound to the server
v2_schema (session)     callable(name, document): validate against rest_predict_v2.yaml's schema
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parent / "data" / "rest_predict_v2.yaml"
MAX_BATCH = 16
READY_TIMEOUT_S = 180.0


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"<no server log: {e}>"


@pytest.fixture(scope="session")
def roi_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from autoroi.model.artifact import save_model
    from tests.model_tables import trained_model

    return save_model(tmp_path_factory.mktemp("roi-artifact") / "model", trained_model())


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the model server exited with {server.process.returncode}\n{server.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"the model server was not ready after {timeout:.0f} s\n{server.log_tail()}")


@pytest.fixture(scope="session")
def roi_server(roi_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_path = tmp_path_factory.mktemp("roi-server") / "server.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    for attempt in range(3):  # a port taken between free_port() and the bind: try another
        port = free_port()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serving.roi_server",
                    "--model-dir",
                    str(roi_artifact),
                    "--http_port",
                    str(port),
                    "--enable_grpc",
                    "false",
                    "--max-batch",
                    str(MAX_BATCH),
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
        try:
            _wait_ready(server, READY_TIMEOUT_S)
            break
        except RuntimeError:
            _stop(process)
            if attempt == 2 or "address already in use" not in server.log_tail().lower():
                raise
    try:
        yield server
    finally:
        _stop(server.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def client(roi_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=roi_server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def v2_schema() -> Callable[[str, Any], None]:
    """Validate a document against ``components/schemas/<name>`` of the v2 spec."""
    import jsonschema

    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))

    def validate(name: str, document: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft7Validator(schema).validate(document)

    return validate
