"""``autoroi predict``: CSV and JSON scenarios to a started model server, the
ROI table out; a refusal ends with the server's field and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoroi.cli.main import main as cli_main

HEADER = "region,vehicle_model,week_start,incentive_type,incentive_amount\n"


def test_predict_csv_prints_the_roi_table(roi_server, tmp_path: Path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "Northeast,Pico,2025-06-02,cash_rebate,1500\nPacific,Volta,2025-06-09,none,0\n")
    assert cli_main(["predict", "--url", roi_server.url, "--input", str(path)]) is None
    out = capsys.readouterr().out
    assert "ROI predictions" in out and "Northeast/Pico" in out and "Pacific/Volta" in out
    assert "1,500" in out  # the amount, read from CSV text as a number
    header = next(line for line in out.splitlines() if "90% interval" in line)
    assert header.split()[:3] == ["ROI", "90%", "interval"]  # the ROI and its interval first
    row = next(line for line in out.splitlines() if "Northeast/Pico" in line)
    lo, hi = (float(x) for x in row.split()[1].split(".."))
    assert lo < float(row.split()[0]) < hi
    assert row.split()[2].endswith("%")  # P(ROI > 0)


def test_the_roi_table_fits_100_columns_and_names_the_coarser_cell():
    from rich.console import Console

    from autoroi.cli.render import roi_table
    from autoroi.source.simulator import MODELS, REGIONS

    longest = dict(
        roi=-1.6234,
        roi_lower=-12.91,
        roi_upper=-10.31,
        prob_pays_back=1.0,
        region=max((r[0] for r in REGIONS), key=len),
        vehicle_model=max((m[0] for m in MODELS), key=len),
        context_region="Central",
        context_vehicle_model="truck",
        week_start="2026-11-23",
        incentive_type="lease_subsidy",
        incentive_amount=25_000.0,
        incentive_cost=12_345_678.9,
    )
    console = Console(width=100, record=True)
    console.print(roi_table([longest, {**longest, "roi": None, "roi_lower": None}], "t"))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "…" not in text  # nothing cut
    assert "-12.91..-10.31" in text and "*" in text and "<- Central/truck" in text


def test_predict_json_raw_answer_matches_the_server(roi_server, tmp_path: Path, capsys):
    scenario = {
        "region": "Northeast",
        "vehicle_model": "Pico",
        "week_start": "2025-06-02",
        "incentive_type": "cash_rebate",
        "incentive_amount": 900,
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"instances": [scenario]}))
    assert cli_main(["predict", "--url", roi_server.url, "--input", str(path), "--json"]) is None
    body = json.loads(capsys.readouterr().out)
    [p] = body["predictions"]
    assert p["incentive_cost"] > 0 and p["predicted_units"] >= p["baseline_units"]


def test_predict_names_the_bad_field_and_an_unreachable_server(roi_server, tmp_path: Path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "Northeast,Pico,2025-06-02,cash_rebate,-5\n")
    with pytest.raises(SystemExit):
        cli_main(["predict", "--url", roi_server.url, "--input", str(path)])
    err = capsys.readouterr().err
    assert "answered 400" in err and "instances[0].incentive_amount" in err
    with pytest.raises(SystemExit):
        cli_main(["predict", "--url", "http://127.0.0.1:9", "--input", str(path)])
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(SystemExit):
        cli_main(["predict", "--url", roi_server.url, "--input", str(junk)])
    assert "not valid JSON" in capsys.readouterr().err


def test_predict_amounts_searches_each_scenario(roi_server, tmp_path: Path, capsys):
    """--amounts asks the server for the scenario at every amount of the grid
    (in halves when the server's --max-batch refuses the whole curve) and
    reports the amounts the served answers give."""
    from autoroi.decisions import amount_decisions

    path = tmp_path / "s.csv"
    path.write_text(HEADER + "Northeast,Pico,2025-06-02,cash_rebate,1500\n")
    argv = ["predict", "--url", roi_server.url, "--input", str(path)]
    assert cli_main([*argv, "--amounts", "250:5000:250", "--json"]) is None
    doc = json.loads(capsys.readouterr().out)
    [d] = doc["decisions"]
    assert d["points"] == 20 and d["min_prob_pays_back"] == 0.8
    assert d["break_even"]["kind"] in {"crossing", "none", "above_grid"}
    # the same decisions from the server's own answers at those amounts
    import httpx

    grid = [250.0 * i for i in range(1, 21)]
    curve = []
    for a in grid:
        inst = {**d["scenario"], "incentive_amount": a}
        curve += httpx.post(f"{roi_server.url}/v1/models/roi:predict", json={"instances": [inst]}).json()[
            "predictions"
        ]
    expected = amount_decisions(grid, curve, 0.8)
    assert {k: d[k] for k in expected} == json.loads(json.dumps(expected))
    # the table: one row per scenario, in 100 columns
    assert cli_main([*argv, "--amounts"]) is None
    out = capsys.readouterr().out
    assert "break-even" in out and "safe $/unit" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    with pytest.raises(SystemExit):
        cli_main([*argv, "--amounts", "1000"])
    assert "at least two amounts" in capsys.readouterr().err
