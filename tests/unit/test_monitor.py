"""The monitor's statistics on frames with a known shift, and its decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoroi.config import MonitoringConfig
from autoroi.evaluation.metrics import lift_calibration
from autoroi.model import features as F
from autoroi.monitoring.monitor import DEGRADED, DRIFT, NO_DATA, OK, group_changes, judge, psi
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


def _rows(shift: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Judged rows of 8 regions x 10 models x 6 weeks, the units drawn around
    what a model predicted; region R7's last two weeks times ``shift``."""
    rng = np.random.default_rng(seed)
    regions, weeks = (
        [f"R{i}" for i in range(8)],
        [f"2027-01-{d:02d}" for d in (4, 11, 18, 25)]
        + [
            "2027-02-01",
            "2027-02-08",
        ],
    )
    idx = pd.MultiIndex.from_product([regions, range(10), weeks], names=[F.REGION, "m", F.WEEK])
    r = idx.to_frame(index=False)
    r[F.SEGMENT] = np.where(r["m"] < 5, "suv", "sedan")
    r["predicted"] = rng.gamma(8, 40 / 8, len(r))
    r[F.UNITS] = rng.poisson(r["predicted"] * rng.gamma(20, 1 / 20, len(r))).astype(float)
    hit = (r[F.REGION] == "R7") & r[F.WEEK].isin(weeks[-2:])
    r.loc[hit, F.UNITS] = np.round(r.loc[hit, F.UNITS] * shift)
    r["treated"] = False
    return r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_region_whose_demand_just_fell_is_named_and_no_other(seed):
    quiet = [
        *group_changes(_rows(1.0, seed), F.REGION, CFG, 1),
        *group_changes(_rows(1.0, seed), F.REGION, CFG, 2),
    ]
    assert not [g for g in quiet if g["flagged"]]
    changes = group_changes(_rows(0.5, seed), F.REGION, CFG, 2)
    flagged = [g for g in changes if g["flagged"]]
    assert [g[F.REGION] for g in flagged] == ["R7"]
    assert flagged[0]["ratio"] == pytest.approx(0.5, abs=0.1) and flagged[0]["prior_weeks"] == 4
    # the same drop over every week is the model's lasting error, not a change
    lasting = _rows(1.0, seed)
    lasting.loc[lasting[F.REGION] == "R7", F.UNITS] *= 0.5
    assert not [g for span in (1, 2) for g in group_changes(lasting, F.REGION, CFG, span) if g["flagged"]]


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
