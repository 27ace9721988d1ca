"""The dashboard in real headless Chromium, against a real KServe model server
behind the local router (fixtures in conftest.py).

The model server runs with ``--max-batch 16``, so the 20-amount ROI curve also
exercises the page's split-on-413 path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.browser

WAIT_S = 30.0


def _wait(driver: Any, what: str, cond: Callable[[Any], Any], timeout: float = WAIT_S) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page replaces its SVGs and captions when new answers arrive; an element
    # found in one poll can be gone by the next call on it. That is "not yet", so
    # the next poll looks it up again.
    try:
        return WebDriverWait(
            driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(cond)
    except TimeoutException as e:
        errors = driver.execute_script("return document.getElementById('errors').innerText")
        status = driver.execute_script("return document.getElementById('status').innerText")
        raise AssertionError(f"timed out waiting for {what}; status: {status!r}; errors: {errors!r}") from e


def _by_id(driver: Any, id_: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _numbers(driver: Any) -> dict[str, str]:
    """The prediction panel's raw values (``data-value``), by output name."""
    out: dict[str, str] = driver.execute_script(
        """const o = {roi: document.getElementById('roi').dataset.value || ''};
           document.querySelectorAll('#prediction dd[data-field]').forEach(
               d => { o[d.dataset.field] = d.dataset.value || ''; });
           return o;"""
    )
    return out


def _marker_x(driver: Any) -> str | None:
    """The what-if curve's amount marker position, read in one script call
    (the curve is redrawn as answers arrive)."""
    x: str | None = driver.execute_script(
        "const m = document.querySelector('#curve line.current'); return m && m.getAttribute('x1');"
    )
    return x


def _type_amount(driver: Any, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    amount = _by_id(driver, "amount")
    amount.send_keys(Keys.CONTROL, "a")
    amount.send_keys(Keys.BACKSPACE)
    amount.send_keys(text)


def _error_items(driver: Any) -> list[dict[str, str]]:
    items: list[dict[str, str]] = driver.execute_script(
        """return Array.from(document.querySelectorAll('#error-list li')).map(li => ({
               source: li.dataset.source, kind: li.dataset.kind, text: li.innerText,
               field: (li.querySelector('.field') || {}).textContent || '',
               reason: (li.querySelector('.reason') || {}).textContent || ''}));"""
    )
    return items


def _loaded(driver: Any) -> bool:
    """The first round is done: a prediction, a curve and a heatmap are drawn."""
    done: bool = driver.execute_script(
        """return !!document.getElementById('roi').dataset.value
               && document.querySelectorAll('#curve circle.roi-point').length > 0
               && document.querySelectorAll('#heatmap td.cell').length > 0;"""
    )
    return done


@pytest.fixture
def page(browser: Any, dashboard: Any) -> Iterator[Any]:
    """The dashboard, loaded, with its first prediction, curve and heatmap drawn."""
    dashboard.restore()
    browser.get(f"{dashboard.url}/")
    _wait(browser, "the first prediction, curve and heatmap", _loaded)
    yield browser
    dashboard.restore()


def test_page_shows_version_prediction_and_report_link(page: Any, dashboard: Any, screenshot: Any) -> None:
    _wait(page, "the model version", lambda d: _by_id(d, "model-version").text == dashboard.version)
    values = _numbers(page)
    for field in ("roi", "predicted_units", "baseline_units", "incremental_units", "incentive_cost"):
        assert values[field] != "", f"{field} is not shown: {values}"
        float(values[field])
    assert float(values["incentive_cost"]) > 0
    assert _by_id(page, "roi").text.endswith("%")
    assert _by_id(page, "errors").get_attribute("hidden") is not None
    link = _by_id(page, "report-link")
    assert link.get_attribute("href") == f"{dashboard.url}/report"
    _wait(page, "the report check", lambda d: "unavailable" not in (link.get_attribute("class") or ""))
    report = httpx.get(link.get_attribute("href"), timeout=10)
    assert report.status_code == 200
    assert f"Training report of {dashboard.version}" in report.text
    # the pickers come from the served artifact: every option is servable
    regions = [o.get_attribute("value") for o in _css(page, "#region option")]
    assert regions == ["Northeast", "Pacific"]
    models = [o.text for o in _css(page, "#vehicle-model option")]
    assert "Pico (compact)" in models
    path = screenshot("dashboard")
    assert path.stat().st_size > 10_000


def test_what_if_amount_updates_numbers_and_curve(page: Any) -> None:
    before = _numbers(page)
    marker_before = _marker_x(page)
    _type_amount(page, "2500")  # from the default 1000
    _wait(page, "new numbers", lambda d: _numbers(d)["incentive_cost"] != before["incentive_cost"])
    after = _numbers(page)
    assert after["roi"] != before["roi"]
    assert after["predicted_units"] != before["predicted_units"]
    assert after["baseline_units"] == before["baseline_units"]  # same cell, no incentive
    _wait(
        page,
        "the curve's amount marker to move",
        lambda d: _marker_x(d) != marker_before,
    )
    _wait(page, "the heatmap's new program", lambda d: "$2,500" in _by_id(d, "heatmap-caption").text)


def test_roi_curve_renders_as_svg(page: Any) -> None:
    svg = _by_id(page, "curve-svg")
    assert svg.tag_name == "svg"
    d = _css(page, "#curve path.roi-line")[0].get_attribute("d")
    assert d.startswith("M ")
    points = _css(page, "#curve circle.roi-point")
    assert len(points) == 20  # one batch of 20 amounts (split in two by the server's batch limit)
    amounts = [float(p.get_attribute("data-amount")) for p in points]
    assert amounts == sorted(amounts) and amounts[0] > 0
    rois = [float(p.get_attribute("data-roi")) for p in points]
    assert len(set(rois)) > 1
    assert d.count(" L ") + d.count("M ") == 20


def test_the_interval_beside_the_roi_and_the_band_on_the_curve(page: Any) -> None:
    roi = float(_numbers(page)["roi"])
    interval = _by_id(page, "roi-interval")
    assert interval.text.startswith("90 %: ") and interval.text.count("%") == 3, interval.text
    lower, upper = float(interval.get_attribute("data-lower")), float(interval.get_attribute("data-upper"))
    assert lower < roi < upper
    prob = _by_id(page, "prob-pays-back")
    assert "pays back" in prob.text and prob.text.endswith("%")
    assert (float(prob.get_attribute("data-value")) > 0.5) == (roi > 0)
    # the band: one closed shape through every amount's upper and lower bound
    bands = _css(page, "#curve path.roi-band")
    assert len(bands) == 1
    d = bands[0].get_attribute("d")
    assert d.startswith("M ") and d.endswith(" Z") and d.count(" L ") == 2 * 20 - 1
    for p in _css(page, "#curve circle.roi-point"):
        lo, mid, hi = (float(p.get_attribute(a)) for a in ("data-lower", "data-roi", "data-upper"))
        assert lo < mid < hi


def test_heatmap_renders_region_by_segment(page: Any) -> None:
    options = httpx.get(page.current_url + "options", timeout=10).json()
    cells = _css(page, "#heatmap td.cell")
    assert len(cells) == len(options["regions"]) * len(options["segments"]) == 8
    for c in cells:
        assert c.text.endswith("%"), c.text
        float(c.get_attribute("data-roi"))
        assert c.get_attribute("data-region") in options["regions"]
        assert c.get_attribute("data-segment") in options["segments"]
    headers = [th.text for th in _css(page, "#heatmap thead th")][1:]
    assert headers == options["segments"]
    # a click opens the cell as the scenario
    target = next(c for c in cells if c.get_attribute("data-region") == "Pacific")
    segment = target.get_attribute("data-segment")
    target.click()
    _wait(page, "the region picker", lambda d: _by_id(d, "region").get_attribute("value") == "Pacific")
    model = _by_id(page, "vehicle-model").get_attribute("value")
    assert {m["name"]: m["segment"] for m in options["vehicle_models"]}[model] == segment


def test_bad_input_shows_the_servers_field_and_reason(page: Any, screenshot: Any) -> None:
    _type_amount(page, "-500")
    _wait(page, "the refusal", lambda d: any(e["source"] == "prediction" for e in _error_items(d)))
    (err,) = [e for e in _error_items(page) if e["source"] == "prediction"]
    assert err["kind"] == "rejected"
    assert err["field"] == "instances[0].incentive_amount"
    assert err["reason"] == "must be >= 0"
    assert "HTTP 400" in err["text"]
    assert _by_id(page, "errors").is_displayed()
    assert _by_id(page, "amount").get_attribute("aria-invalid") == "true"
    assert "stale" in (_by_id(page, "prediction-panel").get_attribute("class") or "")
    screenshot("dashboard-rejected")
    # fixing the input clears the error
    _type_amount(page, "800")
    _wait(page, "the error to clear", lambda d: not _error_items(d))
    assert _by_id(page, "amount").get_attribute("aria-invalid") is None


def test_a_week_that_is_not_a_monday_is_refused_by_the_server(page: Any) -> None:
    page.execute_script(
        """const w = document.getElementById('week'); w.value = '2026-03-03';
           w.dispatchEvent(new Event('change'));"""
    )
    _wait(page, "the refusal", lambda d: any(e["source"] == "prediction" for e in _error_items(d)))
    (err,) = [e for e in _error_items(page) if e["source"] == "prediction"]
    assert err["field"] == "instances[0].week_start"
    assert "Monday" in err["reason"]


def test_endpoint_down_is_shown_clearly(page: Any, dashboard: Any, screenshot: Any) -> None:
    shown = _numbers(page)
    dashboard.point_at(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    _type_amount(page, "1200")
    _wait(page, "the endpoint error", lambda d: any(e["kind"] == "down" for e in _error_items(d)))
    (err,) = [e for e in _error_items(page) if e["kind"] == "down"]
    assert "endpoint is down" in err["text"]
    assert "HTTP 502" in err["text"]
    assert f"the model server of {dashboard.version} does not answer" in err["text"]
    assert _numbers(page) == shown  # the last numbers stay, dimmed
    assert "stale" in (_by_id(page, "prediction-panel").get_attribute("class") or "")
    screenshot("dashboard-endpoint-down")
    # back up: Retry recovers
    dashboard.restore()
    _by_id(page, "retry").click()
    _wait(
        page,
        "recovery",
        lambda d: not _error_items(d) and _numbers(d)["incentive_cost"] != shown["incentive_cost"],
    )


def test_no_deployed_model_is_shown_clearly(browser: Any, dashboard: Any) -> None:
    dashboard.write_endpoint(None)
    try:
        browser.get(f"{dashboard.url}/")
        _wait(browser, "the error", lambda d: any(e["source"] == "options" for e in _error_items(d)))
        text = _by_id(browser, "errors").text
        assert "no model version is deployed" in text
        assert _by_id(browser, "model-version").text == "unknown"
    finally:
        dashboard.restore()


def test_page_uses_nothing_from_the_network(page: Any, dashboard: Any) -> None:
    """Every resource the page loaded came from its own origin."""
    urls: list[str] = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);"
    )
    assert urls
    assert all(u.startswith(dashboard.url) for u in urls), urls


def _curve_decisions(page: Any, dashboard: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's scenario and what autoroi.decisions finds in the model
    server's answers at the curve's amounts (the x of its points)."""
    from autoroi.decisions import amount_decisions

    s = page.execute_script(
        """return {region: document.getElementById('region').value,
                   vehicle_model: document.getElementById('vehicle-model').value,
                   week_start: document.getElementById('week').value,
                   incentive_type: document.getElementById('incentive-type').value};"""
    )
    amounts = [float(p.get_attribute("data-amount")) for p in _css(page, "#curve circle.roi-point")]
    instances = [{**s, "incentive_amount": a} for a in amounts]
    answers: list[dict[str, Any]] = []
    for i in range(0, len(instances), 10):  # the model server's --max-batch is 16
        r = httpx.post(
            f"{dashboard.model_url}/v1/models/roi:predict", json={"instances": instances[i : i + 10]}
        )
        assert r.status_code == 200, r.text
        answers += r.json()["predictions"]
    return s, amount_decisions(amounts, answers, 0.8)


def test_the_curve_marks_the_amounts_that_decide(page: Any, dashboard: Any) -> None:
    """Break-even, most profitable and 'safe' amounts on the what-if curve are
    those autoroi.decisions (autoroi predict --amounts) finds in the same answers,
    for every incentive type; at least one type pays back somewhere."""
    from selenium.webdriver.support.ui import Select

    types = [o.get_attribute("value") for o in _css(page, "#incentive-type option")]
    marked = 0
    for t in types:
        before = _by_id(page, "curve-caption").text
        if _by_id(page, "incentive-type").get_attribute("value") != t:
            Select(_by_id(page, "incentive-type")).select_by_value(t)
            _wait(page, f"the curve of {t}", lambda d, b=before: _by_id(d, "curve-caption").text != b)
        _wait(page, "the amount marks", lambda d: _by_id(d, "curve-decisions").text.endswith("."))
        _s, expected = _curve_decisions(page, dashboard)
        shown = _by_id(page, "curve-decisions")
        be, best, safe = expected["break_even"], expected["best_profit"], expected["safe"]
        assert shown.get_attribute("data-kind") == be["kind"], t
        if be["kind"] == "crossing":
            assert float(shown.get_attribute("data-break-even")) == pytest.approx(be["amount"], abs=0.01)
            [mark] = _css(page, "#curve circle.mark.break-even")
            assert float(mark.get_attribute("data-amount")) == pytest.approx(be["amount"], abs=0.01)
        assert shown.get_attribute("data-best") == ("" if best is None else f"{best['amount']:g}"), t
        assert shown.get_attribute("data-safe") == ("" if safe is None else f"{safe['amount']:g}"), t
        n = sum(x is not None for x in (best, safe, be["amount"]))
        assert len(_css(page, "#curve circle.mark")) == n, t
        assert ("most profitable" in shown.text) == (best is not None)
        marked += n
    assert marked > 0, "no incentive type pays back anywhere on this curve: the marks are untested"


def test_the_plan_view_spends_a_budget_and_offers_the_plan_as_csv(page: Any, dashboard: Any) -> None:
    """The Plan view asks the model server's planner (through the endpoint),
    shows totals within the budget, the allocation as a table and a region x
    segment map, and a CSV of every chosen scenario; a bad request names its field."""
    from selenium.webdriver.common.keys import Keys

    budget = _by_id(page, "plan-budget")
    budget.send_keys(Keys.CONTROL, "a")
    budget.send_keys("150000")
    _by_id(page, "plan-run").click()
    _wait(
        page, "the plan", lambda d: _by_id(d, "plan-status").get_attribute("data-state") == "done", timeout=90
    )
    totals = {
        dd.get_attribute("data-field"): dd.get_attribute("data-value") for dd in _css(page, "#plan-totals dd")
    }
    assert 0 < float(totals["incentive_cost"]) <= 150_000
    assert float(totals["incremental_profit"]) > 0
    rows = _css(page, "#plan-table tr.plan-row")
    csv = _by_id(page, "plan-csv")
    assert rows and csv.get_attribute("hidden") is None and csv.get_attribute("href").startswith("blob:")
    n = int(csv.get_attribute("data-rows"))
    assert len(rows) == min(n, 50)
    spent = sum(float(td.get_attribute("data-cost")) for td in _css(page, "#plan-map td.plan-cell"))
    assert spent == pytest.approx(float(totals["incentive_cost"]), rel=1e-6)
    # the same plan as the server gives the same request
    body = {
        "budget": 150000,
        "from": _by_id(page, "plan-from").get_attribute("value"),
        "to": _by_id(page, "plan-to").get_attribute("value"),
        "objective": "profit",
    }
    direct = httpx.post(f"{dashboard.url}/v2/models/roi/plan", json=body, timeout=90).json()
    assert direct["totals"]["scenarios"] == n
    assert direct["totals"]["incentive_cost"] == pytest.approx(float(totals["incentive_cost"]))
    # a bad request: the server's field and reason in the error list
    frm = _by_id(page, "plan-from")
    page.execute_script("arguments[0].value = '2026-03-03';", frm)
    _by_id(page, "plan-run").click()
    _wait(page, "the refusal", lambda d: any(e["source"] == "plan" for e in _error_items(d)))
    err = next(e for e in _error_items(page) if e["source"] == "plan")
    assert err["field"] == "from" and "Monday" in err["reason"]
