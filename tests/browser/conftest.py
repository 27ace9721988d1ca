"""Fixtures of the dashboard tests.

roi_artifact, roi_server (session)  from tests/serving/conftest.py: a small trained artifact and a
                                    real KServe model server on it (``--max-batch 16``)
dashboard_lake (session)            Path: a lake folder whose registry holds the served version's
                                    ``report.html`` (the router's ``--lake``)
dashboard (session)                 Dashboard: ``python -m serving.router`` with the dashboard's
                                    static files, ``endpoint.json`` naming the model server;
                                    ``point_at(url)`` / ``restore()`` rewrite that file
browser (session)                   a Selenium WebDriver on Debian's headless ``chromium`` and
                                    ``chromedriver`` (the tests skip when they are missing:
                                    ``make system-deps`` installs them)
screenshot (function)               ``screenshot(name)`` saves a PNG of the page in the test's tmp
                                    dir, and in ``$AUTOROI_TEST_ARTIFACTS/browser/`` when that is set
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.serving.conftest import RunningServer, roi_artifact, roi_server

__all__ = ["roi_artifact", "roi_server"]  # fixtures shared with tests/serving

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "serving" / "dashboard"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
READY_TIMEOUT_S = 30.0


def served_version(artifact: Path) -> str:
    doc = json.loads((artifact / "preprocessing.json").read_text())
    return str(doc.get("version") or artifact.name)


@dataclass
class Dashboard:
    url: str
    state_dir: Path
    version: str
    model_url: str
    artifact: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def write_endpoint(self, doc: dict[str, Any] | None) -> None:
        path = self.state_dir / "endpoint.json"
        if doc is None:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(".endpoint.json.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def point_at(self, url: str) -> None:
        """``endpoint.json`` names ``url`` (a dead port: the endpoint is down)."""
        self.write_endpoint(
            {"version": self.version, "url": url, "pid": None, "artifact": str(self.artifact)}
        )

    def restore(self) -> None:
        self.point_at(self.model_url)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"<no router log: {e}>"


@pytest.fixture(scope="session")
def dashboard_lake(roi_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("dashboard-lake")
    version = served_version(roi_artifact)
    folder = lake / "models" / "roi" / version
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(
        f"<!doctype html><title>report</title><h1>Training report of {version}</h1>", encoding="utf-8"
    )
    return lake


@pytest.fixture(scope="session")
def dashboard(
    roi_server: RunningServer,
    roi_artifact: Path,
    dashboard_lake: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Dashboard]:
    state_dir = tmp_path_factory.mktemp("dashboard-state")
    log_path = state_dir / "router.log"
    version = served_version(roi_artifact)
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.router",
                "--state-dir",
                str(state_dir),
                "--static-dir",
                str(STATIC_DIR),
                "--lake",
                str(dashboard_lake),
                "--port",
                str(port),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    dash = Dashboard(
        f"http://127.0.0.1:{port}", state_dir, version, roi_server.url, roi_artifact, process, log_path
    )
    dash.restore()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the router exited with {process.returncode}\n{dash.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{dash.url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the router did not answer within {READY_TIMEOUT_S:g} s\n{dash.log_tail()}"
                )
            time.sleep(0.1)
        yield dash
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = _first(CHROMIUM_CANDIDATES, "chromium")
    driver_path = _first(CHROMEDRIVER_CANDIDATES, "chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make system-deps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,1900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(browser: Any, tmp_path: Path) -> Callable[[str], Path]:
    """``screenshot(name)``: a PNG of the page in the test's tmp dir and, when
    ``AUTOROI_TEST_ARTIFACTS`` is set, a copy in ``$AUTOROI_TEST_ARTIFACTS/browser/``."""

    def save(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"could not save the screenshot {path}"
        extra = os.environ.get("AUTOROI_TEST_ARTIFACTS")
        if extra:
            target = Path(extra) / "browser"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.name)
        return path

    return save
