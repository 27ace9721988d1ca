"""What a client gets, scored against the simulator's ground truth.

Every truth row (program x region x vehicle model x week) of the last
``weeks`` weeks becomes the scenario a client would send -- that program's
type and amount in that cell and week -- and is answered by ``predict`` (the
served path: ``FastPredictor.predict_frame``, or ``RoiModel.predict``). The
answers are compared with the truth row by row (ROI bias, MAE, Spearman,
balanced accuracy and AUC of "pays back", ROI > 0) and per program (the sum of
its incremental profit over the sum of its cost, over its rows).

Only for evaluation: a production source has no truth file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoroi.evaluation.metrics import roi_metrics
from autoroi.model import features as F
from autoroi.model.roi import INTERVAL_COLUMNS

PredictFrame = Callable[[pd.DataFrame], pd.DataFrame]
DEFAULT_WEEKS = 26


@dataclass
class TruthScore:
    metrics: dict[str, float]
    rows: pd.DataFrame  # truth rows with the served answer beside (pred_* columns)
    programs: pd.DataFrame  # per program: true and served ROI


def score_truth(predict: PredictFrame, truth: pd.DataFrame, weeks: int = DEFAULT_WEEKS) -> TruthScore:
    """Serve the truth rows of the last ``weeks`` weeks and compare (module docstring).
    Rows whose cell ``predict`` refuses (a ``ScenarioError``) are left out and counted."""
    t = truth.copy()
    t[F.WEEK] = F.to_week(t[F.WEEK]).to_numpy()
    t = t[t[F.WEEK] > t[F.WEEK].max() - pd.Timedelta(weeks=weeks)].reset_index(drop=True)
    scen = t[list(F.SCENARIO_FIELDS)].copy()
    scen[F.WEEK] = scen[F.WEEK].dt.strftime("%Y-%m-%d")
    keep = np.ones(len(t), dtype=bool)
    answers = []
    for idx in scen.groupby([F.REGION, F.VEHICLE_MODEL], sort=False).groups.values():
        try:
            answers.append(predict(scen.loc[idx]).set_index(pd.Index(idx)))
        except F.ScenarioError:
            keep[np.asarray(idx)] = False
    out = pd.concat(answers).sort_index() if answers else pd.DataFrame()
    t = t[keep].reset_index(drop=True)
    out = out.reset_index(drop=True)
    for c in (
        "roi",
        "predicted_units",
        "baseline_units",
        "incremental_units",
        "incentive_cost",
        *INTERVAL_COLUMNS,
    ):
        if c in out.columns:
            t[f"pred_{c}"] = out[c].to_numpy()
    t["pred_profit"] = out["incremental_profit"].to_numpy() if len(out) else np.array([])
    t["true_net_profit"] = t["incremental_profit"] - t["incentive_cost"]
    if F.CELL_LEVEL in out.columns:
        t["pred_cell_level"] = out[F.CELL_LEVEL].to_numpy()
    programs = t.groupby("program_id").agg(
        incentive_type=(F.INCENTIVE_TYPE, "first"),
        rows=("roi", "size"),
        true_profit=("true_net_profit", "sum"),
        true_cost=("incentive_cost", "sum"),
        pred_profit=("pred_profit", "sum"),
        pred_cost=("pred_incentive_cost", "sum"),
    )
    programs["true_roi"] = programs["true_profit"] / programs["true_cost"]
    programs["pred_roi"] = programs["pred_profit"] / programs["pred_cost"]
    m: dict[str, Any] = dict(roi_metrics(t["roi"], t["pred_roi"]))
    m.update(
        {
            "rows": len(t),
            "rows_refused": int((~keep).sum()),
            "true_mean_roi": float(t["roi"].mean()) if len(t) else float("nan"),
            "programs": len(programs),
            "program_roi_mae": float((programs["pred_roi"] - programs["true_roi"]).abs().mean()),
            "units_with_ratio": float(t["pred_predicted_units"].sum() / t["units_with"].sum()),
            "units_without_ratio": float(t["pred_baseline_units"].sum() / t["units_without"].sum()),
            "incremental_ratio": float(t["pred_incremental_units"].sum() / t["incremental_units"].sum()),
            "cost_ratio": float(t["pred_incentive_cost"].sum() / t["incentive_cost"].sum()),
        }
    )
    if "pred_roi_lower" in t.columns:
        inside = (t["roi"] >= t["pred_roi_lower"]) & (t["roi"] <= t["pred_roi_upper"])
        known = t["pred_roi_lower"].notna()
        m["interval_coverage"] = float(inside[known].mean()) if known.any() else float("nan")
        m["interval_median_width"] = float((t["pred_roi_upper"] - t["pred_roi_lower"])[known].median())
    return TruthScore({k: float(v) for k, v in m.items()}, t, programs.reset_index())


def by_type(score: TruthScore) -> pd.DataFrame:
    """Per incentive type: rows, true and served mean ROI."""
    g = score.rows.groupby(F.INCENTIVE_TYPE)
    return pd.DataFrame({"rows": g.size(), "true_roi": g["roi"].mean(), "served_roi": g["pred_roi"].mean()})
