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
    decay_steps_for,
    hyperparameters,
    make_loss,
    make_optimizer,
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


def test_learning_rate_decays_to_zero_over_the_training():
    assert decay_steps_for(rows=1000, batch_size=128, epochs=3) == 3 * 8
    opt = make_optimizer(0.01, 24)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(12)) == pytest.approx(0.005, rel=1e-3)  # half way: half the rate
    assert float(schedule(24)) == pytest.approx(0.0, abs=1e-9)
    assert float(make_optimizer(0.01).learning_rate) == pytest.approx(0.01)  # no steps: constant


def test_base_is_wide_and_deep():
    net = build_network({F.REGION: 3}, 5, 2, {"layers": 1, "units": 4}, init_log_rate=1.5, decay_steps=10)
    wide = net.get_layer("base_wide")
    assert wide.kernel.shape == (8 + 5, 1) and not wide.use_bias  # embeddings and numerics, linearly
    assert np.allclose(wide.kernel.numpy(), 0.0)  # starts as the deep part alone
    assert float(net.get_layer("base_deep").bias.numpy()[0]) == pytest.approx(1.5)


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
