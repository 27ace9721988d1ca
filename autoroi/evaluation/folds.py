"""Rolling-origin (expanding-window) time folds.

Fold ``i`` trains on every week before ``test_start`` and tests on the
``test_weeks`` weeks from it. The folds' test blocks are consecutive and end at
the last week, so the latest data is always tested::

    weeks:  |--------- train ---------|-- test 1 --|
            |------------- train ------------------|-- test 2 --|
            |------------------- train ------------------------|-- test 3 --|
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model.features import WEEK, to_week


@dataclass(frozen=True)
class Fold:
    index: int
    test_start: pd.Timestamp  # first test week; training weeks are strictly before it
    test_end: pd.Timestamp  # last test week (inclusive)

    def train_mask(self, frame: pd.DataFrame) -> np.ndarray:
        return to_week(frame[WEEK]).to_numpy() < self.test_start.to_datetime64()

    def test_mask(self, frame: pd.DataFrame) -> np.ndarray:
        w = to_week(frame[WEEK]).to_numpy()
        return (w >= self.test_start.to_datetime64()) & (w <= self.test_end.to_datetime64())

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return frame[self.train_mask(frame)], frame[self.test_mask(frame)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test_start"] = self.test_start.date().isoformat()
        d["test_end"] = self.test_end.date().isoformat()
        return d


def rolling_origin_folds(
    weeks: Iterable[Any], n_folds: int = 3, test_weeks: int = 8, min_train_weeks: int = 52
) -> list[Fold]:
    """``n_folds`` folds over the distinct ``weeks``; raises ``ValueError`` when
    the history is too short to train on ``min_train_weeks`` before the first."""
    if n_folds < 1 or test_weeks < 1:
        raise ValueError("n_folds and test_weeks must be at least 1")
    uniq = sorted(set(to_week(pd.Series(list(weeks)))))
    need = min_train_weeks + n_folds * test_weeks
    if len(uniq) < need:
        raise ValueError(
            f"{len(uniq)} weeks of data; {n_folds} folds of {test_weeks} weeks after"
            f" {min_train_weeks} training weeks need {need}"
        )
    folds = []
    for i in range(n_folds):
        lo = len(uniq) - (n_folds - i) * test_weeks
        folds.append(Fold(i, pd.Timestamp(uniq[lo]), pd.Timestamp(uniq[lo + test_weeks - 1])))
    return folds


def holdout_split(frame: pd.DataFrame, weeks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last ``weeks`` distinct weeks as validation, the rest as training
    (tuning's split)."""
    w = to_week(frame[WEEK])
    uniq = sorted(w.unique())
    if weeks < 1 or len(uniq) <= weeks:
        raise ValueError(f"cannot hold out {weeks} of {len(uniq)} weeks")
    cut = uniq[-weeks]
    mask = (w < cut).to_numpy()
    return frame[mask], frame[~mask]
