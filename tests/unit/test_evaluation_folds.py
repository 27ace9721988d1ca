import datetime as dt

import numpy as np
import pandas as pd
import pytest

from autoroi.evaluation.folds import holdout_split, rolling_origin_folds
from autoroi.evaluation.metrics import auc, balanced_accuracy, roi_metrics, units_metrics
from autoroi.model import features as F

WEEKS = [dt.date(2024, 1, 1) + dt.timedelta(weeks=i) for i in range(80)]


def frame() -> pd.DataFrame:
    return pd.DataFrame({F.WEEK: WEEKS * 2, F.REGION: ["a"] * 80 + ["b"] * 80, F.UNITS: range(160)})


def test_rolling_origin_folds_never_leak():
    folds = rolling_origin_folds(WEEKS, n_folds=3, test_weeks=6, min_train_weeks=52)
    assert len(folds) == 3
    f = frame()
    tested = []
    for fold in folds:
        train, test = fold.split(f)
        assert pd.to_datetime(train[F.WEEK]).max() < pd.to_datetime(test[F.WEEK]).min()
        assert test[F.WEEK].nunique() == 6 and len(train) + len(test) <= len(f)
        tested += sorted(set(test[F.WEEK]))
    assert tested == WEEKS[-18:]  # consecutive blocks ending with the last week
    assert folds[0].train_mask(f).sum() == 2 * 62  # expanding window
    assert folds[2].to_dict()["test_end"] == WEEKS[-1].isoformat()


def test_too_short_a_history_is_refused():
    with pytest.raises(ValueError, match="need 70"):
        rolling_origin_folds(WEEKS[:60], n_folds=3, test_weeks=6, min_train_weeks=52)


def test_holdout_split():
    train, val = holdout_split(frame(), 8)
    assert (
        val[F.WEEK].nunique() == 8 and pd.to_datetime(train[F.WEEK]).max() < pd.to_datetime(val[F.WEEK]).min()
    )


def test_metrics():
    m = units_metrics([10, 0, 10], [12, 1, 7])
    assert m["wape"] == pytest.approx(6 / 20) and m["mae"] == pytest.approx(2.0)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 1 + 9) / 3))
    r = roi_metrics([-0.5, 0.2, 1.0, np.nan], [-0.4, -0.1, 2.0, 3.0])
    assert r["roi_cells"] == 3 and r["roi_spearman"] == pytest.approx(1.0)
    assert r["roi_mae"] == pytest.approx((0.1 + 0.3 + 1.0) / 3)
    assert r["roi_sign_agreement"] == pytest.approx(2 / 3)
    assert r["roi_bias"] == pytest.approx((0.1 - 0.3 + 1.0) / 3)
    # pays back: true [F, T, T], predicted [F, F, T] -> hit rates 1/2 and 1/1
    assert r["roi_balanced_accuracy"] == pytest.approx(0.75)
    assert r["roi_auc"] == pytest.approx(1.0)  # both paying cells rank above the losing one


def test_pays_back_metrics_score_a_constant_answer_as_chance():
    """Where most cells lose, "never pays back" agrees in sign on 90 % of them;
    balanced accuracy and AUC see through it."""
    true = np.r_[np.full(90, -0.5), np.full(10, 0.4)]
    never = np.full(100, -0.2)
    r = roi_metrics(true, never)
    assert r["roi_sign_agreement"] == pytest.approx(0.9)
    assert r["roi_balanced_accuracy"] == pytest.approx(0.5)
    assert r["roi_auc"] == pytest.approx(0.5)  # all tied
    reversed_ = roi_metrics(true, -true)
    assert reversed_["roi_auc"] == pytest.approx(0.0) and reversed_["roi_balanced_accuracy"] == 0.0
    one_kind = roi_metrics([0.1, 0.2], [0.3, -0.1])
    assert np.isnan(one_kind["roi_balanced_accuracy"]) and np.isnan(one_kind["roi_auc"])
    assert np.isnan(roi_metrics([], [])["roi_auc"]) and roi_metrics([], [])["roi_cells"] == 0


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    actual = rng.random(60) < 0.3
    score = np.round(rng.normal(size=60) + actual, 1)  # with ties
    pos, neg = score[actual], score[~actual]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(actual, score) == pytest.approx(pairs)
    assert balanced_accuracy(actual, score > 0.5) == pytest.approx(
        ((score[actual] > 0.5).mean() + (score[~actual] <= 0.5).mean()) / 2
    )
    assert np.isnan(roi_metrics([0.1, 0.2], [-1.0, -1.0])["roi_spearman"])  # constant: no ranking
