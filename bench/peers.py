"""Two well-known external estimators of incentive effects, on the same
master table and scored through the same served path as autoroi's model
(issue 12, item 6): the scenario features of the artifact (its context table,
the programs that ran beside, the cell that answers) and the one ROI formula
(``autoroi.model.roi.score_features``, with each peer's own uptakes). Only the
units model differs.

- **LightGBM S-learner**: one gradient-boosted Poisson regression of weekly
  units on every feature the network sees, the incentive's type and depth
  among them; the effect is the difference of its predictions with and
  without the incentive.
- **Double ML** (EconML ``LinearDML``): the partially linear model
  ``units = theta(X) . depth + g(X, W)``, with LightGBM nuisances cross-fitted
  (``cv=3``) and the effect of each type's depth linear in a few cell
  attributes ``X`` (segment, MSRP, margin, the cell's recent level); ``g`` is
  recovered from the nuisances as ``E[units | X, W] - theta(X) . E[depth | X, W]``.
  Linear in depth by construction: it cannot see diminishing returns.

Needs the ``bench`` dependency group (``make bench-quality``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.roi import score_features

SEED = 7


def _codes(frame: pd.DataFrame, vocab: dict[str, list[str]]) -> pd.DataFrame:
    out = {}
    for c, values in vocab.items():
        index = {v: i for i, v in enumerate(values)}
        out[c] = frame[c].astype(str).map(index).fillna(-1).astype(np.int32).to_numpy()
    return pd.DataFrame(out, index=frame.index)


def _net_names(frame: pd.DataFrame) -> pd.DataFrame:
    """The answering cell's names, as the network sees them (preprocess.ANSWERING)."""
    out = frame.copy()
    for c, src in ((F.REGION, F.CONTEXT_REGION), (F.VEHICLE_MODEL, F.CONTEXT_MODEL)):
        if src in out.columns:
            out[c] = out[src]
    return out


class LightGbmSLearner:
    name = "lightgbm_s_learner"

    def fit(self, frame: pd.DataFrame, spec: F.FeatureSpec) -> LightGbmSLearner:
        from lightgbm import LGBMRegressor

        self.spec = spec
        self.vocab = {c: sorted(frame[c].astype(str).unique()) for c in spec.categorical}
        self.model = LGBMRegressor(
            objective="poisson",
            n_estimators=500,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=SEED,
            verbose=-1,
            n_jobs=2,
        )
        self.model.fit(
            self._x(frame), frame[F.UNITS].to_numpy(np.float64), categorical_feature=list(self.vocab)
        )
        return self

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        f = _net_names(frame)
        cols = [*self.spec.numeric, *self.spec.treat_columns, *self.spec.depth_columns]
        x = f[cols].astype(np.float64).reset_index(drop=True)
        return pd.concat([x, _codes(f, self.vocab).reset_index(drop=True)], axis=1)

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        return np.maximum(self.model.predict(self._x(frame)), 0.0)


class DoubleMl:
    name = "econml_linear_dml"

    def fit(self, frame: pd.DataFrame, spec: F.FeatureSpec) -> DoubleMl:
        from econml.dml import LinearDML
        from lightgbm import LGBMRegressor
        from sklearn.multioutput import MultiOutputRegressor

        self.spec = spec
        self.vocab = {c: sorted(frame[c].astype(str).unique()) for c in spec.categorical}
        self.segments = sorted(frame[F.SEGMENT].astype(str).unique())

        def gbm() -> Any:
            return LGBMRegressor(
                n_estimators=300, learning_rate=0.05, num_leaves=31, random_state=SEED, verbose=-1, n_jobs=2
            )

        self.est = LinearDML(model_y=gbm(), model_t=MultiOutputRegressor(gbm()), cv=3, random_state=SEED)
        x, w, t = self._parts(frame)
        self.est.fit(frame[F.UNITS].to_numpy(np.float64), t, X=x, W=w)
        return self

    def _parts(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = _net_names(frame)
        seg = f[F.SEGMENT].astype(str).to_numpy()
        x = np.column_stack(
            [
                *(seg == s for s in self.segments[1:]),
                np.log(f[F.MSRP].to_numpy(np.float64)),
                np.log(f[F.UNIT_MARGIN].to_numpy(np.float64)),
                np.log1p(f["units_mean_13"].to_numpy(np.float64)),
            ]
        ).astype(np.float64)
        w = pd.concat(
            [
                f[list(self.spec.numeric)].astype(np.float64).reset_index(drop=True),
                _codes(f, self.vocab).reset_index(drop=True),
            ],
            axis=1,
        ).to_numpy(np.float64)
        t = f[list(self.spec.depth_columns)].to_numpy(np.float64)
        return x, w, t

    def predict_features(self, frame: pd.DataFrame) -> np.ndarray:
        x, w, t = self._parts(frame)
        xw = np.column_stack([x, w])
        theta = self.est.const_marginal_effect(x).reshape(len(x), -1)  # (rows, types)
        y_hat = np.mean([m.predict(xw) for m in self.est.models_y[0]], axis=0)
        t_hat = np.mean([m.predict(xw) for m in self.est.models_t[0]], axis=0).reshape(len(x), -1)
        g = y_hat - (theta * t_hat).sum(axis=1)
        return np.maximum(g + (theta * t).sum(axis=1), 0.0)


PEERS: tuple[type, ...] = (LightGbmSLearner, DoubleMl)


def served_path(model: Any, units: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame) -> Callable:
    """``RoiModel.predict`` with ``units`` in place of the network: the
    artifact's scenario features and the one ROI formula, with the peer's own
    uptakes (solved from its own counterfactual on the training rows)."""
    uptake = F.estimate_uptake(frame, *F.counterfactual_units(units, frame))

    def predict(scenarios: pd.DataFrame) -> pd.DataFrame:
        feats = model.features(scenarios)
        out = score_features(units, feats, model.take_rates, uptake)
        out[F.CELL_LEVEL] = feats[F.CELL_LEVEL].to_numpy()
        return out

    return predict
