"""``autoroi programs``: the tests' trained model registered in a lake whose
curated zone holds the simulated programs; every program that ran is summed
over its cells and weeks, with an interval, beside the truth when the config
names it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autoroi.cli.programs_cmd import programs
from autoroi.lake.storage import open_lake
from autoroi.lake.tables import TableStore
from autoroi.model import features as F
from autoroi.model.artifact import save_model
from autoroi.model.programs import PROGRAM_TABLES, program_roi, program_scenarios
from autoroi.registry import register_model
from autoroi.source.simulator import simulate
from tests.model_tables import MODELS, REGIONS, simulated_master, trained_model
from tests.unit.test_registry import metadata

SEED = 11  # simulated_master's default: the world the tests' model was trained on


@pytest.fixture(scope="module")
def lake_with_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    root = tmp_path_factory.mktemp("programs")
    uri = str(root / "lake")
    lake = open_lake(uri)
    data = simulate(SEED, sales_rows=300_000)
    for name in PROGRAM_TABLES:
        w = TableStore(lake, "curated", name).begin()
        w.write_table(data.tables[name])
        w.commit(data.tables[name].schema)
    artifact = save_model(root / "artifact", trained_model())
    mv = register_model(lake, artifact, metadata(), {}, "<html></html>", "pending_approval")
    truth = root / "truth.parquet"
    data.truth.to_pandas().to_parquet(truth)
    return uri, mv.version, truth


def test_programs_json_sums_every_program_over_its_cells_and_weeks(lake_with_model, tmp_path: Path):
    uri, version, truth = lake_with_model
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"training:\n  truth_path: {truth}\n")
    result = CliRunner().invoke(
        programs, ["--lake", uri, "--config", str(cfg), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["model_version"] == version
    progs = pd.DataFrame(doc["programs"])
    assert len(progs) > 10 and progs["program_id"].is_unique
    assert (progs["cell_weeks"] >= progs["cells"]).all() and (progs["incentive_cost"] > 0).all()
    both = progs.dropna(subset=["roi_lower"])
    assert (both["roi_lower"] < both["roi"]).all() and (both["roi"] < both["roi_upper"]).all()
    np.testing.assert_allclose(progs["roi"], progs["incremental_profit"] / progs["incentive_cost"])
    # beside the truth, and the estimate is the truth's order of magnitude: a loose check of
    # direction only (the bench scores quality); programs outside the model's cells are absent
    assert "true_roi" in progs.columns and progs["true_roi"].notna().all()
    assert np.corrcoef(progs["roi"], progs["true_roi"])[0, 1] > 0.5
    # one program, by hand: the rows of its cells and weeks through the model
    model = trained_model()
    master, _ = simulated_master()
    first, last = model.metadata["weeks"]
    tables = {k: v for k, v in simulate(SEED, sales_rows=300_000).tables.items() if k in PROGRAM_TABLES}
    scen = program_scenarios(tables, first, last)
    scen = scen[scen[F.REGION].isin(REGIONS) & scen[F.VEHICLE_MODEL].isin(MODELS)]
    one = progs.iloc[0]
    rows = scen[scen["program_id"] == one["program_id"]]
    served = model.predict(rows[list(F.SCENARIO_FIELDS)])
    assert served["incentive_cost"].sum() == pytest.approx(one["incentive_cost"], rel=1e-9)
    assert served["incremental_units"].sum() == pytest.approx(one["incremental_units"], rel=1e-9)
    assert len(master) > 0


def test_programs_table_and_refusals(lake_with_model, tmp_path: Path):
    uri, version, _ = lake_with_model
    result = CliRunner().invoke(programs, ["--lake", uri], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"programs as model {version}" in result.output and "90% interval" in result.output
    assert "true ROI" not in result.output  # no truth configured
    assert "left out" in result.output  # the simulated world has regions the model never saw
    empty = CliRunner().invoke(programs, ["--lake", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "no model version is registered" in str(empty.exception or empty.output)


def test_a_program_out_of_the_models_cells_is_left_out_and_counted():
    model = trained_model()
    first, last = model.metadata["weeks"]
    tables = {k: v for k, v in simulate(SEED, sales_rows=300_000).tables.items() if k in PROGRAM_TABLES}
    scen = program_scenarios(tables, first, last)
    out, skipped = program_roi(model, scen)
    served = scen[F.REGION].isin(REGIONS) & scen[F.VEHICLE_MODEL].isin(MODELS)
    assert skipped == int((~served).sum()) > 0
    assert set(out["program_id"]) <= set(scen["program_id"])
