"""``autoroi plan``: the tests' trained model registered in a lake, a budget
spent over a few weeks; the budget holds, one incentive per cell-week at
most, every serving field in the written plan, the totals are the plan's
sums, the confidence filter holds, the endpoint path agrees with the local
one, and bad arguments are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autoroi.cli.plan_cmd import plan
from autoroi.lake.storage import open_lake
from autoroi.model.artifact import save_model
from autoroi.registry import register_model
from tests.model_tables import trained_model
from tests.serving.conftest import roi_artifact, roi_server
from tests.unit.test_registry import metadata

__all__ = ["roi_artifact", "roi_server"]  # the model server of the endpoint test

WEEKS = ["--from", "2026-03-02", "--to", "2026-03-23"]


@pytest.fixture(scope="module")
def lake_with_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("plan")
    uri = str(root / "lake")
    artifact = save_model(root / "artifact", trained_model())
    mv = register_model(open_lake(uri), artifact, metadata(), {}, "<html></html>", "pending_approval")
    return uri, mv.version


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(plan, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_a_plan_spends_within_the_budget_one_incentive_per_cell_week(lake_with_model, tmp_path: Path):
    uri, version = lake_with_model
    out = tmp_path / "plan.csv"
    code, text = run("--lake", uri, "--budget", "150000", *WEEKS, "--output", str(out), "--json")
    assert code == 0, text
    totals = json.loads(text)
    chosen = pd.read_csv(out)
    assert totals["model_version"] == version and totals["weeks"] == 4
    assert 0 < totals["incentive_cost"] <= 150_000
    assert len(chosen) == totals["scenarios"] > 0
    assert not chosen.duplicated(["region", "vehicle_model", "week_start"]).any()
    for field in ("roi", "roi_lower", "roi_upper", "prob_pays_back", "predicted_units", "baseline_units",
                  "incremental_units", "incentive_cost", "incremental_profit", "incentive_type",
                  "incentive_amount"):  # fmt: skip
        assert field in chosen.columns, field
    assert chosen["incentive_cost"].sum() == pytest.approx(totals["incentive_cost"])
    assert chosen["incremental_profit"].sum() == pytest.approx(totals["incremental_profit"])
    assert (chosen["incremental_profit"] > 0).all()
    assert totals["roi_lower"] < totals["roi"] < totals["roi_upper"]
    # a larger budget never earns less
    code, text = run("--lake", uri, "--budget", "600000", *WEEKS, "--json")
    assert json.loads(text)["incremental_profit"] >= totals["incremental_profit"] - 1e-6


def test_the_confidence_filter_and_the_roi_objective(lake_with_model, tmp_path: Path):
    uri, _ = lake_with_model
    out = tmp_path / "sure.parquet"
    code, text = run(
        "--lake", uri, "--budget", "500000", *WEEKS, "--min-prob-pays-back", "0.8", "--output", str(out)
    )
    assert code == 0, text
    assert "portfolio ROI" in text
    sure = pd.read_parquet(out)
    assert (sure["prob_pays_back"] >= 0.8).all()
    code, text = run("--lake", uri, "--budget", "50000", *WEEKS, "--objective", "roi", "--json")
    by_roi = json.loads(text)
    code, text = run("--lake", uri, "--budget", "50000", *WEEKS, "--json")
    by_profit = json.loads(text)
    assert by_roi["incentive_cost"] <= 50_000 and by_roi["roi"] >= by_profit["roi"] - 1e-9


def test_the_endpoint_path_chooses_the_same_plan(lake_with_model, roi_server, tmp_path: Path):
    """Through a running server (the same artifact) the plan is the same; only
    the portfolio interval needs the members, which an endpoint does not give."""
    uri, _ = lake_with_model
    args = ["--budget", "150000", *WEEKS, "--regions", "Northeast", "--json"]
    local = json.loads(run("--lake", uri, *args)[1])
    served = json.loads(run("--url", roi_server.url, *args)[1])
    for k in ("scenarios", "incentive_cost", "incremental_profit", "incremental_units"):
        assert served[k] == pytest.approx(local[k], rel=1e-4), k
    assert served["roi_lower"] is None


def test_bad_arguments_are_refused_by_name(lake_with_model):
    uri, _ = lake_with_model
    for args, message in (
        (["--from", "2026-03-03", "--to", "2026-03-23"], "--from: 2026-03-03 is not a Monday"),
        (["--from", "2026-03-23", "--to", "2026-03-02"], "--to: 2026-03-02 is before from"),
        ([*WEEKS, "--regions", "Atlantis"], "--regions: unknown Atlantis"),
        ([*WEEKS, "--amounts", "900"], "at least two amounts"),
        ([*WEEKS, "--output", "plan.xlsx"], ".csv or .parquet"),
    ):
        result = CliRunner().invoke(plan, ["--lake", uri, "--budget", "1000", *args])
        assert result.exit_code != 0
        assert message in (result.output + str(result.exception)), (args, result.output)


def test_a_written_plan_is_scored_by_the_truth(lake_with_model, tmp_path: Path):
    """``autoroi truth score`` on the plan the model's world came from (the
    tests' model: seed 11, 300,000 sales): one truth row per planned row, the
    truth's column names and values, not the plan's predictions."""
    from autoroi.cli.source_cmds import truth
    from autoroi.source.truth import TRUTH_FIELDS, score_scenarios, truth_world

    uri, _ = lake_with_model
    planned = tmp_path / "plan.csv"
    code, text = run("--lake", uri, "--budget", "150000", *WEEKS, "--output", str(planned))
    assert code == 0, text
    runner = CliRunner()
    for suffix in (".parquet", ".csv"):
        out = tmp_path / f"true{suffix}"
        args = [
            "score",
            "--seed",
            "11",
            "--sales-rows",
            "300000",
            "--scenarios",
            str(planned),
            "--output",
            str(out),
        ]
        result = runner.invoke(truth, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        got = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
        plan_rows = pd.read_csv(planned)
        assert list(got.columns) == list(TRUTH_FIELDS) and len(got) == len(plan_rows) > 0
        want = score_scenarios(truth_world(11, sales_rows=300_000), plan_rows)
        np.testing.assert_allclose(got["roi"], want["roi"])
        assert not np.allclose(got["roi"], plan_rows["roi"])  # the truth, not the prediction echoed
        assert f"{len(got):,} scenarios" in result.output
    bad = runner.invoke(truth, ["score", "--seed", "11", "--scenarios", str(planned), "--output", "x.txt"])
    assert bad.exit_code != 0 and "--output x.txt: .csv or .parquet" in str(bad.exception or bad.output)
    missing = runner.invoke(truth, ["score", "--seed", "11", "--scenarios", "nope.csv", "--output", "y.csv"])
    assert missing.exit_code != 0 and "--scenarios nope.csv: no such file" in str(
        missing.exception or missing.output
    )
    assert not Path("y.csv").exists()
