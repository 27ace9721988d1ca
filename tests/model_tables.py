"""A master-like table built from the simulator with pandas (no Spark), and the
matching ground truth, for fast tests of the model and its evaluation.

Same column names and meanings as the Spark master table (``autoroi/master/``,
names in ``autoroi.model.features``); only the ``region_model`` level (no
k-anonymity), only weeks with sales, no lag or calendar columns (the model
computes its own).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from autoroi.model import features as F
from autoroi.source.schema import INCENTIVE_TYPES
from autoroi.source.simulator import simulate

REGIONS = ("Northeast", "Pacific")
MODELS = ("Pico", "Kestrel", "Forge 1500", "Volta")


def master_from_tables(
    tables: dict, regions: tuple[str, ...] | None = None, models: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Simulated source tables -> one row per (region, vehicle model, week) with
    sales, with the Spark master's columns: incentive activity and offers from
    program eligibility and dates (``active_<type>``, ``offer_<type>``), and from
    sales ``incentive_units``, ``incentive_share``, ``incentive_amount``."""
    cols = ["dealer_id", "model_id", "sale_date", "program_id", "incentive_amount"]
    sales = tables["sales"].select(cols).to_pandas()
    dealers = tables["dealers"].select(["dealer_id", "region_id"]).to_pandas()
    regions_t = tables["regions"].select(["region_id", "name", "super_region"]).to_pandas()
    regions_t = regions_t.rename(columns={"name": F.REGION, "super_region": F.SUPER_REGION})
    vm = tables["vehicle_models"].select(["model_id", "name", "segment", "msrp", "unit_margin"]).to_pandas()
    vm = vm.rename(columns={"name": F.VEHICLE_MODEL})
    progs = tables["incentive_programs"].to_pandas()
    elig = tables["program_eligibility"].select(["program_id", "region_id", "model_id"]).to_pandas()

    s = sales.merge(dealers, on="dealer_id").merge(regions_t, on="region_id").merge(vm, on="model_id")
    if regions is not None:
        s = s[s[F.REGION].isin(regions)]
    if models is not None:
        s = s[s[F.VEHICLE_MODEL].isin(models)]
    day = pd.to_datetime(s["sale_date"])
    s[F.WEEK] = (day - pd.to_timedelta(day.dt.dayofweek, unit="D")).dt.normalize()
    s["_under"] = s["program_id"].notna().astype(float)
    key = ["region_id", "model_id", F.WEEK]
    m = (
        s.groupby([*key, F.REGION, F.VEHICLE_MODEL, F.SUPER_REGION, F.SEGMENT, F.MSRP, F.UNIT_MARGIN])
        .agg(
            units=("dealer_id", "size"),
            dealer_count=("dealer_id", "nunique"),
            incentive_units=("_under", "sum"),
            _amount=("incentive_amount", "mean"),
        )
        .reset_index()
    )
    # programs active in a cell-week: eligible and running on any day of the week
    offers = elig.merge(
        progs[["program_id", "incentive_type", "amount", "start_date", "end_date"]], on="program_id"
    )
    start = pd.to_datetime(offers["start_date"])
    first = start - pd.to_timedelta(start.dt.dayofweek, unit="D")
    n = ((pd.to_datetime(offers["end_date"]) - first).dt.days // 7 + 1).to_numpy()
    o = offers.loc[offers.index.repeat(n)].copy()
    o[F.WEEK] = np.repeat(first.to_numpy(), n) + pd.to_timedelta(
        np.concatenate([np.arange(k) for k in n]) * 7, unit="D"
    )
    act = o.pivot_table(index=key, columns="incentive_type", values="amount", aggfunc="max")
    act = act.reindex(columns=list(INCENTIVE_TYPES))
    m = m.merge(act.reset_index(), on=key, how="left")
    for t in INCENTIVE_TYPES:
        m[F.OFFERS[t]] = m[t].fillna(0.0)
        m[F.INDICATORS[t]] = (m[t].notna()).astype(np.int8)
    m = m.drop(columns=list(INCENTIVE_TYPES))
    m[F.MASTER_AMOUNT] = m["_amount"].fillna(0.0)
    m[F.MASTER_SHARE] = m["incentive_units"] / m[F.UNITS]
    m["incentive_depth"] = m[F.MASTER_AMOUNT] / m[F.MSRP]
    m[F.CELL_LEVEL] = F.FINEST_LEVEL
    m[F.WEEK] = m[F.WEEK].dt.date
    m = m.drop(columns=["_amount", "region_id", "model_id"])
    return m.sort_values([F.REGION, F.VEHICLE_MODEL, F.WEEK]).reset_index(drop=True)


@functools.lru_cache(maxsize=4)
def _simulated(seed: int, sales_rows: int, regions: tuple[str, ...], models: tuple[str, ...]):
    data = simulate(seed, sales_rows=sales_rows)
    master = master_from_tables(data.tables, regions, models)
    truth = data.truth.to_pandas()
    truth = truth[truth[F.REGION].isin(regions) & truth[F.VEHICLE_MODEL].isin(models)].reset_index(drop=True)
    return master, truth


def simulated_master(
    seed: int = 11,
    sales_rows: int = 300_000,
    regions: tuple[str, ...] = REGIONS,
    models: tuple[str, ...] = MODELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(master, truth) for a few cells of a simulated world (about 18k of the
    sales fall in the default 2 regions x 4 models; 156 weeks)."""
    master, truth = _simulated(seed, sales_rows, tuple(regions), tuple(models))
    return master.copy(), truth.copy()


TINY_HP = {"layers": 1, "units": 16, "embedding_dim": 4, "lift_units": 8, "batch_size": 128, "dropout": 0.0}


@functools.lru_cache(maxsize=1)
def _trained(epochs: int, seed: int):
    from autoroi.model.train import train_model  # TensorFlow only for the tests that need it

    master, _ = simulated_master()
    # three members: the served answers carry an interval
    return train_model(master, TINY_HP, epochs=epochs, seed=seed, version="test-v1", members=3)


def trained_model(epochs: int = 3, seed: int = 7):
    """A small RoiModel fitted on ``simulated_master()`` (cached per process:
    treat it as read-only)."""
    return _trained(epochs, seed)
