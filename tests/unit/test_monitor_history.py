"""Reading the monitor's history (``autoroi.monitoring.history``): order,
bookkeeping names, corrupt records, and the figures the CLI and dashboard show."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from autoroi.lake.storage import open_lake
from autoroi.monitoring.history import accuracy, drift_flags, read_history, summarize
from tests.monitor_records import record, three_runs, write


def test_records_come_oldest_first_by_created_at_not_by_name(tmp_path: Path):
    runs = three_runs()
    # names in the opposite order to the creation times: the sort must use created_at
    runs[0]["master_version"], runs[2]["master_version"] = "ffff", "0000"
    write(tmp_path, *reversed(runs))
    history = read_history(open_lake(str(tmp_path)))
    assert [r["created_at"][:10] for r in history.records] == ["2026-11-16", "2026-11-23", "2026-11-30"]
    assert [r["master_version"] for r in history.records] == ["ffff", "2222222222222222", "0000"]
    assert history.skipped == []
    last = read_history(open_lake(str(tmp_path)), last=2).records
    assert [r["master_version"] for r in last] == ["2222222222222222", "0000"]


def test_bookkeeping_names_and_other_files_are_ignored(tmp_path: Path):
    folder = write(tmp_path, record("aaaa", "2026-11-16T10:00:00Z"))
    (folder / "_index.json").write_text(json.dumps(record("bbbb", "2026-11-17T10:00:00Z")))
    (folder / ".cccc.json.w1-abc123.tmp").write_text("{half")
    (folder / ".dddd.json").write_text("{}")
    (folder / "notes.txt").write_text("not a record")
    (folder / "sub.json").mkdir()
    history = read_history(open_lake(str(tmp_path)))
    assert [r["master_version"] for r in history.records] == ["aaaa"]
    assert history.skipped == []


def test_a_corrupt_record_is_named_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    folder = write(tmp_path, *three_runs())
    (folder / "broken.json").write_text('{"master_version": "broken", "status": ')
    (folder / "list.json").write_text("[1, 2]")
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level(logging.WARNING, logger="autoroi.monitoring.history"):
        history = read_history(open_lake(str(tmp_path)))
    assert len(history.records) == 3
    skipped = {Path(s.path).name: s.reason for s in history.skipped}
    assert set(skipped) == {"broken.json", "list.json", "binary.json"}
    assert skipped["list.json"].startswith("a JSON list")
    assert skipped["broken.json"].startswith("not readable as JSON")
    for name in skipped:
        assert any(str(folder / name) in m for m in caplog.messages), name


def test_no_history_folder_is_an_empty_history(tmp_path: Path):
    history = read_history(open_lake(str(tmp_path / "lake")))
    assert history.records == [] and history.skipped == []
    assert summarize([])["status"] is None and summarize([])["runs"] == 0


def test_a_record_without_optional_keys_still_reads(tmp_path: Path):
    folder = tmp_path / "monitoring" / "roi"
    folder.mkdir(parents=True)
    (folder / "eeee.json").write_text(json.dumps({"status": "no_data", "accuracy": {"wape": "n/a"}}))
    (r,) = read_history(open_lake(str(tmp_path))).records
    assert r["master_version"] == "eeee"  # from the file name
    assert accuracy(r) == {"wape": None, "reference_wape": None, "ratio": None, "lift_ratio": None}
    flags = drift_flags(r)
    assert flags["features"] == [] and flags["unknown_categories"] == {}
    s = summarize([r])
    assert s["status"] == "no_data" and s["reasons"] == [] and s["statuses"]["no_data"] == 1


def test_summary_of_the_latest_record():
    runs = three_runs()
    s = summarize(runs)
    assert s["runs"] == 3 and s["status"] == "drift" and s["master_version"] == "3333333333333333"
    assert s["statuses"] == {"ok": 2, "degraded": 0, "drift": 1, "no_data": 0}
    assert s["wape"] == 0.38 and s["reference_wape"] == 0.19 and s["lift_ratio"] == 0.52
    assert math.isclose(s["ratio"], 2.0)
    assert [(f["feature"], f["value"]) for f in s["drift"]["features"]] == [
        ("dealer_count", 0.31),
        ("incentive_amount", 0.27),
    ]
    assert s["drift"]["unknown_categories"] == {"vehicle_model": ["Voltara EX"]}
    assert s["drift"]["threshold"] == 0.2 and s["drift"]["statistic"] == "psi"
    assert s["reasons"][0].startswith("units WAPE 0.38")


def test_drift_flags_from_the_drifted_list_alone_and_nan_figures():
    r = record("aaaa", "2026-11-16T10:00:00Z", wape=float("nan"))
    r["drift"] = {"drifted": ["region_share"], "unknown_categories": {"region": []}}
    r["accuracy"]["ratio"] = float("inf")
    flags = drift_flags(r)
    assert flags["features"] == [{"feature": "region_share", "value": None}]
    assert flags["unknown_categories"] == {}  # an empty list is no flag
    acc = accuracy(r)
    assert acc["wape"] is None and acc["ratio"] is None and acc["reference_wape"] == 0.19
