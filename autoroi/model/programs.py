"""Program-level ROI: what each incentive program that ran returned, summed
over every cell and week it covered.

A program (``incentive_programs``: type, amount per unit, start and end date)
is offered in the cells ``program_eligibility`` lists. Each of its cell-weeks
within the model's weeks is the served scenario ``{region, vehicle_model,
week_start, incentive_type, incentive_amount}`` (a week counts when the
program ran on any of its days, as the master table marks it); the model
answers it as the server would (on top of the other programs that ran there,
scaled to the cell where k-anonymity merged it), and the program's incremental
units, cost and profit are the sums of its rows. Its ROI is summed profit over
summed cost, and its interval comes from each ensemble member's own sums
(``roi.roi_interval``): a program's rows share the members' errors, so the
interval of a sum is not the sum of the rows' intervals.

Pure: tables in, frames out; the command ``autoroi programs`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.model.roi import member_units, roi_of_sums

PROGRAM_TABLES: dict[str, tuple[str, ...]] = {
    "incentive_programs": ("program_id", "code", "incentive_type", "amount", "start_date", "end_date"),
    "program_eligibility": ("program_id", "region_id", "model_id"),
    "regions": ("region_id", "name"),
    "vehicle_models": ("model_id", "name"),
}
PROGRAM_COLUMNS = (
    "program_id",
    "code",
    "incentive_type",
    "incentive_amount",
    "first_week",
    "last_week",
    "cells",
    "cell_weeks",
    "incremental_units",
    "incentive_cost",
    "incremental_profit",
    "roi",
    "roi_lower",
    "roi_upper",
    "prob_pays_back",
)


def program_scenarios(tables: Mapping[str, Any], first_week: Any, last_week: Any) -> pd.DataFrame:
    """One served scenario per program, eligible cell and week it ran in
    (between the Mondays ``first_week`` and ``last_week``), with its
    ``program_id`` and ``code``. ``tables``: the curated tables of
    :data:`PROGRAM_TABLES` (Arrow or pandas)."""

    def frame(name: str) -> pd.DataFrame:
        t = tables[name]
        return t if isinstance(t, pd.DataFrame) else t.to_pandas()

    progs = frame("incentive_programs")
    elig = frame("program_eligibility")
    regions = frame("regions").rename(columns={"name": F.REGION})
    models = frame("vehicle_models").rename(columns={"name": F.VEHICLE_MODEL})
    start = F.to_week(progs["start_date"])
    first = start - pd.to_timedelta(start.dt.dayofweek, unit="D")  # the Monday of its first day
    n = ((F.to_week(progs["end_date"]) - first).dt.days // 7 + 1).clip(lower=0).to_numpy()
    weeks = progs.loc[progs.index.repeat(n), ["program_id"]].copy()
    weeks[F.WEEK] = np.repeat(first.to_numpy(), n) + pd.to_timedelta(
        np.concatenate([np.arange(k) for k in n]) * 7 if len(n) else [], unit="D"
    )
    lo, hi = pd.Timestamp(first_week), pd.Timestamp(last_week)
    weeks = weeks[(weeks[F.WEEK] >= lo) & (weeks[F.WEEK] <= hi)]
    cells = elig.merge(regions[["region_id", F.REGION]], on="region_id").merge(
        models[["model_id", F.VEHICLE_MODEL]], on="model_id"
    )
    out = weeks.merge(cells[["program_id", F.REGION, F.VEHICLE_MODEL]], on="program_id").merge(
        progs[["program_id", "code", "incentive_type", "amount"]], on="program_id"
    )
    out = out.rename(columns={"amount": F.INCENTIVE_AMOUNT})
    out[F.INCENTIVE_AMOUNT] = out[F.INCENTIVE_AMOUNT].astype(np.float64)
    cols = ["program_id", "code", F.REGION, F.VEHICLE_MODEL, F.WEEK, F.INCENTIVE_TYPE, F.INCENTIVE_AMOUNT]
    return out[cols].sort_values(["program_id", F.REGION, F.VEHICLE_MODEL, F.WEEK]).reset_index(drop=True)


def filled_master(master: pd.DataFrame, tables: Mapping[str, Any] | None) -> pd.DataFrame:
    """The master with its fine weeks merged by k-anonymity filled from their
    coarser rows with the programs that ran in them
    (``features.fill_merged_weeks``; an option ``train`` does not take yet:
    bench/roi_sources.py), or the master as it is without the program tables
    (:data:`PROGRAM_TABLES`)."""
    if not tables or set(PROGRAM_TABLES) - set(tables):
        return master
    weeks = F.to_week(master[F.WEEK])
    activity = F.program_activity(program_scenarios(tables, weeks.min(), weeks.max()))
    return F.fill_merged_weeks(master, activity)


def program_roi(model: Any, scenarios: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per program, the sums of :func:`program_scenarios`' rows as ``model``
    (a ``RoiModel``) answers them, with the program's ROI and interval
    (:data:`PROGRAM_COLUMNS`); and how many rows no servable cell covers
    (left out). A cell the model does not know is left out, not guessed."""
    if scenarios.empty:
        return pd.DataFrame(columns=list(PROGRAM_COLUMNS)), 0
    known_types = set(model.metadata.get("incentive_types_seen") or F.INCENTIVE_TYPES)
    parts, skipped = [], 0
    for (_r, _m), rows in scenarios.groupby([F.REGION, F.VEHICLE_MODEL], sort=False):
        rows = rows[rows[F.INCENTIVE_TYPE].isin(known_types)]
        try:
            feats = model.features(rows[list(F.SCENARIO_FIELDS)])
        except F.ScenarioError:
            skipped += len(rows)
            continue
        parts.append((rows, feats))
    if not parts:
        return pd.DataFrame(columns=list(PROGRAM_COLUMNS)), skipped
    rows = pd.concat([r for r, _ in parts], ignore_index=True)
    feats = pd.concat([f for _, f in parts], ignore_index=True)
    mu = member_units(model.predict_members, feats, model.take_rates, model.uptake, model.pull_forward)
    cols = mu.columns()
    profit, cost = mu.money()
    rows = rows.assign(
        _inc=cols["incremental_units"],
        _cost=cols["incentive_cost"],
        _profit=cols["incremental_profit"],
        _cell=rows[F.REGION] + "/" + rows[F.VEHICLE_MODEL],
    )
    g = rows.groupby("program_id", sort=True)
    out = g.agg(
        code=("code", "first"),
        incentive_type=(F.INCENTIVE_TYPE, "first"),
        incentive_amount=(F.INCENTIVE_AMOUNT, "first"),
        first_week=(F.WEEK, "min"),
        last_week=(F.WEEK, "max"),
        cells=("_cell", "nunique"),
        cell_weeks=("_cell", "size"),
        incremental_units=("_inc", "sum"),
        incentive_cost=("_cost", "sum"),
        incremental_profit=("_profit", "sum"),
    ).reset_index()
    codes, idx = np.unique(rows["program_id"].to_numpy(), return_inverse=True)
    m_profit = np.zeros((len(codes), profit.shape[1]))
    m_cost = np.zeros_like(m_profit)
    np.add.at(m_profit, idx, profit)
    np.add.at(m_cost, idx, cost)
    for k, v in roi_of_sums(out["incremental_profit"], out["incentive_cost"], m_profit, m_cost).items():
        out[k] = v
    for c in ("first_week", "last_week"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    return out[list(PROGRAM_COLUMNS)], skipped


def true_program_roi(truth: pd.DataFrame, first_week: Any, last_week: Any) -> pd.DataFrame:
    """Per program, the simulator's true ROI over the same weeks (for
    evaluation only): its summed profit net of cost over its summed cost."""
    t = truth.copy()
    t[F.WEEK] = F.to_week(t[F.WEEK])
    t = t[(t[F.WEEK] >= pd.Timestamp(first_week)) & (t[F.WEEK] <= pd.Timestamp(last_week))]
    t["_net"] = t["incremental_profit"] - t["incentive_cost"]
    g = t.groupby("program_id").agg(
        true_incremental_units=("incremental_units", "sum"),
        true_incentive_cost=("incentive_cost", "sum"),
        _net=("_net", "sum"),
    )
    g["true_incremental_profit"] = g.pop("_net")
    g["true_roi"] = g["true_incremental_profit"] / g["true_incentive_cost"]
    return g.reset_index()
