import math

import numpy as np
import pandas as pd
import pytest

from autoroi.model.roi import ROI_COLUMNS, roi_frame, roi_records
from tests.model_tables import simulated_master


def test_hand_computed_numbers():
    # 12 units with, 10 without, $500 per unit, $3,000 margin: 2 x 3000 - 500 x 12 = 0
    # 15 with, 10 without, $1,000, $2,500 margin, half the units take it:
    #   cost 1000 x 15 x 0.5 = 7500; profit 5 x 2500 - 7500 = 5000; roi 5000 / 7500
    out = roi_frame([12, 15], [10, 10], [500, 1000], [3000, 2500], [1.0, 0.5])
    assert list(out.columns) == list(ROI_COLUMNS)
    np.testing.assert_allclose(out["incremental_units"], [2, 5])
    np.testing.assert_allclose(out["incentive_cost"], [6000, 7500])
    np.testing.assert_allclose(out["incremental_profit"], [0, 5000])
    np.testing.assert_allclose(out["roi"], [0.0, 5000 / 7500])


def test_loss_making_incentive_and_scalar_broadcast():
    out = roi_frame([10.5, 20.0], 10.0, 2000.0, 1500.0)  # scalars broadcast
    # 0.5 x 1500 - 2000 x 10.5 = -20250 over 21000
    assert out["roi"].iloc[0] == pytest.approx(-20250 / 21000)
    assert out["roi"].iloc[1] == pytest.approx((10 * 1500 - 40000) / 40000)


def test_zero_cost_has_no_roi():
    out = roi_frame([10, 0], [10, 0], [0, 500], [2000, 2000])
    assert out["incentive_cost"].tolist() == [0.0, 0.0]
    assert out["roi"].isna().all()
    recs = roi_records(out)
    assert recs[0]["roi"] is None and recs[0]["predicted_units"] == 10.0


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="same length"):
        roi_frame([1, 2], [1, 2, 3], 100, 100)


def test_reproduces_the_simulator_truth():
    """With the truth's own quantities (baseline net of pull-forward, take rate =
    units under the program / units with it) the formula is the truth's ROI."""
    _, truth = simulated_master()
    t = truth
    out = roi_frame(
        t["units_with"],
        t["units_without"] + t["pull_forward_units"],
        t["incentive_amount"],
        t["unit_margin"],
        t["units_under_incentive"] / t["units_with"],
    )
    np.testing.assert_allclose(out["incremental_units"], t["incremental_units"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["incentive_cost"], t["incentive_cost"], rtol=1e-9)
    # the truth's incremental_profit is before the cost; ours after it
    np.testing.assert_allclose(
        out["incremental_profit"], t["incremental_profit"] - t["incentive_cost"], rtol=1e-9, atol=1e-6
    )
    np.testing.assert_allclose(out["roi"], t["roi"], rtol=1e-9, atol=1e-9)
    assert (out["roi"] < 0).any() and (out["roi"] > 0).any()
    assert not math.isnan(float(pd.Series(out["roi"]).mean()))


def test_cost_with_uptake_charges_the_incremental_buyers_and_a_share_of_the_regular_ones():
    # 15 with, 10 without (the programs beside still on), 8 without any incentive,
    # half of those left to it by a richer program beside: regular 4
    # under it: 5 incremental + 0.25 x 4 = 6; cost 1000 x 6; profit 5 x 2500 - 6000
    out = roi_frame([15], [10], [1000], [2500], 1.0, [0.25], [4.0])
    np.testing.assert_allclose(out["incentive_cost"], [6000])
    np.testing.assert_allclose(out["roi"], [(12500 - 6000) / 6000])
    # without regular units given, the baseline's buyers are the regular ones
    np.testing.assert_allclose(roi_frame([15], [10], [1000], [2500], 1.0, [0.25])["incentive_cost"], [7500])
    # a negative lift brings no buyer in; zero predicted units cost nothing
    out = roi_frame([9, 0], [10, 0], [1000, 1000], [2500, 2500], 1.0, [0.5, 0.5])
    np.testing.assert_allclose(out["incentive_cost"], [5000, 0])
    assert np.isnan(out["roi"].iloc[1])
    with pytest.raises(ValueError, match="same length"):
        roi_frame([1, 2], [1, 2], 100, 100, 1.0, [0.5, 0.5, 0.5])
