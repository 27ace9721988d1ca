"""The router's dashboard endpoints (``GET /options``, ``GET /report``, the
static files) without a browser or a model server: httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoroi.lake.storage import open_lake
from serving.router.app import build_app

STATIC_DIR = Path(__file__).resolve().parents[2] / "serving" / "dashboard"


class _Client:
    """A synchronous face over the router app (one event loop per call)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
                return await c.get(path)

        return asyncio.run(go())


def _client(state_dir: Path, endpoint: dict[str, Any] | None, lake: Path | None = None) -> _Client:
    if endpoint is not None:
        (state_dir / "endpoint.json").write_text(json.dumps(endpoint))
    return _Client(build_app(state_dir, STATIC_DIR, lake=open_lake(str(lake)) if lake else None))


@pytest.fixture
def registry(tmp_path: Path, roi_artifact: Path) -> Iterator[tuple[Path, str]]:
    """A lake whose registry has version ``v1`` (artifact and report)."""
    lake = tmp_path / "lake"
    folder = lake / "models" / "roi" / "v1"
    shutil.copytree(roi_artifact, folder / "model")
    (folder / "report.html").write_text("<h1>report v1</h1>")
    yield lake, "v1"


def test_options_come_from_the_served_artifact(tmp_path: Path, roi_artifact: Path) -> None:
    endpoint = {"version": "test-v1", "url": "http://127.0.0.1:9", "artifact": str(roi_artifact)}
    c = _client(tmp_path, endpoint)
    r = c.get("/options")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["version"] == "test-v1"
    assert doc["regions"] == ["Northeast", "Pacific"]
    assert doc["segments"] == ["compact", "ev", "suv", "truck"]
    segment = {m["name"]: m["segment"] for m in doc["vehicle_models"]}
    assert segment == {"Forge 1500": "truck", "Kestrel": "suv", "Pico": "compact", "Volta": "ev"}
    assert all(m["msrp"] > 0 for m in doc["vehicle_models"])
    assert len(doc["pairs"]) == 8
    assert "none" not in doc["incentive_types"] and "cash_rebate" in doc["incentive_types"]
    assert doc["weeks"]["first"] < doc["weeks"]["last"]


def test_options_and_report_from_the_registry(tmp_path: Path, registry: tuple[Path, str]) -> None:
    lake, version = registry
    state = tmp_path / "state"
    state.mkdir()
    c = _client(state, {"version": version, "url": "http://127.0.0.1:9"}, lake)
    options = c.get("/options")
    report = c.get("/report")
    assert options.status_code == 200 and options.json()["version"] == version
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "report v1" in report.text


def test_report_beside_a_registry_artifact_without_lake(tmp_path: Path, registry: tuple[Path, str]) -> None:
    lake, version = registry
    state = tmp_path / "state"
    state.mkdir()
    artifact = lake / "models" / "roi" / version / "model"
    c = _client(state, {"version": version, "url": "http://x", "artifact": str(artifact)})
    assert "report v1" in c.get("/report").text


def test_missing_model_report_and_artifact_are_clear(tmp_path: Path) -> None:
    c = _client(tmp_path, None)
    r = c.get("/options")
    assert r.status_code == 503
    assert "no model version is deployed" in r.json()["error"]
    assert c.get("/report").status_code == 404
    (tmp_path / "endpoint.json").write_text(
        json.dumps({"version": "v9", "url": "http://x", "artifact": str(tmp_path / "gone")})
    )
    r = c.get("/options")
    assert r.status_code == 503 and "v9" in r.json()["error"]
    r = c.get("/report")
    assert r.status_code == 404 and "without --lake" in r.text


def test_the_static_dashboard_is_served(tmp_path: Path) -> None:
    c = _client(tmp_path, None)
    page = c.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert c.get("/app.js").headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert c.get("/style.css").headers["content-type"].startswith("text/css")
