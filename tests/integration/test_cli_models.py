"""``autoroi models list`` and ``autoroi models show`` on a registry in tmp_path:
through click's runner, and once through the real command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoroi.cli.models_cmd import models
from autoroi.lake.storage import open_lake
from autoroi.registry import register_model, set_status
from tests.unit.test_registry import make_artifact, metadata

REPO = Path(__file__).parents[2]
T0 = dt.datetime(2026, 3, 2, 9, 30, 15, tzinfo=dt.UTC)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, list[str]]:
    uri = str(tmp_path / "lake")
    lake = open_lake(uri)
    good = register_model(
        lake, make_artifact(tmp_path / "a", "a"), metadata(), {}, "<html></html>", "pending_approval", now=T0
    )
    bad_meta = metadata(False)
    bad_meta["metrics"]["wape"] = 0.55
    bad = register_model(
        lake,
        make_artifact(tmp_path / "b", "b"),
        bad_meta,
        {},
        "<html></html>",
        "rejected_by_gate",
        now=T0 + dt.timedelta(hours=2),
    )
    set_status(lake, good.version, "approved", "ana", "report reviewed [ok]")
    return uri, [good.version, bad.version]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(models, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_models_list(registry: tuple[str, list[str]]):
    uri, (good, bad) = registry
    out = invoke("list", "--lake", uri)
    for text in (
        "version",
        "status",
        "master version",
        "WAPE",
        "ROI MAE",
        "gate",
        good,
        bad,
        "0123456789abcdef",
    ):
        assert text in out, text
    lines = out.splitlines()
    good_line = next(line for line in lines if good in line)
    bad_line = next(line for line in lines if bad in line)
    assert "approved" in good_line and "pass" in good_line and "0.31" in good_line
    assert "rejected_by_gate" in bad_line and "FAIL" in bad_line and "0.55" in bad_line
    assert lines.index(good_line) < lines.index(bad_line)  # oldest first
    assert "2026-03-02 09:30:15Z" in good_line


def test_models_list_json_and_empty(registry: tuple[str, list[str]], tmp_path: Path):
    uri, versions = registry
    docs = json.loads(invoke("list", "--lake", uri, "--json"))
    assert [d["version"] for d in docs] == versions
    assert docs[0]["status"] == "approved" and docs[0]["location"].endswith(versions[0])
    assert invoke("list", "--lake", str(tmp_path / "empty")).strip().startswith("no model versions in lake")


def test_models_show(registry: tuple[str, list[str]], tmp_path: Path):
    uri, (good, bad) = registry
    out = invoke("show", bad, "--lake", uri)
    report = str(tmp_path / "lake" / "models" / "roi" / bad / "report.html")
    assert out.rstrip().endswith(f"report: {report}")
    for text in (
        "rejected_by_gate",
        "FAIL",
        "beats_seasonal_naive",
        "gate failure:",
        "digest",
        "units=64",
        "0.55",
    ):
        assert text in out, text
    shown = invoke("show", good, "--lake", uri)
    assert "report reviewed [ok]" in shown  # rich markup in data is shown, not interpreted
    assert "pending_approval" in shown and "approved" in shown and "ana" in shown
    doc = json.loads(invoke("show", good, "--lake", uri, "--json"))
    assert doc["version"] == good and doc["report_location"].endswith(f"{good}/report.html")
    assert [h["status"] for h in doc["status_history"]] == ["pending_approval", "approved"]


def test_models_through_the_command_line(registry: tuple[str, list[str]]):
    uri, (good, _bad) = registry
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOROI_")}
    env["PYTHONPATH"] = str(REPO)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "autoroi.cli.main", "models", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = run("show", good, "--lake", uri)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert good in ok.stdout and "report:" in ok.stdout
    missing = run("show", "v20990101-000000-deadbeef", "--lake", uri)
    assert missing.returncode != 0
    errors = [line for line in missing.stderr.splitlines() if line.startswith("autoroi: error:")]
    assert errors == [f"autoroi: error: model version v20990101-000000-deadbeef does not exist in lake {uri}"]
    assert "Traceback" not in missing.stderr
