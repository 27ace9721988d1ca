"""The router's ``GET /health`` (the dashboard's model-health panel) without a
browser or a model server: httpx's ASGI transport over a lake in tmp_path."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoroi.lake.storage import open_lake
from autoroi.registry import register_model, set_status
from serving.router.app import build_app
from tests.monitor_records import record, three_runs, write
from tests.unit.test_registry import make_artifact, metadata


def _get(state_dir: Path, lake: Path | None, path: str = "/health") -> httpx.Response:
    app = build_app(state_dir, None, lake=open_lake(str(lake)) if lake else None)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            return await c.get(path)

    return asyncio.run(go())


def _endpoint(state_dir: Path, doc: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "endpoint.json").write_text(json.dumps(doc))


@pytest.fixture
def deployed(tmp_path: Path) -> tuple[Path, str, dt.datetime]:
    """A lake whose registry deployed a version three days ago."""
    lake = tmp_path / "lake"
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    mv = register_model(
        open_lake(str(lake)),
        make_artifact(tmp_path / "a", "a"),
        metadata(),
        {},
        "<html></html>",
        "pending_approval",
        now=when - dt.timedelta(hours=1),
    )
    set_status(open_lake(str(lake)), mv.version, "approved", "ana", now=when - dt.timedelta(minutes=30))
    set_status(open_lake(str(lake)), mv.version, "deployed", "deploy pipeline", now=when)
    return lake, mv.version, when


def test_health_reports_the_deployed_version_history_and_summary(
    tmp_path: Path, deployed: tuple[Path, str, dt.datetime]
):
    lake, version, when = deployed
    state = tmp_path / "state"
    _endpoint(state, {"version": version, "url": "http://127.0.0.1:9", "promoted_at": "2020-01-01T00:00:00Z"})
    runs = three_runs()
    folder = write(lake, *runs)
    (folder / "broken.json").write_text("{")
    (folder / "_bookkeeping.json").write_text("{")
    r = _get(state, lake)
    assert r.status_code == 200, r.text
    doc = r.json()
    dep = doc["deployed"]
    # the registry's deployment time, not the endpoint's promoted_at
    assert dep["version"] == version and dep["source"] == "registry"
    assert abs(dt.datetime.fromisoformat(dep["deployed_at"]) - when) < dt.timedelta(milliseconds=1)
    assert dep["age_days"] == pytest.approx(3.0, abs=0.01)
    assert [h["master_version"] for h in doc["history"]] == [r["master_version"] for r in runs]
    assert doc["history"][-1] == runs[-1]
    assert doc["runs"] == 3
    assert [Path(s["path"]).name for s in doc["skipped"]] == ["broken.json"]
    s = doc["summary"]
    assert s["status"] == "drift" and s["wape"] == 0.38 and s["reference_wape"] == 0.19
    assert [f["feature"] for f in s["drift"]["features"]] == ["dealer_count", "incentive_amount"]
    assert s["drift"]["unknown_categories"] == {"vehicle_model": ["Voltara EX"]}
    assert len(s["reasons"]) == 2
    assert "message" not in doc


def test_health_keeps_the_newest_twenty_and_makes_nan_json_safe(
    tmp_path: Path, deployed: tuple[Path, str, dt.datetime]
):
    lake, version, _when = deployed
    runs = [record(f"{i:016x}", f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}T10:00:00Z") for i in range(23)]
    runs[-1]["accuracy"]["wape"] = float("nan")
    write(lake, *runs)
    doc = _get(tmp_path / "state", lake).json()  # no endpoint.json: the registry's production version
    assert doc["deployed"]["version"] == version and doc["deployed"]["source"] == "registry"
    assert doc["runs"] == 23 and len(doc["history"]) == 20
    assert [h["master_version"] for h in doc["history"]] == [r["master_version"] for r in runs[3:]]
    assert doc["history"][-1]["accuracy"]["wape"] is None and doc["summary"]["wape"] is None


def test_health_without_a_monitor_or_a_deployment_says_so(tmp_path: Path):
    lake = tmp_path / "lake"
    lake.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    doc = _get(state, lake).json()
    assert doc["deployed"] is None and doc["history"] == [] and doc["summary"]["status"] is None
    assert doc["message"].startswith("no model version is deployed")
    promoted = (dt.datetime.now(dt.UTC) - dt.timedelta(days=12, hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _endpoint(state, {"version": "v-local", "url": "http://127.0.0.1:9", "promoted_at": promoted})
    doc = _get(state, lake).json()
    assert doc["deployed"]["version"] == "v-local" and doc["deployed"]["source"] == "endpoint"
    assert doc["deployed"]["age_days"] == pytest.approx(12.5, abs=0.01)
    assert doc["message"].startswith("no monitor has run yet")


def test_health_without_a_lake_still_answers(tmp_path: Path):
    _endpoint(tmp_path, {"version": "v-local", "url": "http://127.0.0.1:9"})
    r = _get(tmp_path, None)
    assert r.status_code == 200
    doc = r.json()
    expected = {"version": "v-local", "deployed_at": None, "age_days": None, "source": "endpoint"}
    assert doc["deployed"] == expected
    assert doc["history"] == [] and "without --lake" in doc["message"]
