"""Local pipeline tier: ``deploy`` through kfp.local against real KServe model
server processes behind the local endpoint: first rollout, a swap under a
steady stream of requests (none fails), a smoke-test failure that rolls back
while the old version keeps answering, and refusals before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoroi.approval import APPROVE, decide
from autoroi.config import load_config
from autoroi.deploy.local import LocalTarget, pid_alive, read_endpoint
from autoroi.deploy.smoke import SAMPLES_FILE, record_samples
from autoroi.lake.storage import open_lake
from autoroi.model.artifact import save_model
from autoroi.registry import get_version, register_model
from pipelines.run import run_local
from tests.conftest import free_port
from tests.model_tables import simulated_master, trained_model

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

SCENARIO = {
    "region": "Northeast",
    "vehicle_model": "Pico",
    "week_start": "2025-06-02",
    "incentive_type": "cash_rebate",
    "incentive_amount": 1500,
}


def _register(
    lake_uri: str, tmp: Path, name: str, *, corrupt_samples: bool = False, epochs: int = 3, lake: Any = None
) -> str:
    """A small trained model with recorded smoke samples, registered and
    approved (``lake``: an opened lake, for one with its own S3 settings)."""
    master, _ = simulated_master()
    folder = save_model(tmp / name / "model", trained_model(epochs=epochs))
    record_samples(folder, master, n=12)
    if corrupt_samples:  # a server that answers differently from the recording
        doc = json.loads((folder / SAMPLES_FILE).read_text())
        doc["outputs"][0]["predicted_units"] += 5.0
        (folder / SAMPLES_FILE).write_text(json.dumps(doc))
    gate = {"passed": True, "reasons": [], "checks": []}
    meta = {"master_version": "m-test", "metrics": {"wape": 0.3}, "gate": gate}
    lake = lake or open_lake(lake_uri)
    mv = register_model(lake, folder, meta, {}, "<html>report</html>", "pending_approval")
    decide(lake, mv.version, APPROVE, "tester")
    return mv.version


@pytest.fixture
def world(tmp_path: Path):
    lake_uri = str(tmp_path / "lake")
    state = tmp_path / "serving"
    port = free_port()
    cfg = load_config(
        overrides={
            "lake": {"uri": lake_uri},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
            "serving": {"state_dir": str(state), "port": port, "ready_timeout_s": 240},
        }
    )
    router = subprocess.Popen(
        [sys.executable, "-m", "serving.router", "--state-dir", str(state), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield cfg, url
    router.terminate()
    router.wait(10)
    LocalTarget(state, lake_uri).stop_all()


def _predict(url: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/models/roi:predict", json={"instances": [SCENARIO]}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_first_rollout_then_a_swap_under_load_fails_no_request(world, tmp_path: Path):
    cfg, url = world
    lake = open_lake(cfg.lake.uri)
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503  # nothing deployed yet

    v1 = _register(cfg.lake.uri, tmp_path, "one")
    run_local("deploy", cfg, tmp_path / "deploy-1.log", params={"version": v1})
    assert get_version(lake, v1).status == "deployed"
    first = read_endpoint(cfg.serving.state_dir)
    assert first is not None and first["version"] == v1
    before = _predict(url)
    assert before["predictions"][0]["roi"] is not None

    v2 = _register(cfg.lake.uri, tmp_path, "two", epochs=4)
    errors: list[str] = []
    answered: list[str] = []
    stop = threading.Event()

    def steady() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{url}/v1/models/roi:predict", json={"instances": [SCENARIO]})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        answered.append(r.headers["x-autoroi-model-version"])
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                time.sleep(0.02)

    worker = threading.Thread(target=steady)
    worker.start()
    try:
        run_local("deploy", cfg, tmp_path / "deploy-2.log", params={"version": v2})
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(30)
    assert errors == []
    assert answered[0] == v1 and answered[-1] == v2 and len(answered) > 20
    assert get_version(lake, v2).status == "deployed"
    assert get_version(lake, v1).status == "retired"
    assert not pid_alive(first["pid"])  # the old server was stopped after the switch
    records = sorted((Path(cfg.lake.uri) / "deployments" / "roi").glob("*.json"))
    assert [json.loads(p.read_text())["outcome"] for p in records] == ["promoted", "promoted"]


def test_a_failed_smoke_test_rolls_back_and_the_old_version_keeps_answering(world, tmp_path: Path):
    cfg, url = world
    lake = open_lake(cfg.lake.uri)
    v1 = _register(cfg.lake.uri, tmp_path, "good")
    run_local("deploy", cfg, tmp_path / "deploy-good.log", params={"version": v1})
    bad = _register(cfg.lake.uri, tmp_path, "bad", corrupt_samples=True)

    with pytest.raises(RuntimeError):
        run_local("deploy", cfg, tmp_path / "deploy-bad.log", params={"version": bad})

    log = (tmp_path / "deploy-bad.log").read_text()
    assert "failed its smoke test and was rolled back" in log and "predicted_units" in log
    assert read_endpoint(cfg.serving.state_dir)["version"] == v1
    assert _predict(url)["model_version"] == v1 or _predict(url)["predictions"][0]["model_version"] == v1
    assert get_version(lake, bad).status == "approved"  # not deployed
    assert not list((Path(cfg.serving.state_dir) / "candidates").glob("*.json"))  # its server is gone
    outcomes = [
        json.loads(p.read_text())["outcome"] for p in (Path(cfg.lake.uri) / "deployments" / "roi").glob("*")
    ]
    assert sorted(outcomes) == ["promoted", "rolled_back"]


def test_deploy_refuses_an_unapproved_version_before_starting_anything(world, tmp_path: Path):
    cfg, _ = world
    master, _ = simulated_master()
    folder = save_model(tmp_path / "x" / "model", trained_model())
    record_samples(folder, master, n=4)
    gate = {"passed": True, "reasons": [], "checks": []}
    mv = register_model(
        open_lake(cfg.lake.uri),
        folder,
        {"master_version": "m", "metrics": {}, "gate": gate},
        {},
        "<html></html>",
        "pending_approval",
    )
    with pytest.raises(RuntimeError):
        run_local("deploy", cfg, tmp_path / "deploy.log", params={"version": mv.version})
    assert "no recorded approval" in (tmp_path / "deploy.log").read_text()
    assert not (Path(cfg.serving.state_dir) / "candidates").exists()
