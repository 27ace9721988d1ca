"""The simulator's truth for any scenario, not only the programs that ran.

For evaluating decisions (a plan, a what-if): each scenario ``{region,
vehicle_model, week_start, incentive_type, incentive_amount}`` is scored by the
causal model that ``autoroi generate`` draws its sales from
(``simulator._truth``), as the only incentive in its cell and week: units
without it are the cell's base demand, with it ``base x (1 + lift)``; its
pull-forward (the type's share of the extra units, spread over the six weeks
after it) counts against it, capped as the simulator caps dips (half a week's
base); its buyers are all the extra ones plus the type's uptake share of the
regular ones. The unit scale is the one of the world generated with the same
seed and sales count, so a scenario that repeats a lone program of the truth
file gets that row's numbers.

Weeks after the 156 simulated ones continue the base demand: the same
seasonality and segment trend, and the inventory factor's expectation given
its last simulated state (its AR(1) run forward without new shocks, the clip
included). That is the truth of a future week as the world at its horizon
expects it; the simulator draws no sales there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from autoroi.errors import ConfigError
from autoroi.source import simulator as S
from autoroi.source.schema import INCENTIVE_TYPES, SEGMENTS

SCENARIO_FIELDS = ("region", "vehicle_model", "week_start", "incentive_type", "incentive_amount")
# the truth file's columns, less the program (a scenario is not one)
TRUTH_FIELDS = tuple(n for n in S.TRUTH_SCHEMA.names if n != "program_id")
MAX_WEEKS_AHEAD = 156  # how far past the simulated weeks the base demand is continued
_WEEK = timedelta(weeks=1)


@dataclass(frozen=True)
class TruthWorld:
    """One seed's world, as the scorer needs it."""

    seed: int
    sales_rows: int
    world: S._World
    factor: float  # units per unit of base demand (the generated world's scale)

    def base(self, n_weeks: int) -> np.ndarray:
        """Expected units without any incentive: regions x models x ``n_weeks``
        weeks from START_DATE (the simulated ones, then continued)."""
        w = self.world
        if n_weeks <= S.N_WEEKS:
            return w.base[:, :, :n_weeks] * self.factor
        ahead = np.arange(S.N_WEEKS, n_weeks)
        season = S._seasonality(ahead.tolist())[w.model_segment]  # models x weeks
        trend = S._trend(w.model_segment, ahead)
        inventory = _expected_inventory(w.inventory_log, ahead - (S.N_WEEKS - 1))
        more = w.level[:, :, None] * (season * trend)[None] * inventory
        return np.concatenate([w.base, more], axis=2) * self.factor


def truth_world(seed: int, *, scale: str = "small", sales_rows: int | None = None) -> TruthWorld:
    """The world ``autoroi generate --seed S [--scale|--sales-rows]`` writes."""
    preset, n = S.resolve_scale(scale, sales_rows)
    return world_of(seed, dealers=preset.dealers, sales_rows=n)


def world_of(seed: int, *, dealers: int, sales_rows: int) -> TruthWorld:
    """The world of ``seed`` with ``dealers`` dealers, scaled to ``sales_rows``
    generated sales (what the source's simulator record names)."""
    seed = S.check_seed(seed)
    world = S._build_world(seed, dealers)
    factor = S._truth(world, S._build_programs(seed, world), sales_rows).factor
    return TruthWorld(seed, sales_rows, world, factor)


def _expected_inventory(x_last: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """E[clip(exp(x_h), lo, hi)] for the AR(1) x run ``steps`` weeks from
    ``x_last``: regions x models x steps."""
    rho, sigma = S.INVENTORY_RHO, S.INVENTORY_SIGMA
    lo, hi = S.INVENTORY_CLIP
    mu = x_last[:, :, None] * rho ** steps[None, None, :]
    sd = sigma * np.sqrt((1 - rho ** (2 * steps)) / (1 - rho**2))[None, None, :] * np.ones_like(mu)
    phi = np.vectorize(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))))
    a = (math.log(lo) - mu) / sd
    b = (math.log(hi) - mu) / sd
    inside = np.exp(mu + sd**2 / 2) * (phi(b - sd) - phi(a - sd))
    return lo * phi(a) + hi * (1 - phi(b)) + inside


def _indices(scenarios: pd.DataFrame) -> tuple[np.ndarray, ...]:
    missing = [c for c in SCENARIO_FIELDS if c not in scenarios.columns]
    if missing:
        raise ConfigError(f"scenarios lack column(s) {', '.join(missing)}; need {', '.join(SCENARIO_FIELDS)}")
    regions = {r[0]: i for i, r in enumerate(S.REGIONS)}
    models = {m[0]: i for i, m in enumerate(S.MODELS)}

    def lookup(col: str, known: dict[str, int]) -> np.ndarray:
        vals = scenarios[col].astype(str)
        bad = sorted(set(vals) - set(known))
        if bad:
            raise ConfigError(f"{col}: unknown {', '.join(bad[:5])}; the simulator has {', '.join(known)}")
        return vals.map(known).to_numpy(np.int64)

    r_i = lookup("region", regions)
    m_i = lookup("vehicle_model", models)
    t_i = lookup("incentive_type", {t: i for i, t in enumerate(INCENTIVE_TYPES)})
    try:
        weeks = pd.to_datetime(scenarios["week_start"]).dt.date
    except (ValueError, TypeError) as e:
        raise ConfigError(f"week_start: not a date ({e})") from e
    days = np.array([(d - S.START_DATE).days for d in weeks], dtype=np.int64)
    bad_w = [str(d) for d, x in zip(weeks, days, strict=True) if x % 7 or x < 0]
    if bad_w:
        raise ConfigError(
            f"week_start: {', '.join(bad_w[:5])} is not a Monday from {S.START_DATE} on"
            " (weeks start on Mondays)"
        )
    w_i = days // 7
    if len(w_i) and w_i.max() >= S.N_WEEKS + MAX_WEEKS_AHEAD:
        raise ConfigError(
            f"week_start: at most {MAX_WEEKS_AHEAD} weeks after the simulated ones"
            f" (the last is {S.START_DATE + (S.N_WEEKS - 1) * _WEEK})"
        )
    amount = pd.to_numeric(scenarios["incentive_amount"], errors="coerce").to_numpy(np.float64)
    if not np.all(np.isfinite(amount) & (amount > 0)):
        raise ConfigError("incentive_amount: every amount must be a positive number of dollars")
    return r_i, m_i, w_i, t_i, amount


def score_scenarios(tw: TruthWorld, scenarios: pd.DataFrame) -> pd.DataFrame:
    """The truth of each scenario, one row per row of ``scenarios`` (same
    order), with the truth file's column names."""
    r_i, m_i, w_i, t_i, amount = _indices(scenarios)
    world = tw.world
    n_ahead = S.PULL_FORWARD_WEEKS
    horizon = int(w_i.max()) + 1 + n_ahead if len(w_i) else S.N_WEEKS
    base = tw.base(max(horizon, S.N_WEEKS))
    seg = world.model_segment[m_i]
    lift = S.incentive_lift(world, t_i, r_i, m_i, amount)

    b = base[r_i, m_i, w_i]
    extra = b * lift
    lost = S.spec_of("pull_forward", t_i) * extra
    pulled = np.zeros_like(extra)
    for j, k in enumerate(S.PULL_FORWARD_KERNEL):
        cap = S.DIP_CAP * base[r_i, m_i, w_i + 1 + j]
        pulled += np.minimum(lost * k, cap)
    incremental = extra - pulled
    under = extra + b * S.spec_of("uptake", t_i)
    cost = amount * under
    margin = world.margin[m_i]
    profit = incremental * margin
    out = pd.DataFrame(
        {
            "incentive_type": np.asarray(INCENTIVE_TYPES, dtype=object)[t_i],
            "region": np.asarray([r[0] for r in S.REGIONS], dtype=object)[r_i],
            "region_id": (r_i + 1).astype(np.int32),
            "vehicle_model": np.asarray([m[0] for m in S.MODELS], dtype=object)[m_i],
            "model_id": (m_i + 1).astype(np.int32),
            "segment": np.asarray(SEGMENTS, dtype=object)[seg],
            "week_start": [S.START_DATE + int(w) * _WEEK for w in w_i],
            "incentive_amount": amount,
            "units_with": b + extra,
            "units_without": b,
            "pull_forward_units": pulled,
            "incremental_units": incremental,
            "unit_margin": margin,
            "units_under_incentive": under,
            "incentive_cost": cost,
            "incremental_profit": profit,
            "roi": (profit - cost) / cost,
        },
        index=scenarios.index,
    )
    return out[list(TRUTH_FIELDS)]
