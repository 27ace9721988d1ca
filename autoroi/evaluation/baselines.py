"""Baselines, fitted and used exactly like the candidate: fit on a fold's
training feature rows, predict units of feature rows; the ROI of a scenario is
computed from the prediction with and without its incentive (the same
counterfactual as the network's) by ``autoroi.model.roi.roi_frame``.

- ``seasonal_naive``: units of the same cell in the same week last year
  (``units_lag_52``), or the mean of the cell's last weeks when there is no last
  year. It does not see incentives, so its lift is zero: incremental units 0,
  incremental profit ``-cost`` and ROI exactly -1 for every paid incentive
  (every program loses what it costs). That is the "incentives do nothing"
  reference, not a straw man: most cash programs come close to it.
- ``poisson_glm``: ``sklearn.linear_model.PoissonRegressor`` (log link) on
  one-hot region, vehicle model and segment, the normalized numeric features,
  and per incentive type an on/off column and its depth (a log-linear lift
  per type).
- ``hist_gbm``: ``HistGradientBoostingRegressor(loss="poisson")`` on the same
  columns with native categorical splits; it may learn any interaction, lift
  included.

All three see the incentives as the network does (one on/off and one depth
column per type: a master row may have several types on, a scenario one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import PoissonRegressor
from threadpoolctl import threadpool_limits

from autoroi.model import features as F
from autoroi.model.preprocess import NUMERIC_INPUT, Preprocessor, input_name


class UnitsModel(Protocol):
    def predict_features(self, frame: pd.DataFrame) -> np.ndarray: ...


Trainer = Callable[[pd.DataFrame], UnitsModel]


class SeasonalNaive:
    name = "seasonal_naive"

    def __init__(self, spec: F.FeatureSpec = F.DEFAULT_SPEC):
        self.spec = spec
        self.fallback = f"units_mean_{max(spec.windows)}" if spec.windows else "units_lag_1"

    def fit(self, train: pd.DataFrame) -> SeasonalNaive:
        return self

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        fb = frame[self.fallback].to_numpy(np.float64)
        if "units_lag_52" not in frame.columns:
            return fb
        has = frame[F.HAS_LAG_52].to_numpy(np.float64) > 0
        return np.where(has, frame["units_lag_52"].to_numpy(np.float64), fb)


def _treatments(frame: pd.DataFrame, spec: F.FeatureSpec) -> np.ndarray:
    """Per incentive type: on/off and depth (x 10: depths are ~0.01-0.1)."""
    treat = frame[list(spec.treat_columns)].to_numpy(np.float64)
    depth = frame[list(spec.depth_columns)].to_numpy(np.float64) * 10.0
    return np.hstack([treat, depth])


class PoissonGlm:
    name = "poisson_glm"

    def __init__(self, spec: F.FeatureSpec = F.DEFAULT_SPEC, alpha: float = 1e-4):
        self.spec = spec
        self.alpha = alpha
        self.prep: Preprocessor | None = None
        self.model: PoissonRegressor | None = None

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.prep is not None
        x = self.prep.transform(frame)
        parts = []
        for c in self.spec.categorical:
            codes = x[input_name(c)].reshape(-1)
            size = self.prep.vocab_sizes[c]
            onehot = np.zeros((len(codes), size - 1))  # the OOV bucket is the reference
            known = codes > 0
            onehot[np.flatnonzero(known), codes[known] - 1] = 1.0
            parts.append(onehot)
        parts.append(x[NUMERIC_INPUT].astype(np.float64))
        parts.append(_treatments(frame, self.spec))
        return np.hstack(parts)

    def fit(self, train: pd.DataFrame) -> PoissonGlm:
        self.prep = Preprocessor.fit(train, self.spec)
        self.model = PoissonRegressor(alpha=self.alpha, max_iter=1000, solver="newton-cholesky")
        self.model.fit(self._design(train), train[F.UNITS].to_numpy(np.float64))
        return self

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return np.asarray(self.model.predict(self._design(frame)), dtype=np.float64)


class HistGbm:
    name = "hist_gbm"

    def __init__(
        self,
        spec: F.FeatureSpec = F.DEFAULT_SPEC,
        seed: int = 0,
        max_iter: int = 100,
        threads: int | None = 1,
    ):
        self.spec = spec
        self.seed = seed
        self.max_iter = max_iter
        # OpenMP threads of the boosting. One by default: on a small machine shared
        # with TensorFlow's threads, OpenMP's busy-waiting made 15 iterations on
        # 21k rows take 1.85 s with 2 threads and 0.06 s with 1 (2 cores, loaded)
        self.threads = threads
        self.prep: Preprocessor | None = None
        self.model: HistGradientBoostingRegressor | None = None

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.prep is not None
        cats = [self.prep.encode(c, frame[c]).astype(np.float64) for c in self.spec.categorical]
        nums = frame[list(self.spec.numeric)].to_numpy(np.float64)
        return np.column_stack([*cats, nums, _treatments(frame, self.spec)])

    def fit(self, train: pd.DataFrame) -> HistGbm:
        self.prep = Preprocessor.fit(train, self.spec)
        n_cat = len(self.spec.categorical)
        mask = np.zeros(self._design(train.head(1)).shape[1], dtype=bool)
        mask[:n_cat] = True
        self.model = HistGradientBoostingRegressor(
            loss="poisson",
            learning_rate=0.1,
            max_iter=self.max_iter,
            max_leaf_nodes=31,
            min_samples_leaf=20,
            l2_regularization=1.0,
            categorical_features=mask,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(limits=self.threads):
            self.model.fit(self._design(train), train[F.UNITS].to_numpy(np.float64))
        return self

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        with threadpool_limits(limits=self.threads):
            return np.asarray(self.model.predict(self._design(frame)), dtype=np.float64)


BASELINES = ("seasonal_naive", "poisson_glm", "hist_gbm")


def baseline_trainers(
    seed: int = 0, spec: F.FeatureSpec = F.DEFAULT_SPEC, gbm_iterations: int = 100
) -> dict[str, Trainer]:
    """name -> a function that fits the baseline on training feature rows."""
    return {
        "seasonal_naive": lambda train: SeasonalNaive(spec).fit(train),
        "poisson_glm": lambda train: PoissonGlm(spec).fit(train),
        "hist_gbm": lambda train: HistGbm(spec, seed=seed, max_iter=gbm_iterations).fit(train),
    }
