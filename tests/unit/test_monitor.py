"""The monitor's statistics on frames with a known shift, and its decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoroi.config import MonitoringConfig
from autoroi.evaluation.metrics import lift_calibration
from autoroi.model import features as F
from autoroi.monitoring.monitor import DEGRADED, DRIFT, NO_DATA, OK, judge, psi
from autoroi.monitoring.run import train_decision
from tests.model_tables import simulated_master, trained_model

CFG = MonitoringConfig(min_group_units=20.0)


@pytest.fixture(scope="module")
def world():
    master, _ = simulated_master()
    weeks = sorted(pd.to_datetime(master[F.WEEK]).unique())
    reference = master[pd.to_datetime(master[F.WEEK]) < weeks[-9]]
    model = trained_model()
    plain = judge(model, master, reference, reference_wape=1.0, cfg=CFG)
    return master, reference, model, plain["accuracy"]["wape"]


def _shifted(master: pd.DataFrame, factor: float, region: str = "Northeast") -> pd.DataFrame:
    """``region``'s units times ``factor`` in the last four judged weeks."""
    m = master.copy()
    weeks = sorted(pd.to_datetime(m[F.WEEK]).unique())
    hit = (m[F.REGION] == region) & pd.to_datetime(m[F.WEEK]).isin(weeks[-5:-1])
    m.loc[hit, F.UNITS] = np.round(m.loc[hit, F.UNITS] * factor)
    return m


def test_the_weeks_the_model_has_not_seen_are_judged_and_pass(world):
    master, reference, model, wape = world
    rec = judge(model, master, reference, reference_wape=wape, cfg=CFG)
    acc = rec["accuracy"]
    assert rec["status"] == OK, rec["reasons"]
    assert acc["weeks"] == 8  # after the reference's weeks, less the newest (it may still fill)
    assert acc["rows"] == 8 * 8 and len(acc["by_week"]) == 8
    assert acc["ratio"] == pytest.approx(1.0)
    assert {f["feature"] for f in rec["drift"]["features"]} == {"units", "dealer_count"}


def test_a_region_whose_demand_fell_is_named(world):
    master, reference, model, wape = world
    rec = judge(model, _shifted(master, 0.1), reference, reference_wape=wape, cfg=CFG)
    assert rec["status"] == DEGRADED
    flagged = [g for g in rec["accuracy"]["by_group"] if g["flagged"]]
    assert flagged and all(g.get("region") in ("Northeast", "Pacific") for g in flagged)
    assert any(g.get("region") == "Northeast" and g["ratio"] < 0.8 for g in flagged)
    assert any("Northeast" in r for r in rec["reasons"])


def test_worse_accuracy_than_the_backtest_is_degraded(world):
    master, reference, model, wape = world
    rec = judge(model, master, reference, reference_wape=wape / 2, cfg=CFG)
    assert rec["status"] == DEGRADED
    assert any("WAPE" in r for r in rec["reasons"])


def test_a_vehicle_model_it_never_saw_is_drift(world):
    master, reference, model, wape = world
    newest = master[pd.to_datetime(master[F.WEEK]) >= sorted(pd.to_datetime(master[F.WEEK]).unique())[-3]]
    extra = newest[newest[F.VEHICLE_MODEL] == "Volta"].assign(**{F.VEHICLE_MODEL: "Voltara EX"})
    rec = judge(model, pd.concat([master, extra]), reference, reference_wape=wape, cfg=CFG)
    assert rec["status"] == DRIFT
    assert rec["drift"]["unknown_categories"] == {"vehicle_model": ["Voltara EX"]}
    assert rec["accuracy"]["rows"] == 8 * 8  # the unknown rows are reported, not scored


def test_nothing_new_is_no_data(world):
    master, _, model, wape = world
    rec = judge(model, master, master, reference_wape=wape, cfg=CFG)
    assert rec["status"] == NO_DATA and rec["accuracy"]["rows"] == 0


def test_psi_reads_a_shift():
    rng = np.random.default_rng(0)
    a = rng.gamma(4, 3, 5000)
    assert psi(a, rng.gamma(4, 3, 5000)) < 0.02
    assert psi(a, a * 1.6) > 0.25


def test_lift_calibration_ignores_the_level_and_reads_the_lift():
    base = np.full(200, 10.0)
    treated = np.arange(200) < 100
    lift = np.where(treated, 2.0, 0.0)
    predicted = base + lift
    actual = 1.3 * (base + 2 * lift)  # level 30 % higher, true lift twice the predicted
    c = lift_calibration(actual, predicted, base, treated)
    assert c["level"] == pytest.approx(1.3)
    assert c["lift_ratio"] == pytest.approx(2.0)
    same = lift_calibration(1.3 * predicted, predicted, base, treated)
    assert same["lift_ratio"] == pytest.approx(1.0)


def test_train_decision():
    kw = {"master_version": "m1"}
    assert train_decision(changed=True, train_on_change=True, on_degraded=True, status=OK, **kw) == (
        True,
        "new master version m1",
    )
    train, why = train_decision(changed=False, train_on_change=False, on_degraded=True, status=DEGRADED, **kw)
    assert train and "degraded" in why
    assert not train_decision(changed=False, train_on_change=True, on_degraded=False, status=DEGRADED, **kw)[
        0
    ]
    assert not train_decision(changed=True, train_on_change=False, on_degraded=True, status=DRIFT, **kw)[0]
