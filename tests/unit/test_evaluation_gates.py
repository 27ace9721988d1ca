import pytest

from autoroi.config import GateConfig
from autoroi.evaluation.gates import decide_gates

CFG = GateConfig(wape_max=0.4, production_tolerance=0.05, must_beat=["seasonal_naive"])
BASE = {"seasonal_naive": {"wape": 0.45}, "poisson_glm": {"wape": 0.31}}


def test_pass_records_every_check():
    d = decide_gates({"wape": 0.30}, BASE, {"wape": 0.30}, CFG)
    assert d.passed and d.reasons == []
    assert [c.name for c in d.checks] == [
        "wape_max",
        "beats_seasonal_naive",
        "vs_production",
        "moves_with_programs",
    ]
    assert all(c.passed for c in d.checks)
    assert d.to_dict()["passed"] is True and "Gates passed" in d.markdown()


def test_no_production_model_skips_that_check():
    d = decide_gates({"wape": 0.30}, BASE, None, CFG)
    assert d.passed and "vs_production" not in [c.name for c in d.checks]


@pytest.mark.parametrize(
    ("candidate", "production", "failed"),
    [
        (0.41, None, ["wape_max"]),  # above the absolute threshold
        (0.46, None, ["wape_max", "beats_seasonal_naive"]),  # worse than seasonal naive too
        (0.33, 0.30, ["vs_production"]),  # 0.33 > 0.30 x 1.05
        (float("nan"), None, ["wape_max", "beats_seasonal_naive"]),
    ],
)
def test_each_failure_has_its_reason(candidate, production, failed):
    prod = None if production is None else {"wape": production}
    d = decide_gates({"wape": candidate}, BASE, prod, CFG)
    assert not d.passed
    assert [r.split(":")[0] for r in d.reasons] == failed
    assert "FAIL" in d.markdown()


def test_within_tolerance_of_production_passes():
    assert decide_gates({"wape": 0.314}, BASE, {"wape": 0.30}, CFG).passed  # 0.314 <= 0.315


def test_equal_to_seasonal_naive_does_not_beat_it():
    cfg = GateConfig(wape_max=1.0, must_beat=["seasonal_naive"])
    d = decide_gates({"wape": 0.45}, BASE, None, cfg)
    assert d.reasons == ["beats_seasonal_naive: WAPE 0.4500 >= seasonal_naive 0.4500"]


def test_missing_baseline_metrics_fail():
    cfg = GateConfig(wape_max=1.0, must_beat=["seasonal_naive", "hist_gbm"])
    d = decide_gates({"wape": 0.2}, BASE, {"rows": 3}, cfg)
    assert [r.split(":")[0] for r in d.reasons] == ["beats_hist_gbm", "vs_production"]


@pytest.mark.parametrize(
    ("ratio", "naive", "passed"),
    [
        (0.85, 0.05, True),  # the predicted jumps are 85 % of the actual ones; the naive's 5 %
        (0.28, -0.61, True),  # noisy, but clearly moving with the programs where the naive does not
        (0.15, 0.05, False),  # hardly more than a model blind to incentives
        (0.15, None, False),  # no naive: against 0
        (float("nan"), 0.05, True),  # no program started or ended in the test weeks: not judged
        (0.77, 1.56, True),  # one start: the naive's 1.56 is chance, not judged (pairs below)
    ],
)
def test_the_candidate_must_move_with_the_programs(ratio, naive, passed):
    base = {**BASE, "seasonal_naive": {"wape": 0.45, **({} if naive is None else {"step_ratio": naive})}}
    pairs = 1 if naive == 1.56 else 40
    d = decide_gates({"wape": 0.30, "step_ratio": ratio, "step_pairs": pairs}, base, None, CFG)
    check = next(c for c in d.checks if c.name == "moves_with_programs")
    assert check.passed is passed and d.passed is passed
    if not passed:
        floor = 0.0 if naive is None else naive
        assert d.reasons == [
            "moves_with_programs: at 40 program starts and ends the predicted jump is 0.15 x the actual"
            f" <= seasonal naive {floor:.2f} + 0.2"
        ]
    unchecked = GateConfig(wape_max=0.4, step_margin=None)
    assert all(
        c.name != "moves_with_programs" for c in decide_gates({"wape": 0.3}, BASE, None, unchecked).checks
    )
