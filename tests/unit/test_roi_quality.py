"""A small-scale check of the number autoroi exists for: on a generated
source, the served ROI of the programs that ran must not be biased beyond a
loose bound. The bench (bench/model_quality.py) holds the real targets on
unused seeds; this only catches a model that calls paying programs losses
again (the bias of issue 12: -0.24 on the demo's source, -0.54 on another)."""

import numpy as np
import pytest

from autoroi.evaluation.truth import by_type, score_truth
from autoroi.model.train import train_model
from tests.model_tables import simulated_master

BIAS_BOUND = 0.25  # three training seeds gave -0.05, -0.10, -0.20; the model before issue 12: -0.41
SEED = 5  # a source no other test trains on


@pytest.fixture(scope="module")
def scored():
    master, truth = simulated_master(seed=SEED)
    model = train_model(master, {"batch_size": 64}, epochs=30, seed=1)
    return score_truth(model.predict, truth, weeks=156)  # every week: a small world has few rows


def test_served_roi_is_not_biased_beyond_a_loose_bound(scored):
    m = scored.metrics
    assert m["rows"] > 300 and m["rows_refused"] == 0
    assert abs(m["roi_bias"]) <= BIAS_BOUND, (m, by_type(scored).to_dict())
    # and it ranks: paying rows above losing ones
    assert m["roi_auc"] > 0.8, m


def test_program_roi_sums_its_rows(scored):
    p = scored.programs
    rows = scored.rows
    one = p.iloc[0]
    mine = rows[rows["program_id"] == one["program_id"]]
    assert one["pred_roi"] == pytest.approx(mine["pred_profit"].sum() / mine["pred_incentive_cost"].sum())
    assert one["true_roi"] == pytest.approx(
        (mine["incremental_profit"] - mine["incentive_cost"]).sum() / mine["incentive_cost"].sum()
    )
    assert np.isfinite(scored.metrics["program_roi_mae"])
