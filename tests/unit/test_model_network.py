import keras
import numpy as np
import pytest

from autoroi.config import HYPERPARAMETER_NAMES, TrainingConfig
from autoroi.model import features as F
from autoroi.model.network import (
    DEFAULT_HYPERPARAMETERS,
    LOSS,
    ExpRate,
    IncentiveLift,
    build_network,
    hyperparameters,
    make_loss,
)
from tests.model_tables import simulated_master, trained_model


def test_loss_is_poisson_and_fits_the_mean():
    assert LOSS == "poisson"
    loss = make_loss()
    y = np.array([[0.0], [1.0], [5.0], [2.0], [7.0]], dtype=np.float32)
    grid = np.linspace(0.5, 6.0, 56)
    values = [float(loss(y, np.full_like(y, c))) for c in grid]
    assert grid[int(np.argmin(values))] == pytest.approx(y.mean(), abs=0.06)
    net = build_network({F.REGION: 3}, 2, 2, {"layers": 1, "units": 4})
    assert isinstance(net.loss, keras.losses.Poisson)


def test_hyperparameters_are_checked_and_match_the_config():
    assert set(DEFAULT_HYPERPARAMETERS) == set(HYPERPARAMETER_NAMES)
    assert set(TrainingConfig().search_space) <= set(HYPERPARAMETER_NAMES)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        hyperparameters({"depth_of_thought": 3})
    assert hyperparameters({"units": 32.0})["units"] == 32


def test_incentive_lift_is_multiplicative_non_negative_and_zero_without_incentive():
    model = trained_model()
    master, _ = simulated_master()
    feats = F.training_frame(master).head(200)
    treated = feats.copy()
    for t in F.INCENTIVE_TYPES:
        treated[F.TREAT[t]] = 0.0
        treated[F.DEPTH[t]] = 0.0
    treated[F.TREAT["apr_subsidy"]] = 1.0
    treated[F.DEPTH["apr_subsidy"]] = 0.05
    none = F.without_incentive(feats)
    zero_depth = treated.copy()
    zero_depth[F.DEPTH["apr_subsidy"]] = 0.0
    with_ = model.predict_features(treated)
    base = model.predict_features(none)
    assert (with_ >= base - 1e-9).all() and (with_ > base).any()
    np.testing.assert_allclose(model.predict_features(zero_depth), base, rtol=1e-6)
    deeper = treated.copy()
    deeper[F.DEPTH["apr_subsidy"]] = 0.10
    assert (model.predict_features(deeper) >= with_ - 1e-9).all()  # more depth, no less lift


def test_custom_layers_serialize():
    lift = IncentiveLift(6, 8, name="lift")
    again = IncentiveLift.from_config(lift.get_config())
    assert (again.n_types, again.hidden_units) == (6, 8)
    assert ExpRate.from_config(ExpRate(name="u").get_config()).name == "u"
