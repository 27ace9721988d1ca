import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoroi.model import features as F
from autoroi.model.artifact import (
    ARTIFACT_FILES,
    PREPROCESSING_FILE,
    artifact_digest,
    load_model,
    save_model,
)
from autoroi.model.roi import roi_frame
from tests.model_tables import simulated_master, trained_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tmp_path_factory.mktemp("art") / "roi-v1", trained_model())


def test_layout(saved: Path):
    assert sorted(p.name for p in saved.iterdir()) == sorted(ARTIFACT_FILES)
    doc = json.loads((saved / PREPROCESSING_FILE).read_text())
    pre = doc["preprocessor"]
    assert pre["numeric_order"] == list(F.DEFAULT_SPEC.numeric)
    assert pre["oov_index"] == 0 and pre["vocabularies"][F.REGION] == ["Northeast", "Pacific"]
    assert len(pre["means"]) == len(pre["stds"]) == len(pre["numeric_order"])
    assert doc["version"] == "test-v1" and set(doc["take_rates"]) <= set(F.INCENTIVE_TYPES)
    assert not list(saved.parent.glob(".*tmp*"))  # no temporary folder left behind


def test_parity_training_path_and_loaded_artifact(saved: Path):
    model = trained_model()
    loaded = load_model(saved)
    master, _ = simulated_master()
    frame = F.training_frame(master)  # the training path: master rows -> features -> network
    np.testing.assert_allclose(
        loaded.predict_features(frame), model.predict_features(frame), rtol=1e-6, atol=1e-9
    )
    # served scenarios, features looked up in the artifact's own context table
    single = frame[frame[list(F.TREAT.values())].sum(axis=1) <= 1]
    scenarios = single[list(F.SCENARIO_FIELDS)].copy()
    scenarios[F.WEEK] = scenarios[F.WEEK].dt.strftime("%Y-%m-%d")  # as JSON carries it
    np.testing.assert_allclose(
        loaded.predict_units(scenarios), model.predict_features(single), rtol=1e-6, atol=1e-9
    )


def test_predict_returns_the_roi_of_each_scenario(saved: Path):
    loaded = load_model(saved)
    scenarios = [
        {
            "region": "Pacific",
            "vehicle_model": "Volta",
            "week_start": "2026-03-02",
            "incentive_type": "lease_subsidy",
            "incentive_amount": 2000,
        },
        {
            "region": "Pacific",
            "vehicle_model": "Volta",
            "week_start": "2026-03-02",
            "incentive_type": "none",
            "incentive_amount": 0,
        },
        {
            "region": "Northeast",
            "vehicle_model": "Pico",
            "week_start": "2030-01-07",
            "incentive_type": "cash_rebate",
            "incentive_amount": 1500.0,
        },
    ]
    out = loaded.predict(scenarios)
    for c in (
        "predicted_units",
        "baseline_units",
        "incremental_units",
        "incentive_cost",
        "incremental_profit",
        "roi",
    ):
        assert c in out.columns
    assert (out["model_version"] == "test-v1").all()
    assert out["week_start"].tolist() == ["2026-03-02", "2026-03-02", "2030-01-07"]
    assert np.isfinite(out["predicted_units"]).all() and (out["predicted_units"] > 0).all()
    # no incentive: baseline = prediction, no cost, no ROI
    assert out.loc[1, "predicted_units"] == pytest.approx(out.loc[1, "baseline_units"])
    assert np.isnan(out.loc[1, "roi"])
    assert out.loc[0, "baseline_units"] == pytest.approx(out.loc[1, "baseline_units"], rel=1e-6)
    # the one ROI function: the units sold under the incentive are the incremental ones plus the
    # uptake share of the regular buyers (those of no incentive at all, less what richer programs
    # beside it took first)
    assert loaded.uptake and set(loaded.uptake) <= set(F.INCENTIVE_TYPES)
    feats = F.scenario_features(F.check_scenarios(scenarios), loaded.context, loaded.spec)
    _, _, bare = F.scenario_units(loaded.predict_features, feats)
    again = roi_frame(
        out["predicted_units"],
        out["baseline_units"],
        out["incentive_amount"],
        feats[F.UNIT_MARGIN],
        F.take_rate_of(out["incentive_type"], loaded.take_rates),
        F.uptake_of(out["incentive_type"], loaded.uptake),
        bare * F.crowding(feats, loaded.uptake),
    )
    np.testing.assert_allclose(again["roi"], out["roi"], equal_nan=True)


def test_bad_scenarios_are_refused_by_name(saved: Path):
    loaded = load_model(saved)
    good = {
        "region": "Pacific",
        "vehicle_model": "Volta",
        "week_start": "2026-03-02",
        "incentive_type": "loyalty",
        "incentive_amount": 500,
    }
    with pytest.raises(F.ScenarioError) as e:
        loaded.predict([{**good, "region": "Atlantis"}])
    assert e.value.field == "region"
    with pytest.raises(F.ScenarioError) as e:
        loaded.predict([{**good, "incentive_amount": -1}])
    assert e.value.field == "incentive_amount"
    loaded.metadata["incentive_types_seen"] = ["cash_rebate"]
    with pytest.raises(F.ScenarioError, match="no training data"):
        loaded.predict([good])


def test_save_is_explicit_about_existing_folders(saved: Path, tmp_path: Path):
    model = trained_model()
    with pytest.raises(FileExistsError):
        save_model(saved, model)
    target = save_model(tmp_path / "m", model)
    before = artifact_digest(target)
    assert before == artifact_digest(target)
    (target / PREPROCESSING_FILE).write_text((target / PREPROCESSING_FILE).read_text() + " ")
    assert artifact_digest(target) != before
    save_model(target, model, overwrite=True)
    assert load_model(target).version == "test-v1"
    with pytest.raises(FileNotFoundError, match="not a model artifact"):
        load_model(tmp_path)


def test_context_round_trips_exactly(saved: Path):
    loaded = load_model(saved)
    ctx = trained_model().context
    pd.testing.assert_frame_equal(
        loaded.context.reset_index(drop=True), ctx.reset_index(drop=True), check_dtype=False
    )
