"""``autoroi monitor show`` on a lake with hand-written monitor records: through
click's runner, and once through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from autoroi.cli.monitor_cmds import monitor
from tests.monitor_records import MODEL, three_runs, write

REPO = Path(__file__).parents[2]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(monitor, ["show", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_history_as_a_table_oldest_first_within_100_columns(tmp_path: Path):
    lake = tmp_path / "lake"
    write(lake, *reversed(three_runs()))
    out = invoke("--lake", str(lake))
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100, out
    assert f"monitor history {lake}/monitoring/roi" in " ".join(out.split())
    rows = [line for line in lines if line.startswith(("1111", "2222", "3333")) and MODEL in line]
    assert [r[:4] for r in rows] == ["1111", "2222", "3333"], out
    first, _second, third = rows
    assert "2026-11-16" in first and " ok " in first and "0.20/0.19" in first and "1.09" in first
    assert "drift" in third.split() and "0.38/0.19" in third and "0.52" in third
    assert "dealer_count" in third and "incentive_amount" in out and "new vehicle_model" in out
    assert "dealer_count" not in first
    # the reasons, each under its master version
    reasons = lines[next(i for i, line in enumerate(lines) if line.strip() == "reasons") :]
    text = " ".join(" ".join(reasons).split())
    assert "3333333333333333 units WAPE 0.38 is 2.0x the backtest's 0.19 (limit 1.5x)" in text
    assert "dealer_count drifted: PSI 0.31 over 0.2" in text


def test_json_and_last(tmp_path: Path):
    lake = tmp_path / "lake"
    runs = three_runs()
    write(lake, *runs)
    docs = json.loads(invoke("--lake", str(lake), "--json"))
    assert docs == runs  # every key of every record, oldest first
    docs = json.loads(invoke("--lake", str(lake), "--json", "--last", "2"))
    assert [d["master_version"] for d in docs] == ["2222222222222222", "3333333333333333"]
    table = invoke("--lake", str(lake), "--last", "1")
    assert "3333333333333333" in table and "1111111111111111" not in table


def test_an_empty_history_says_how_a_monitor_runs(tmp_path: Path):
    lake = str(tmp_path / "lake")
    out = invoke("--lake", lake)
    assert out.startswith(f"no monitor has run yet in lake {lake}")
    assert "autoroi run ingest" in out and len(out.strip().splitlines()) == 1
    assert json.loads(invoke("--lake", lake, "--json")) == []


def test_a_corrupt_record_is_named_and_skipped_through_the_command_line(tmp_path: Path):
    lake = tmp_path / "lake"
    folder = write(lake, *three_runs())
    (folder / "4444444444444444.json").write_text('{"status": "ok", ')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOROI_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "autoroi.cli.main", "monitor", "show", "--lake", str(lake)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and str(folder / "4444444444444444.json") in warnings[0], done.stderr
    assert "3333333333333333" in done.stdout and "1 unreadable record(s) left out" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "autoroi.cli.main", "monitor", "show", "--lake", "ftp://nowhere/x"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("autoroi: error: unsupported lake URI scheme")
