"""The simulated world after the generated weeks, and the regime changes
(shocks) ``autoroi mutate --shock`` applies to it.

A mutate batch's new sales follow the causal model that drew the generated
ones: base demand continued past the simulated weeks, the lift of the
programs on offer, their pull-forward dips, gamma-Poisson noise per dealer.
So a model trained on the history should predict the new weeks about as well
as its backtest predicted held-out ones, until a shock changes the world; the
monitor step is tested on exactly that difference.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from autoroi.errors import ConfigError, SourceError
from autoroi.source import schema
from autoroi.source import simulator as S
from autoroi.source.truth import TruthWorld, world_of

SHOCKS = ("demand_drop", "lift_change", "new_model")
DEMAND_DROP = 0.7  # base demand of the shocked region, relative to before
LIFT_CHANGE = 2.0  # lift of the shocked incentive type, relative to before
NEW_MODEL = ("Voltara EX", "ev", 41_900.0)  # name, segment, MSRP of the model a new_model shock launches
DOW_SHARE = np.array([0.14, 0.13, 0.13, 0.14, 0.16, 0.22, 0.08])  # Monday first, as simulate draws days


@dataclass(frozen=True)
class Shock:
    kind: str
    from_day: int  # days since the epoch: the first day it applies
    region: str | None = None
    incentive_type: str | None = None
    vehicle_model: str | None = None

    def describe(self) -> str:
        start = S.EPOCH + timedelta(days=self.from_day)
        if self.kind == "demand_drop":
            return f"base demand in {self.region} falls {1 - DEMAND_DROP:.0%} from {start}"
        if self.kind == "lift_change":
            return f"the lift of {self.incentive_type} is x{LIFT_CHANGE:g} from {start}"
        return f"a new vehicle model, {self.vehicle_model}, sells from {start}"


@dataclass(frozen=True)
class SimulationRecord:
    """What ``autoroi generate`` drew and the shocks applied since."""

    seed: int
    sales_rows: int
    dealers: int
    shocks: tuple[Shock, ...] = ()


def read_record(conn: Connection) -> SimulationRecord:
    try:
        found = conn.execute(sa.select(schema.simulation.c.key, schema.simulation.c.value)).all()
    except sa.exc.DBAPIError as e:
        raise SourceError(
            f"the source has no simulator record ({schema.simulation.name}): autoroi mutate continues a"
            " world that `autoroi generate` wrote; run it (again) first"
        ) from e
    rows = {str(k): str(v) for k, v in found}
    if "world" not in rows:
        raise SourceError(f"the simulator record ({schema.simulation.name}) lacks the world; regenerate")
    world = json.loads(rows["world"])
    shocks = tuple(Shock(**s) for s in json.loads(rows.get("shocks", "[]")))
    return SimulationRecord(int(world["seed"]), int(world["sales_rows"]), int(world["dealers"]), shocks)


def add_shock(conn: Connection, record: SimulationRecord, shock: Shock) -> SimulationRecord:
    """Record ``shock`` beside the earlier ones (inside the caller's transaction)."""
    shocks = (*record.shocks, shock)
    value = json.dumps([asdict(s) for s in shocks])
    t = schema.simulation
    conn.execute(sa.delete(t).where(t.c.key == "shocks"))
    conn.execute(t.insert(), [{"key": "shocks", "value": value}])
    return SimulationRecord(record.seed, record.sales_rows, record.dealers, shocks)


def choose_shock(kind: str, rng: np.random.Generator, from_day: int, running: tuple[str, ...] = ()) -> Shock:
    """Which region or type a shock hits is drawn from the batch's stream;
    a lift change hits a type on offer (``running``) when there is one, since
    the lift of a type nobody offers cannot be seen."""
    if kind not in SHOCKS:
        raise ConfigError(f"shock: unknown {kind!r}; known: {', '.join(SHOCKS)}")
    if kind == "demand_drop":
        return Shock(kind, from_day, region=S.REGIONS[int(rng.integers(len(S.REGIONS)))][0])
    if kind == "lift_change":
        types = tuple(sorted(running)) or S.INCENTIVE_TYPES
        return Shock(kind, from_day, incentive_type=types[int(rng.integers(len(types)))])
    return Shock(kind, from_day, vehicle_model=NEW_MODEL[0])


def world_for(record: SimulationRecord) -> TruthWorld:
    return world_of(record.seed, dealers=record.dealers, sales_rows=record.sales_rows)


@dataclass
class NewSales:
    """One batch's new sales (arrays of equal length) and their expected count."""

    dealer_id: np.ndarray
    model_id: np.ndarray
    day: np.ndarray  # days since the epoch
    program_id: np.ndarray  # -1: none
    ptype: np.ndarray  # index into INCENTIVE_TYPES, -1: none
    amount: np.ndarray  # NaN: none
    expected: float


def draw_sales(
    rng: np.random.Generator,
    tw: TruthWorld,
    shocks: tuple[Shock, ...],
    days: np.ndarray,
    models: pd.DataFrame,
    dealer_region: dict[int, int],
    offers: pd.DataFrame,
) -> NewSales:
    """Sales on ``days`` from the causal model.

    ``models``: model_id, segment, msrp of every model in the source (a model
    the world does not know borrows its segment's average demand and dealer
    shares); ``dealer_region``: dealer_id -> region index; ``offers``: one row
    per program and eligible (region index, model_id) with ``ptype`` (type
    index), ``amount``, ``start`` and ``end`` days, for every program on offer
    on ``days`` or ended within the pull-forward window before them.
    """
    w = tw.world
    n_known = len(S.MODELS)
    model_ids = models["model_id"].to_numpy(np.int64)
    m_idx = {int(mid): i for i, mid in enumerate(model_ids)}
    seg = np.array([S.SEGMENTS.index(x) if x in S.SEGMENTS else 0 for x in models["segment"]])
    msrp = models["msrp"].to_numpy(np.float64)
    weeks = (days - S.START_DAY) // 7
    n_weeks = int(weeks.max()) + 1
    base_known = tw.base(n_weeks)  # regions x known models x weeks, in units
    base = np.empty((base_known.shape[0], len(model_ids), n_weeks))
    dealer_ids = np.array(sorted(dealer_region), dtype=np.int64)
    d_region = np.array([dealer_region[int(d)] for d in dealer_ids])
    share = np.empty((len(dealer_ids), len(model_ids)))
    for j, mid in enumerate(model_ids):
        if 1 <= mid <= n_known:
            base[:, j] = base_known[:, mid - 1]
            share[:, j] = w.dealer_share[dealer_ids - 1, mid - 1]
        else:  # a model the generated world never had: its segment's average
            peers = np.flatnonzero(w.model_segment == seg[j])
            base[:, j] = base_known[:, peers].mean(axis=1)
            raw = w.dealer_share[dealer_ids - 1][:, peers].mean(axis=1)
            totals = np.bincount(d_region, weights=raw, minlength=base.shape[0])
            share[:, j] = raw / totals[d_region]

    # per day: base demand, shocks, lift of the programs on, pull-forward dips
    n_r, n_m, n_d = base.shape[0], len(model_ids), len(days)
    region_names = [r[0] for r in S.REGIONS]
    day_base = base[:, :, weeks] * DOW_SHARE[(days - S.START_DAY) % 7][None, None, :]  # r x m x days
    for s in shocks:
        if s.kind == "demand_drop" and s.region in region_names:
            on = days >= s.from_day
            day_base[region_names.index(s.region), :, on] *= DEMAND_DROP

    def lift(o: pd.DataFrame, day: int | None) -> np.ndarray:
        t = o["ptype"].to_numpy(np.int64)
        r = o["region"].to_numpy(np.int64)
        j = o["model_id"].map(m_idx).to_numpy(np.int64)
        depth = o["amount"].to_numpy(np.float64) / msrp[j]
        out = (
            S.spec_of("max_lift", t)
            * S._SPEC["segment_response"][t, seg[j]]
            * w.region_response[t, r]
            * (1 - np.exp(-S.spec_of("curvature", t) * depth))
        )
        for s in shocks:
            if s.kind == "lift_change" and s.incentive_type in S.INCENTIVE_TYPES:
                hit = t == S.INCENTIVE_TYPES.index(s.incentive_type)
                if day is None:
                    hit &= o["start"].to_numpy() >= s.from_day
                else:
                    hit &= day >= s.from_day
                out = np.where(hit, out * LIFT_CHANGE, out)
        return out

    offers = offers[offers["model_id"].isin(m_idx)].reset_index(drop=True)
    dip = np.zeros((n_r, n_m, n_d))
    if len(offers):
        # pull-forward: a program that ended borrows from the weeks after it
        extra = lift(offers, None)
        start_w = (offers["start"].to_numpy() - S.START_DAY) // 7
        end_w = (offers["end"].to_numpy() - S.START_DAY) // 7
        r_o = offers["region"].to_numpy(np.int64)
        j_o = offers["model_id"].map(m_idx).to_numpy(np.int64)
        phi = S.spec_of("pull_forward", offers["ptype"].to_numpy(np.int64))
        for i in range(len(offers)):
            lo, hi = max(0, start_w[i]), min(n_weeks - 1, end_w[i])
            total = base[r_o[i], j_o[i], lo : hi + 1].sum() * extra[i] if hi >= lo else 0.0
            k = weeks - end_w[i] - 1
            on = (k >= 0) & (k < S.PULL_FORWARD_WEEKS)
            if on.any():
                weekly = phi[i] * total * S.PULL_FORWARD_KERNEL[k[on]]
                dip[r_o[i], j_o[i], on] += weekly * DOW_SHARE[(days[on] - S.START_DAY) % 7]
        dip = np.minimum(dip, S.DIP_CAP * day_base)

    lam = day_base - dip  # r x m x days, before lift
    take: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
    if len(offers):
        for di, day in enumerate(days):
            live = offers[(offers["start"] <= day) & (offers["end"] >= day)]
            if live.empty:
                continue
            live = live.assign(L=lift(live, int(day)))
            for (r, mid), cell in live.groupby(["region", "model_id"], sort=True):
                j = m_idx[int(mid)]
                cell = cell.sort_values(["amount", "program_id"], ascending=[False, True], kind="stable")
                L = cell["L"].to_numpy()
                F = float(np.prod(1 + L))
                b = day_base[r, j, di]
                regular = b - dip[r, j, di]
                total = b * F - dip[r, j, di]
                log_l = np.log1p(L)
                brought = b * (F - 1) * log_l / max(log_l.sum(), 1e-12)
                uptake = S.spec_of("uptake", cell["ptype"].to_numpy(np.int64))
                remaining = np.cumprod(np.r_[1.0, 1 - uptake[:-1]])
                pi = (brought + regular * uptake * remaining) / max(total, 1e-12)
                lam[r, j, di] = total
                take[(int(r), j, di)] = (cell[["program_id", "ptype", "amount"]].to_numpy(), np.cumsum(pi))

    # units per dealer, model and day: gamma-Poisson around the expectation
    lam_d = np.maximum(lam, 0)[d_region] * share[:, :, None]  # dealers x models x days
    flat = lam_d.ravel()
    counts = rng.poisson(flat * rng.gamma(S.DISPERSION, 1 / S.DISPERSION, flat.size))
    cell = np.repeat(np.arange(flat.size), counts)
    d_i, rem = np.divmod(cell, n_m * n_d)
    j_i, t_i = np.divmod(rem, n_d)
    n = len(cell)
    program = np.full(n, -1, dtype=np.int64)
    ptype = np.full(n, -1, dtype=np.int64)
    amount = np.full(n, np.nan)
    u = rng.random(n)
    for (r, j, di), (progs, cum) in take.items():
        idx = np.flatnonzero((d_region[d_i] == r) & (j_i == j) & (t_i == di))
        if not len(idx):
            continue
        pick = np.searchsorted(cum, u[idx], side="right")
        chosen = pick < len(cum)
        program[idx[chosen]] = progs[pick[chosen], 0].astype(np.int64)
        ptype[idx[chosen]] = progs[pick[chosen], 1].astype(np.int64)
        amount[idx[chosen]] = progs[pick[chosen], 2].astype(np.float64)
    return NewSales(
        dealer_id=dealer_ids[d_i],
        model_id=model_ids[j_i],
        day=days[t_i],
        program_id=program,
        ptype=ptype,
        amount=amount,
        expected=float(flat.sum()),
    )
