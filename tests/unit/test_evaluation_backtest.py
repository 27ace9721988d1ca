import numpy as np
import pandas as pd
import pytest

from autoroi.config import GateConfig, TrainingConfig
from autoroi.evaluation.backtest import evaluate_roi, summary_table
from autoroi.evaluation.baselines import BASELINES, HistGbm, PoissonGlm, SeasonalNaive
from autoroi.evaluation.gates import decide_gates
from autoroi.evaluation.validate import validate_model
from autoroi.model import features as F
from tests.model_tables import TINY_HP, simulated_master, trained_model


@pytest.fixture(scope="module")
def data():
    master, truth = simulated_master()
    return master, truth, F.training_frame(master)


def test_baselines_give_finite_positive_predictions_and_use_incentives(data):
    _, _, frame = data
    train, test = frame.iloc[:-200], frame.iloc[-200:]
    for model in (SeasonalNaive(), PoissonGlm(), HistGbm(max_iter=30)):
        pred = model.fit(train).predict_features(test)
        assert pred.shape == (200,) and np.isfinite(pred).all() and (pred >= 0).all(), model.name
    naive = SeasonalNaive()
    np.testing.assert_array_equal(
        naive.predict_features(test), naive.predict_features(F.without_incentive(test))
    )
    glm = PoissonGlm().fit(train)
    assert not np.allclose(
        glm.predict_features(test.assign(**{F.TREAT["cash_rebate"]: 1.0, F.DEPTH["cash_rebate"]: 0.05})),
        glm.predict_features(F.without_incentive(test)),
    )


def test_seasonal_naive_is_last_year(data):
    _, _, frame = data
    row = frame[frame[F.HAS_LAG_52] > 0].iloc[[0]]
    assert SeasonalNaive().predict_features(row)[0] == row["units_lag_52"].iloc[0]


def test_evaluate_roi_against_the_truth(data):
    master, truth, _ = data
    model = trained_model()
    ev = evaluate_roi(model.predict_features, master, truth, take_rates=model.take_rates)
    assert ev.metrics["roi_cells"] == len(truth)  # every truth row has its cell in this master
    assert -1 <= ev.metrics["roi_spearman"] <= 1 and ev.metrics["roi_mae"] > 0
    assert {"true_roi", "roi", "predicted_units", "baseline_units"} <= set(ev.rows.columns)
    naive = evaluate_roi(SeasonalNaive().predict_features, master, truth)
    np.testing.assert_allclose(naive.rows["roi"], -1.0)  # zero lift: every program loses its cost


def test_validate_model_backtests_everything_and_records_the_gate_failure(data):
    master, truth, _ = data
    cfg = TrainingConfig(
        folds=3, fold_weeks=4, min_train_weeks=52, seed=1, gbm_iterations=15, gates=GateConfig(wape_max=0.01)
    )
    v = validate_model(master, TINY_HP, 2, cfg, truth=truth, production=trained_model())
    res = v.backtest
    assert set(res.metrics) == {"candidate", *BASELINES, "production"}
    for name, m in res.metrics.items():
        assert 0 < m["wape"] < 1.5 and m["mae"] > 0 and m["rmse"] >= m["mae"], name
        assert m["roi_cells"] > 0 and np.isfinite(m["roi_mae"]), name
    assert len(res.fold_metrics) == 3 * 5
    assert 0 < res.oracle["wape"] < res.metrics["seasonal_naive"]["wape_truth_cells"]
    test_weeks = pd.to_datetime(res.predictions[F.WEEK])
    assert test_weeks.min() == res.folds[0].test_start and test_weeks.max() == res.folds[-1].test_end
    assert (pd.to_datetime(res.roi[F.WEEK]) >= res.folds[0].test_start).all()
    table = summary_table(res)
    assert "oracle" in table.index and "roi_spearman" in table.columns
    d = v.to_dict()
    assert d["metrics"]["seasonal_naive"]["roi_spearman"] is None  # NaN -> null in JSON
    # the gate failure path: an impossible WAPE threshold rejects, with its reason
    assert not v.decision.passed and v.decision.reasons[0].startswith("wape_max: WAPE")
    assert d["gates"]["passed"] is False and "vs_production" in [c["name"] for c in d["gates"]["checks"]]
    # the same metrics pass lenient gates
    lenient = GateConfig(wape_max=2.0, production_tolerance=10.0, must_beat=[])
    assert decide_gates(res.metrics["candidate"], res.metrics, res.metrics["production"], lenient).passed


def test_program_steps_need_no_truth():
    from autoroi.evaluation.metrics import program_steps

    # one cell: weeks 0-1 without, 2-3 with a program, 4 without; sales jump by 10 at the start
    # and drop by 12 at the end; a model predicting half of each jump scores 0.5
    weeks = pd.date_range("2026-01-05", periods=5, freq="7D")
    frame = pd.DataFrame(
        {
            "region": "North",
            "vehicle_model": "Pico",
            "week_start": weeks,
            "incentive_type": ["none", "none", "cash_rebate", "cash_rebate", "none"],
            "units": [10.0, 10.0, 20.0, 21.0, 9.0],
            "half": [10.0, 10.0, 15.0, 15.0, 9.0],
            "blind": [10.0, 10.0, 10.0, 10.0, 10.0],
        }
    )
    half = program_steps(frame, "half")
    assert half["step_pairs"] == 2 and half["step_ratio"] == pytest.approx((5 + 6) / (10 + 12))
    assert program_steps(frame, "blind")["step_ratio"] == 0.0
    assert np.isnan(program_steps(frame.assign(incentive_type="none"), "half")["step_ratio"])
