"""The dashboard's Model health panel in real headless Chromium, against the
local router (``python -m serving.router``) over a lake with hand-written
monitor records. No model server is needed: the panel reads ``GET /health``
only (the prediction panels show the endpoint as down meanwhile)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
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
from tests.monitor_records import MODEL, three_runs, write

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "serving" / "dashboard"
WAIT_S = 30.0


@dataclass
class Router:
    url: str
    lake: Path
    state_dir: Path

    def endpoint(self, promoted_days_ago: float | None) -> None:
        """``endpoint.json`` names ``MODEL`` (on a dead port), promoted that long ago; None: no file."""
        path = self.state_dir / "endpoint.json"
        if promoted_days_ago is None:
            path.unlink(missing_ok=True)
            return
        when = dt.datetime.now(dt.UTC) - dt.timedelta(days=promoted_days_ago)
        doc = {"version": MODEL, "url": "http://127.0.0.1:9", "promoted_at": when.isoformat()}
        path.write_text(json.dumps(doc))

    def clear_history(self) -> None:
        shutil.rmtree(self.lake / "monitoring", ignore_errors=True)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    base = tmp_path_factory.mktemp("health-router")
    lake, state = base / "lake", base / "state"
    lake.mkdir()
    state.mkdir()
    port = free_port()
    log_path = base / "router.log"
    with open(log_path, "wb") as log:
        args = ["--state-dir", str(state), "--static-dir", str(STATIC_DIR), "--lake", str(lake)]
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.router", *args, "--port", str(port)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-2000:]

    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the router exited: {log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the router did not answer: {log_tail()}")
            time.sleep(0.1)
        yield Router(url, lake, state)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait(driver: Any, what: str, cond: Callable[[Any], Any]) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(
            driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(cond)
    except TimeoutException as e:
        panel = driver.execute_script("return document.getElementById('health-panel').innerText")
        raise AssertionError(f"timed out waiting for {what}; the panel says: {panel!r}") from e


def _state(driver: Any) -> str:
    state: str = driver.execute_script("return document.getElementById('health-panel').dataset.state")
    return state


def _open(browser: Any, router: Router, state: str) -> None:
    browser.get(f"{router.url}/")
    _wait(browser, f"the health panel to be {state}", lambda d: _state(d) == state)


def _points(browser: Any) -> list[dict[str, Any]]:
    pts: list[dict[str, Any]] = browser.execute_script(
        """return Array.from(document.querySelectorAll('#health-chart circle.wape-point')).map(c => ({
               week: c.dataset.week, wape: Number(c.dataset.wape), cy: Number(c.getAttribute('cy')),
               over: c.classList.contains('over')}));"""
    )
    return pts


def test_the_panel_shows_status_age_accuracy_drift_and_reasons(
    browser: Any, router: Router, screenshot: Any
) -> None:
    from selenium.webdriver.common.by import By

    router.clear_history()
    write(router.lake, *three_runs())
    router.endpoint(promoted_days_ago=12.5)
    _open(browser, router, "ready")
    panel = browser.find_element(By.ID, "health-panel")
    panel_y = panel.location["y"]
    browser.execute_script(f"window.scrollTo(0, {panel_y})")

    badge = browser.find_element(By.ID, "health-badge")
    assert badge.text.lower() == "drift" and badge.get_attribute("data-status") == "drift"
    assert badge.value_of_css_property("background-color") == "rgba(253, 231, 233, 1)"  # --bad-bg
    assert "master 3333333333333333" in browser.find_element(By.ID, "health-latest").text
    age = browser.find_element(By.ID, "health-age")
    assert age.text == "12 days" and float(age.get_attribute("data-value")) == pytest.approx(12.5, abs=0.01)
    assert browser.find_element(By.ID, "health-deployed").text == MODEL
    assert browser.find_element(By.ID, "health-empty").get_attribute("hidden") is not None

    # one point per observed week; a week two runs judged shows the later run's WAPE
    pts = _points(browser)
    assert [(p["week"], p["wape"]) for p in pts] == [
        ("2026-11-02", 0.18),
        ("2026-11-09", 0.21),
        ("2026-11-16", 0.41),
        ("2026-11-23", 0.35),
    ]
    heights = [p["cy"] for p in sorted(pts, key=lambda p: p["wape"])]
    assert heights == sorted(heights, reverse=True)  # a larger WAPE is drawn higher
    assert [p["over"] for p in pts] == [False, True, True, True]  # against the backtest's 0.19
    ref = browser.find_element(By.CSS_SELECTOR, "#health-chart line.reference-line")
    assert float(ref.get_attribute("data-value")) == 0.19
    low, high = min(pts, key=lambda p: p["wape"]), max(pts, key=lambda p: p["wape"])
    assert high["cy"] < float(ref.get_attribute("y1")) < low["cy"]

    flags = browser.execute_script(
        """return Array.from(document.querySelectorAll('#health-drift li.drift-flag'))
               .map(li => [li.dataset.feature, Number(li.dataset.value)]);"""
    )
    assert flags == [["dealer_count", 0.31], ["incentive_amount", 0.27]]
    unknown = browser.find_elements(By.CSS_SELECTOR, "#health-drift li.unknown-category")
    assert [(u.get_attribute("data-column"), u.get_attribute("data-value")) for u in unknown] == [
        ("vehicle_model", "Voltara EX")
    ]
    reasons = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#health-reasons li.reason")]
    assert reasons == three_runs()[-1]["reasons"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#health-history tr.health-row")
    assert [r.get_attribute("data-status") for r in rows] == ["drift", "ok", "ok"]  # newest first
    assert "dealer_count" in rows[0].text and "dealer_count" not in rows[1].text
    path = screenshot("dashboard-health")
    assert path.stat().st_size > 10_000


def test_an_ok_run_has_a_green_badge_and_no_flags(browser: Any, router: Router) -> None:
    from selenium.webdriver.common.by import By

    router.clear_history()
    write(router.lake, *three_runs()[:2])
    router.endpoint(promoted_days_ago=0.2)
    _open(browser, router, "ready")
    badge = browser.find_element(By.ID, "health-badge")
    assert badge.text.lower() == "ok"
    assert badge.value_of_css_property("background-color") == "rgba(217, 240, 224, 1)"
    assert browser.find_element(By.ID, "health-age").text == "less than a day"
    assert not browser.find_elements(By.CSS_SELECTOR, "#health-drift li.drift-flag, li.unknown-category")
    assert browser.find_elements(By.CSS_SELECTOR, "#health-drift li.none")
    assert len(_points(browser)) == 3


def test_the_empty_states(browser: Any, router: Router, screenshot: Any) -> None:
    from selenium.webdriver.common.by import By

    router.clear_history()
    router.endpoint(promoted_days_ago=3.2)
    _open(browser, router, "empty")
    empty = browser.find_element(By.ID, "health-empty")
    assert empty.is_displayed() and empty.get_attribute("data-reason") == "no_monitor"
    assert empty.text.startswith("No monitor has run yet") and "autoroi run ingest" in empty.text
    assert browser.find_element(By.ID, "health-badge").text.lower() == "no monitor"
    assert browser.find_element(By.ID, "health-age").text == "3 days"
    assert not browser.find_element(By.ID, "health-body").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#health-chart circle")
    screenshot("dashboard-health-empty")
    router.endpoint(None)
    _open(browser, router, "empty")
    empty = browser.find_element(By.ID, "health-empty")
    assert empty.get_attribute("data-reason") == "no_deployment"
    assert empty.text.startswith("No model version is deployed")
    assert browser.find_element(By.ID, "health-deployed").text == "none"
