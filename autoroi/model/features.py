"""Features of the units model, and how a served *scenario* gets them.

Every master-table column name the model depends on is defined here and nowhere
else, so that a rename in ``autoroi/master/`` is a one-line change.

Rows and scenarios
------------------
The model predicts expected weekly units of one cell (region x vehicle model x
week) under one incentive. A *scenario*, as served (DESIGN.md, "Serving
contract"), is ``{region, vehicle_model, week_start, incentive_type,
incentive_amount}``. Its features come from three places:

- **scenario features**, from the request: ``incentive_type`` (one of
  ``INCENTIVE_TYPES`` or ``"none"``), ``incentive_amount`` (dollars per unit)
  and ``incentive_depth = amount / msrp``, fed to the model as one on/off and
  one depth column per incentive type (``treat_<type>``, ``depth_<type>``);
- **calendar features**, computed from ``week_start`` alone (week of year as
  sine/cosine pairs of 1, 2 and 3 cycles a year, holiday week, month-end and
  quarter-end week, a trend in years);
- **cell context**, looked up in the *context table* that is saved inside the
  model artifact: ``segment``, ``msrp``, ``unit_margin``, lags of units (1-4 and
  52 weeks), rolling means of units over the previous weeks, last year's units
  around the same week (``units_ly_5``, weeks w-54..w-50) and over the 13 weeks
  before it (``units_mean_13_ly``), the previous week's ``dealer_count``, and
  the incentives of the previous weeks (``INCENTIVE_HISTORY``: last week's
  summed depth, its mean over 4 weeks, weeks since the last incentive). The
  row of that cell and week when the master table has it; for a later week,
  the cell's freshest context (the week after its last observed week, whose
  lags are the last observed units); for an earlier week, the cell's first
  row.

A served scenario of a week the master table has runs on top of the programs
that ran in that cell-week (its *background*: ``ran_<type>`` in the context,
the depth of each type's program; ``FeatureSpec.background``): their
treatments are on beside the scenario's own type, which replaces a program of
the same type. The *baseline* (counterfactual) of a scenario is the same row
without its own incentive, the background still on (:func:`without_scenario`);
the regular buyers, who may take it, are those of the row without any
incentive (:func:`without_incentive`). A week after the data has no
background. Everything else stays as it was.

A training row is a master row seen as the scenario that happened
(:func:`observed_scenarios`): every incentive type that was active in the
cell-week is on, at the row's mean amount per unit; ``incentive_type`` names the
dominant one (for reports). It goes through the very same
:func:`scenario_features` with the context of the same master table, so
training and serving features cannot drift apart.

Choices, stated
---------------
- History features (lags, rolling means) are computed here from ``units`` on a
  complete weekly grid per cell, looking backwards only, instead of read from
  the master table's own lag columns: one definition for training, backtest and
  serving, valid for weeks the master table does not have, and indifferent to
  gaps (a missing week is a missing value, not a zero). In a backtest the lags
  of a test week are the actual units of the weeks before it (one-week-ahead).
- The same week's ``dealer_count`` is *not* a feature: it counts the dealers
  that sold in that week, so it moves with the target (an incentive that sells
  more cars also reaches more dealers). The previous week's count is used.
- The master table marks which incentive types ran in a cell-week (from
  program eligibility and dates: ``active_<type>``) and the amount per unit
  each offered (``offer_<type>``; without those columns, the mean amount per
  unit sold under a program). The *dominant* type is the first active one in
  ``DOMINANCE_ORDER`` (the types that usually reach most buyers first).
- Take rates (the share of a cell's units sold under a program, for the
  incentive cost) are fitted per type from the master's overall
  ``incentive_share`` (:func:`estimate_take_rates`).
- Missing history (a cell's first weeks, a year without last year) is filled
  with the mean of the cell's earlier weeks; ``has_lag_52`` tells the model
  which rows have a real same-week-last-year value.
- Why the incentive history: the lags of a week inside a program carry that
  program's lift, and the weeks after one carry its pull-forward dip; without
  knowing that, a model reads them as a higher or lower baseline. Why last
  year's windows: the same weeks a year ago, scaled by how the cell moved since
  (``units_mean_13`` against ``units_mean_13_ly``), is the seasonal forecast
  with the least noise the history offers; a single ``units_lag_52`` is one
  noisy week. Why 3 harmonics: one sine/cosine pair is a smooth yearly wave,
  while sales move by month and around holidays. Each was measured on the
  backtest (bench/RESULTS.md, "Model quality").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from autoroi.errors import AutoroiError
from autoroi.source.schema import INCENTIVE_TYPES

# --------------------------------------------------------------------------- master-table columns

WEEK = "week_start"  # Monday of the week (date)
CELL_LEVEL = "cell_level"
CONTEXT_REGION = "context_region"  # the (possibly coarser) cell whose context answered a scenario
CONTEXT_MODEL = "context_vehicle_model"
FINE_CELLS = "fine_cells"  # master: fine cells merged into a row (1 at the finest level)
# context: a fine cell's week that k-anonymity merged into a coarser row is answered
# from that row, scaled by the fine cell's share of it; a coarser row's share of one
# member never published on its own (see _cell_shares)
ANSWER_REGION = "answer_region"
ANSWER_MODEL = "answer_vehicle_model"
CELL_SHARE = "cell_share"
UNKNOWN_SHARE = "unknown_member_share"
CELL_SCALE = "cell_scale"  # feature rows: the factor on the answering cell's units
# a fine cell-week k-anonymity merged, filled from its coarser row (fill_merged_weeks):
# that row's level and cell ("" on every other row)
FILLED_LEVEL = "filled_from_level"
FILLED_REGION = "filled_from_region"
FILLED_MODEL = "filled_from_vehicle_model"
FILLED_COLUMNS = (FILLED_LEVEL, FILLED_REGION, FILLED_MODEL)
REGION = "region"  # for super-region levels: the super region
VEHICLE_MODEL = "vehicle_model"  # for segment levels: the segment
SEGMENT = "segment"
SUPER_REGION = "super_region"
UNITS = "units"  # target: units sold in the cell and week
DEALER_COUNT = "dealer_count"
MSRP = "msrp"
UNIT_MARGIN = "unit_margin"
MASTER_AMOUNT = "incentive_amount"  # mean incentive dollars per unit sold under a program
MASTER_SHARE = "incentive_share"  # share of the cell's units sold under a program (for take rates)
INDICATORS: dict[str, str] = {t: f"active_{t}" for t in INCENTIVE_TYPES}  # 1: a program of the type runs
OFFERS: dict[str, str] = {t: f"offer_{t}" for t in INCENTIVE_TYPES}  # its amount per unit (0: none)
# context: the depth (offer / MSRP) of the program of each type that ran in the
# cell-week (0: none ran, or a week the master does not have)
RAN: dict[str, str] = {t: f"ran_{t}" for t in INCENTIVE_TYPES}

CELL_LEVELS = ("region_model", "super_region_model", "region_segment", "super_region_segment")
FINEST_LEVEL = CELL_LEVELS[0]

# --------------------------------------------------------------------------- scenario columns

INCENTIVE_TYPE = "incentive_type"
INCENTIVE_AMOUNT = "incentive_amount"
INCENTIVE_DEPTH = "incentive_depth"
NO_INCENTIVE = "none"
SCENARIO_FIELDS = (REGION, VEHICLE_MODEL, WEEK, INCENTIVE_TYPE, INCENTIVE_AMOUNT)
SCENARIO_TYPES = (NO_INCENTIVE, *INCENTIVE_TYPES)
DOMINANCE_ORDER = ("cash_rebate", "dealer_cash", "apr_subsidy", "lease_subsidy", "loyalty", "conquest")
assert sorted(DOMINANCE_ORDER) == sorted(INCENTIVE_TYPES)

# --------------------------------------------------------------------------- derived feature columns

TREAT: dict[str, str] = {t: f"treat_{t}" for t in INCENTIVE_TYPES}  # 0/1: the type is on
DEPTH: dict[str, str] = {t: f"depth_{t}" for t in INCENTIVE_TYPES}  # its amount / MSRP (0 when off)
CALENDAR = ("week_sin", "week_cos", "holiday_week", "month_end_week", "quarter_end_week", "trend_years")
MAX_HARMONICS = 4  # week of year as sine/cosine pairs of 1..4 cycles a year
HARMONICS: dict[int, tuple[str, str]] = {
    k: ("week_sin", "week_cos") if k == 1 else (f"week_sin_{k}", f"week_cos_{k}")
    for k in range(1, MAX_HARMONICS + 1)
}
CALENDAR_ALL = (*CALENDAR, *(c for k in range(2, MAX_HARMONICS + 1) for c in HARMONICS[k]))
INCENTIVE_HISTORY = ("incentive_lag_1", "incentive_mean_4", "weeks_since_incentive")
WEEKS_SINCE_CAP = 8  # weeks_since_incentive: 1..8, 8 also for "none seen"
# programs that ended in the weeks before, per type: their run's summed depth
# (depth x weeks run), over the 1-3 and the 4-6 weeks before (their pull-forward dip)
ENDED_WINDOWS: dict[str, tuple[int, int]] = {"1_3": (1, 3), "4_6": (4, 6)}
ENDED: dict[str, tuple[str, ...]] = {
    t: tuple(f"ended_{t}_{w}" for w in ENDED_WINDOWS) for t in INCENTIVE_TYPES
}
# last year's units around the same week, and over the 13 weeks before that
# week: (weeks in the window, the window's last week counted back from this one)
LAST_YEAR_WINDOWS: dict[str, tuple[int, int]] = {"units_ly_5": (5, 50), "units_mean_13_ly": (13, 53)}
HAS_LAG_52 = "has_lag_52"
DEALERS_LAG = "dealers_lag_1"
WEEK_INDEX = "_week_index"  # weeks since EPOCH_MONDAY; internal
EPOCH_MONDAY = date(1970, 1, 5)
TREND_ORIGIN = date(2024, 1, 1)


class ScenarioError(AutoroiError):
    """A scenario cannot be scored; ``field`` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class FeatureSpec:
    """Which history features exist and how each column is fed to the model.
    Saved in the artifact (``to_dict``/``from_dict``)."""

    lags: tuple[int, ...] = (1, 2, 3, 4, 52)
    windows: tuple[int, ...] = (4, 13)
    categorical: tuple[str, ...] = (REGION, VEHICLE_MODEL, SEGMENT)
    cell_numeric: tuple[str, ...] = (MSRP, UNIT_MARGIN)
    treatments: tuple[str, ...] = INCENTIVE_TYPES
    harmonics: int = 3  # sine/cosine pairs of the week of year (1..MAX_HARMONICS)
    incentive_history: bool = True  # INCENTIVE_HISTORY columns
    last_year: bool = True  # LAST_YEAR_WINDOWS columns
    background: bool = True  # a served scenario runs on top of the programs that ran (RAN)
    # ENDED columns: programs that ended in the weeks before, read by the network's dip
    # (network.PullForwardDip) and netted from the ROI (features.estimate_pull_forward); off
    # by default: on three unused seeds it overstated the net lift (bench/RESULTS.md, issue 12)
    ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.harmonics <= MAX_HARMONICS:
            raise ValueError(f"harmonics must be 1..{MAX_HARMONICS}, got {self.harmonics}")

    @property
    def history(self) -> tuple[str, ...]:
        """History of units (and dealers): counts, ``log1p``-transformed."""
        return (
            *(f"units_lag_{k}" for k in self.lags),
            *(f"units_mean_{w}" for w in self.windows),
            *(LAST_YEAR_WINDOWS if self.last_year else ()),
            DEALERS_LAG,
        )

    @property
    def calendar(self) -> tuple[str, ...]:
        """The numeric columns that depend on the week alone."""
        extra = (c for k in range(2, self.harmonics + 1) for c in HARMONICS[k])
        return (*CALENDAR, *extra)

    @property
    def incentive_history_columns(self) -> tuple[str, ...]:
        return INCENTIVE_HISTORY if self.incentive_history else ()

    @property
    def ended_columns(self) -> tuple[str, ...]:
        return tuple(c for t in self.treatments for c in ENDED[t]) if self.ended else ()

    @property
    def treat_columns(self) -> tuple[str, ...]:
        return tuple(TREAT[t] for t in self.treatments)

    @property
    def depth_columns(self) -> tuple[str, ...]:
        return tuple(DEPTH[t] for t in self.treatments)

    @property
    def numeric(self) -> tuple[str, ...]:
        """Context and calendar numerics (normalized); the treatment ones are separate."""
        flags = (HAS_LAG_52,) if 52 in self.lags else ()
        return (
            *self.cell_numeric,
            *self.calendar,
            *self.history,
            *flags,
            *self.incentive_history_columns,
            *self.ended_columns,
        )

    @property
    def log_columns(self) -> tuple[str, ...]:
        """Numerics that are ``log1p``-transformed before normalization (counts, money)."""
        return (*self.history, MSRP, UNIT_MARGIN)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            lags=tuple(int(x) for x in d.get("lags", cls.lags)),
            windows=tuple(int(x) for x in d.get("windows", cls.windows)),
            categorical=tuple(d.get("categorical", cls.categorical)),
            cell_numeric=tuple(d.get("cell_numeric", cls.cell_numeric)),
            treatments=tuple(d.get("treatments", cls.treatments)),
            # artifacts saved before these options existed had none of them
            harmonics=int(d.get("harmonics", 1)),
            incentive_history=bool(d.get("incentive_history", False)),
            last_year=bool(d.get("last_year", False)),
            background=bool(d.get("background", False)),
            ended=bool(d.get("ended", False)),
            extra=dict(d.get("extra", {})),
        )


DEFAULT_SPEC = FeatureSpec()

# --------------------------------------------------------------------------- calendar


def _week_index(weeks: pd.Series) -> np.ndarray:
    days = (weeks - pd.Timestamp(EPOCH_MONDAY)).dt.days.to_numpy()
    return np.floor_divide(days, 7).astype(np.int64)


def to_week(values: Any, field: str = WEEK) -> pd.Series:
    """Dates (``date``, strings, timestamps) as ``datetime64[ns]`` midnights."""
    try:
        s = pd.to_datetime(pd.Series(values), errors="raise")
    except (ValueError, TypeError) as e:
        raise ScenarioError(field, "must be a date (YYYY-MM-DD)") from e
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.dt.normalize().astype("datetime64[ns]")


def _holiday_dates(year: int) -> list[date]:
    """US holidays that move car sales (the industry's big sales weekends)."""

    def nth_weekday(month: int, weekday: int, n: int) -> date:
        d = date(year, month, 1)
        d += timedelta((weekday - d.weekday()) % 7)
        return d + timedelta(weeks=n - 1)

    def last_weekday(month: int, weekday: int) -> date:
        d = date(year + (month == 12), month % 12 + 1, 1) - timedelta(1)
        return d - timedelta((d.weekday() - weekday) % 7)

    thanksgiving = nth_weekday(11, 3, 4)
    return [
        date(year, 1, 1),
        nth_weekday(2, 0, 3),  # Presidents' Day
        last_weekday(5, 0),  # Memorial Day
        date(year, 7, 4),
        nth_weekday(9, 0, 1),  # Labor Day
        thanksgiving + timedelta(1),  # Black Friday
        date(year, 12, 26),  # year-end clearance
    ]


def calendar_features(weeks: pd.Series) -> pd.DataFrame:
    """Calendar features of Monday dates, computed from the date alone."""
    wk = to_week(weeks)
    uniq = pd.Series(wk.unique())
    rows = []
    for ts in uniq:
        start = ts.date()
        days = [start + timedelta(d) for d in range(7)]
        years = {start.year, days[-1].year}
        holidays = {h for y in years for h in _holiday_dates(y)}
        month_end = any((d + timedelta(1)).month != d.month for d in days)
        quarter_end = any((d + timedelta(1)).month != d.month and d.month % 3 == 0 for d in days)
        doy = (start + timedelta(3)).timetuple().tm_yday  # the week's Thursday
        angle = 2 * math.pi * (doy - 1) / 365.25
        rows.append(
            (
                ts,
                math.sin(angle),
                math.cos(angle),
                float(any(d in holidays for d in days)),
                float(month_end),
                float(quarter_end),
                (start - TREND_ORIGIN).days / 365.25,
                *(f(k * angle) for k in range(2, MAX_HARMONICS + 1) for f in (math.sin, math.cos)),
            )
        )
    table = pd.DataFrame(rows, columns=["_w", *CALENDAR_ALL]).set_index("_w")
    out = table.reindex(wk.to_numpy())
    out.index = weeks.index if isinstance(weeks, pd.Series) else pd.RangeIndex(len(out))
    return out


# --------------------------------------------------------------------------- master -> context


def normalize_master(master: pd.DataFrame) -> pd.DataFrame:
    """The master table with checked columns and a ``datetime64`` week."""
    need = (WEEK, REGION, VEHICLE_MODEL, SEGMENT, UNITS, MSRP, UNIT_MARGIN)
    missing = [c for c in need if c not in master.columns]
    if missing:
        raise KeyError(f"master table lacks columns {missing}")
    m = master.copy()
    m[WEEK] = to_week(m[WEEK]).to_numpy()
    if CELL_LEVEL not in m.columns:
        m[CELL_LEVEL] = FINEST_LEVEL
    if SUPER_REGION not in m.columns:
        m[SUPER_REGION] = m[REGION]
    for c in (REGION, VEHICLE_MODEL, SEGMENT, SUPER_REGION, CELL_LEVEL):
        m[c] = m[c].astype(str)
    for c in (UNITS, MSRP, UNIT_MARGIN):
        m[c] = m[c].astype(np.float64)
    m[DEALER_COUNT] = m[DEALER_COUNT].astype(np.float64) if DEALER_COUNT in m.columns else np.nan
    return m.reset_index(drop=True)


def _group_shift(values: np.ndarray, cell: np.ndarray, k: int) -> np.ndarray:
    """``values`` shifted by ``k`` rows within each cell (rows sorted by cell, week)."""
    out = np.full(len(values), np.nan)
    if k < len(values):
        out[k:] = values[:-k] if k else values
        same = np.zeros(len(values), dtype=bool)
        same[k:] = cell[k:] == cell[: len(cell) - k]
        out[~same] = np.nan
    return out


def build_context(master: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC) -> pd.DataFrame:
    """One row per cell and week on a complete weekly grid from the cell's first
    week to the week after its last, with the cell's attributes and its history
    features (backward-looking only). This table is what serving looks up."""
    m = normalize_master(master)
    key = [REGION, VEHICLE_MODEL]
    dup = m.duplicated([*key, WEEK])
    if dup.any():
        # the same (region, model) at two levels cannot happen with distinct names;
        # keep the finest level
        order = m[CELL_LEVEL].map({lvl: i for i, lvl in enumerate(CELL_LEVELS)}).fillna(len(CELL_LEVELS))
        m = m.assign(_o=order).sort_values("_o").drop_duplicates([*key, WEEK]).drop(columns="_o")
    m[WEEK_INDEX] = _week_index(m[WEEK])
    cells = m.groupby(key, sort=True).agg(_lo=(WEEK_INDEX, "min"), _hi=(WEEK_INDEX, "max")).reset_index()
    lengths = (cells["_hi"] - cells["_lo"] + 2).to_numpy()  # + the week after the last
    cell_id = np.repeat(np.arange(len(cells)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid = pd.DataFrame(
        {
            REGION: cells[REGION].to_numpy()[cell_id],
            VEHICLE_MODEL: cells[VEHICLE_MODEL].to_numpy()[cell_id],
            WEEK_INDEX: cells["_lo"].to_numpy()[cell_id] + offsets,
        }
    )
    attrs = [CELL_LEVEL, SEGMENT, SUPER_REGION, MSRP, UNIT_MARGIN]
    m["_inc_depth"] = _total_depth(m)
    ran = _type_depths(m)
    for t, values in ran.items():
        m[RAN[t]] = values
    filled = [c for c in FILLED_COLUMNS if c in m.columns]
    cols = [*key, WEEK_INDEX, UNITS, DEALER_COUNT, "_inc_depth", *attrs, *(RAN[t] for t in ran), *filled]
    g = grid.merge(m[cols], on=[*key, WEEK_INDEX], how="left")
    for c in filled:  # per week, not carried forward
        g[c] = g[c].fillna("").astype(str)
    g = g.sort_values([*key, WEEK_INDEX], kind="stable").reset_index(drop=True)
    g[attrs] = g.groupby(key, sort=False)[attrs].ffill()  # a cell's first grid week is observed
    g[WEEK] = pd.Timestamp(EPOCH_MONDAY) + pd.to_timedelta(g[WEEK_INDEX] * 7, unit="D")

    cell = np.repeat(np.arange(len(cells)), lengths)
    units = g[UNITS].to_numpy(np.float64)
    seen = ~np.isnan(units)
    csum = np.cumsum(np.where(seen, units, 0.0))
    ccnt = np.cumsum(seen.astype(np.float64))
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    base_sum = np.repeat(csum[first] - np.where(seen[first], units[first], 0.0), lengths)
    base_cnt = np.repeat(ccnt[first] - seen[first], lengths)
    csum, ccnt = csum - base_sum, ccnt - base_cnt  # cumulative within the cell, through this week
    prev_sum = _group_shift(csum, cell, 1)
    prev_cnt = _group_shift(ccnt, cell, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expanding = np.where(prev_cnt > 0, prev_sum / np.where(prev_cnt > 0, prev_cnt, 1), np.nan)
    fallback = np.nan_to_num(expanding, nan=0.0)

    hist: dict[str, np.ndarray] = {}
    for k in spec.lags:
        lag = _group_shift(units, cell, k)
        if k == 52:
            hist[HAS_LAG_52] = (~np.isnan(lag)).astype(np.float64)
        hist[f"units_lag_{k}"] = np.where(np.isnan(lag), fallback, lag)
    for w in spec.windows:
        mean = _window_mean(units, cell, w)
        hist[f"units_mean_{w}"] = np.where(np.isnan(mean), fallback, mean)
    dealers = _group_shift(g[DEALER_COUNT].to_numpy(np.float64), cell, 1)
    dealers_fb = pd.Series(dealers).groupby(cell).ffill().to_numpy()
    known = m[DEALER_COUNT].dropna()
    hist[DEALERS_LAG] = np.nan_to_num(
        np.where(np.isnan(dealers), dealers_fb, dealers), nan=float(known.mean()) if len(known) else 0.0
    )
    for name, (w, end) in LAST_YEAR_WINDOWS.items():
        mean = _window_mean(units, cell, w, end)
        hist[name] = np.where(np.isnan(mean), fallback, mean)
    hist.update(_incentive_history(g["_inc_depth"].to_numpy(np.float64), cell))
    if spec.ended:
        hist.update(_ended_programs({t: g[RAN[t]].to_numpy(np.float64) for t in ran}, cell))
    for name, values in hist.items():
        g[name] = values
    ran_cols = [RAN[t] for t in ran]
    g[ran_cols] = g[ran_cols].fillna(0.0)
    g = _attach_shares(g, m)
    share_cols = [ANSWER_REGION, ANSWER_MODEL, CELL_SHARE, UNKNOWN_SHARE]
    cols = [REGION, VEHICLE_MODEL, WEEK, WEEK_INDEX, *attrs, *hist, *ran_cols, *share_cols, *filled]
    return g[cols]


_COARSE_DOMAINS = {  # level: (fine-cell column matched to the row's region, ... to its vehicle_model)
    "super_region_model": (SUPER_REGION, VEHICLE_MODEL),
    "region_segment": (REGION, SEGMENT),
    "super_region_segment": (SUPER_REGION, SEGMENT),
}


def _cell_shares(m: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Who is inside each coarser master row, and with what share.

    k-anonymity publishes a fine cell's week on its own only when enough
    dealers sold: a selection on the outcome, so the published weeks of a small
    cell are its good ones. Its other weeks went into a coarser row (the first
    of super region x model, region x segment, super region x segment whose
    group reached k), together with every other fine cell of that group not
    published that week. A fine cell's answer for such a week comes from that
    row, scaled by the cell's share of it: its mean published units over the
    members' (a member never published on its own counts as the smallest known
    one; the row's ``fine_cells`` says how many members sold). Returns (the
    fine cells' merged weeks: region, model, week index -> answering cell and
    share; per coarser row: the share of one never-published member)."""
    empty = pd.DataFrame(columns=[REGION, VEHICLE_MODEL, WEEK_INDEX, ANSWER_REGION, ANSWER_MODEL, CELL_SHARE])
    empty_u = pd.DataFrame(columns=[REGION, VEHICLE_MODEL, WEEK_INDEX, UNKNOWN_SHARE])
    level = m[CELL_LEVEL]
    fine = m[level == FINEST_LEVEL]
    coarse = m[level != FINEST_LEVEL]
    if fine.empty or coarse.empty:
        return empty, empty_u
    cells = (
        fine.groupby([REGION, VEHICLE_MODEL], sort=False)
        .agg(**{SUPER_REGION: (SUPER_REGION, "first"), SEGMENT: (SEGMENT, "first"), "_w": (UNITS, "mean")})
        .reset_index()
    )
    published = fine[[REGION, VEHICLE_MODEL, WEEK_INDEX]].assign(_pub=True)
    taken = published[[REGION, VEHICLE_MODEL, WEEK_INDEX]]
    redirects, unknown = [], []
    for name, (on_region, on_model) in _COARSE_DOMAINS.items():
        rows = coarse[coarse[CELL_LEVEL] == name]
        if rows.empty:
            continue
        n_sold = rows[FINE_CELLS].astype(np.float64) if FINE_CELLS in rows.columns else np.nan
        rows = rows[[REGION, VEHICLE_MODEL, WEEK_INDEX, UNITS]].assign(_n=n_sold)
        rows = rows.rename(columns={REGION: "_cr", VEHICLE_MODEL: "_cm"})
        cand = rows.merge(
            cells.rename(columns={REGION: "_fr", VEHICLE_MODEL: "_fm"}),
            left_on=["_cr", "_cm"],
            right_on=[
                on_region if on_region != REGION else "_fr",
                on_model if on_model != VEHICLE_MODEL else "_fm",
            ],
        )
        key = cand[["_fr", "_fm", WEEK_INDEX]].rename(columns={"_fr": REGION, "_fm": VEHICLE_MODEL})
        busy = key.merge(taken.assign(_t=True), on=[REGION, VEHICLE_MODEL, WEEK_INDEX], how="left")["_t"]
        cand = cand[busy.isna().to_numpy()]
        grp = cand.groupby(["_cr", "_cm", WEEK_INDEX], sort=False)
        stats = grp.agg(_sum=("_w", "sum"), _k=("_w", "size"), _min=("_w", "min")).reset_index()
        rows = rows.merge(stats, on=["_cr", "_cm", WEEK_INDEX], how="left")
        k = rows["_k"].fillna(0.0).to_numpy()
        n = rows["_n"].to_numpy(np.float64)
        n = np.where(np.isnan(n), k, n)
        w_unknown = np.where(
            k > 0, rows["_min"].to_numpy(np.float64), rows[UNITS].to_numpy(np.float64) / np.maximum(n, 1)
        )
        n_unknown = np.maximum(n - k, 1.0)  # a never-published member asking counts as one
        total = rows["_sum"].fillna(0.0).to_numpy() + n_unknown * w_unknown
        unknown.append(
            pd.DataFrame(
                {
                    REGION: rows["_cr"].to_numpy(),
                    VEHICLE_MODEL: rows["_cm"].to_numpy(),
                    WEEK_INDEX: rows[WEEK_INDEX].to_numpy(),
                    UNKNOWN_SHARE: np.where(total > 0, w_unknown / np.where(total > 0, total, 1), 0.0),
                }
            )
        )
        cand = cand.merge(
            pd.DataFrame(
                {"_cr": rows["_cr"], "_cm": rows["_cm"], WEEK_INDEX: rows[WEEK_INDEX], "_total": total}
            ),
            on=["_cr", "_cm", WEEK_INDEX],
        )
        redirects.append(
            pd.DataFrame(
                {
                    REGION: cand["_fr"].to_numpy(),
                    VEHICLE_MODEL: cand["_fm"].to_numpy(),
                    WEEK_INDEX: cand[WEEK_INDEX].to_numpy(),
                    ANSWER_REGION: cand["_cr"].to_numpy(),
                    ANSWER_MODEL: cand["_cm"].to_numpy(),
                    CELL_SHARE: (cand["_w"] / cand["_total"]).to_numpy(),
                }
            )
        )
        taken = pd.concat([taken, redirects[-1][[REGION, VEHICLE_MODEL, WEEK_INDEX]]], ignore_index=True)
    out = pd.concat(redirects, ignore_index=True) if redirects else empty
    return out, (pd.concat(unknown, ignore_index=True) if unknown else empty_u)


def program_activity(scenarios: pd.DataFrame) -> pd.DataFrame:
    """Per fine cell and week, the master's incentive columns of the programs
    that ran there (``active_<type>``, ``offer_<type>``: the highest amount of
    the type, as the master marks them) from program scenarios (region,
    vehicle_model, week_start, incentive_type, incentive_amount: one per
    program, eligible cell and week, ``programs.program_scenarios``)."""
    cols = [REGION, VEHICLE_MODEL, WEEK, *INDICATORS.values(), *OFFERS.values()]
    if scenarios.empty:
        return pd.DataFrame(columns=cols)
    sc = scenarios.assign(**{WEEK: to_week(scenarios[WEEK]).to_numpy()})
    wide = sc.pivot_table(
        index=[REGION, VEHICLE_MODEL, WEEK], columns=INCENTIVE_TYPE, values=INCENTIVE_AMOUNT, aggfunc="max"
    )
    wide = wide.reindex(columns=list(INCENTIVE_TYPES))
    out = wide.reset_index()[[REGION, VEHICLE_MODEL, WEEK]]
    for t in INCENTIVE_TYPES:
        amount = wide[t].to_numpy(np.float64)
        out[INDICATORS[t]] = (~np.isnan(amount)).astype(np.float64)
        out[OFFERS[t]] = np.nan_to_num(amount, nan=0.0)
    return out[cols]


def fill_merged_weeks(master: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    """The master with a row for every fine cell-week that k-anonymity merged
    into a coarser row: its units that row's times the cell's share of it
    (:func:`_cell_shares`), its own MSRP, margin, segment and super region,
    and the programs that ran in it (``activity``, :func:`program_activity`:
    public program data, not dealer data); ``FILLED_COLUMNS`` name the row it
    came from. The coarser rows stay (they answer cells never published on
    their own).

    Why: a fine cell-week is published only when enough dealers sold, so a
    small cell's published weeks are its good ones (selection on the outcome)
    and a model of them alone overstates its base (+11 %, development seed
    302). The filled weeks hold the units the coarser rows published (all of
    them where every member that sold is a known cell; less the share of the
    members never published on their own otherwise), so the cell's series is
    complete again, with the right total.
    The activity has to be the cell's own: a coarser row marks a program when
    any member had it, and filling with that diluted every lift (measured
    worse than no fill). Nothing finer than the master is revealed: a filled
    week is a function of published rows and public programs."""
    m = normalize_master(master)
    for c in FILLED_COLUMNS:
        m[c] = ""
    if FINE_CELLS not in m.columns or (m[CELL_LEVEL] == FINEST_LEVEL).all():
        return m
    m[WEEK_INDEX] = _week_index(m[WEEK])
    redirects, _ = _cell_shares(m)
    if redirects.empty:
        return m.drop(columns=WEEK_INDEX)
    coarse = m[m[CELL_LEVEL] != FINEST_LEVEL]
    source = coarse[[REGION, VEHICLE_MODEL, WEEK_INDEX, WEEK, CELL_LEVEL, UNITS]].rename(
        columns={REGION: ANSWER_REGION, VEHICLE_MODEL: ANSWER_MODEL, UNITS: "_coarse_units"}
    )
    for c in (MASTER_SHARE, MASTER_AMOUNT):
        if c in coarse.columns:
            source[c] = coarse[c].to_numpy()
    source["_n"] = coarse[FINE_CELLS].astype(np.float64).to_numpy()
    rows = redirects.merge(source, on=[ANSWER_REGION, ANSWER_MODEL, WEEK_INDEX])
    # a serving share keeps room for one never-published member; where every member that sold
    # is a known cell (fine_cells <= the known members), the known ones hold all the units
    grp = rows.groupby([ANSWER_REGION, ANSWER_MODEL, WEEK_INDEX], sort=False)[CELL_SHARE]
    known, total = grp.transform("size").to_numpy(), grp.transform("sum").to_numpy()
    every = rows["_n"].to_numpy() <= known
    rows[CELL_SHARE] = np.where(
        every & (total > 0), rows[CELL_SHARE] / np.where(total > 0, total, 1), rows[CELL_SHARE]
    )
    fine = m[m[CELL_LEVEL] == FINEST_LEVEL]
    attrs = fine.groupby([REGION, VEHICLE_MODEL], sort=False)[
        [SEGMENT, SUPER_REGION, MSRP, UNIT_MARGIN]
    ].last()
    rows = rows.merge(attrs.reset_index(), on=[REGION, VEHICLE_MODEL])
    rows[UNITS] = rows["_coarse_units"] * rows[CELL_SHARE]
    rows[FINE_CELLS] = 1
    rows[DEALER_COUNT] = np.nan
    rows[FILLED_LEVEL] = rows[CELL_LEVEL]
    rows[FILLED_REGION] = rows[ANSWER_REGION]
    rows[FILLED_MODEL] = rows[ANSWER_MODEL]
    rows[CELL_LEVEL] = FINEST_LEVEL
    act = activity.assign(**{WEEK: to_week(activity[WEEK]).to_numpy()}) if len(activity) else activity
    act_cols = [c for c in (*INDICATORS.values(), *OFFERS.values()) if c in m.columns]
    if len(act):
        rows = rows.merge(
            act[[REGION, VEHICLE_MODEL, WEEK, *act_cols]], on=[REGION, VEHICLE_MODEL, WEEK], how="left"
        )
    for c in act_cols:
        rows[c] = rows[c].astype(np.float64).fillna(0.0) if c in rows.columns else 0.0
    keep = [c for c in m.columns if c in rows.columns and c != WEEK_INDEX]
    out = pd.concat([m.drop(columns=WEEK_INDEX), rows[keep]], ignore_index=True)
    return out.sort_values([CELL_LEVEL, REGION, VEHICLE_MODEL, WEEK], kind="stable").reset_index(drop=True)


def _attach_shares(g: pd.DataFrame, m: pd.DataFrame) -> pd.DataFrame:
    """The context grid with the columns of :func:`_cell_shares`: a fine
    cell's merged week names its answering cell (``ANSWER_*``, else empty) and
    share (else 1); a coarser cell's week its never-published member's share
    (its last known one after its last row; 1 where it has none)."""
    redirects, unknown = _cell_shares(m)
    key = [REGION, VEHICLE_MODEL, WEEK_INDEX]
    g = g.merge(redirects, on=key, how="left").merge(unknown, on=key, how="left")
    g[ANSWER_REGION] = g[ANSWER_REGION].fillna("").astype(str)
    g[ANSWER_MODEL] = g[ANSWER_MODEL].fillna("").astype(str)
    g[CELL_SHARE] = g[CELL_SHARE].astype(np.float64).fillna(1.0)
    by_cell = [REGION, VEHICLE_MODEL]
    g[UNKNOWN_SHARE] = g.groupby(by_cell, sort=False)[UNKNOWN_SHARE].ffill()
    g[UNKNOWN_SHARE] = g.groupby(by_cell, sort=False)[UNKNOWN_SHARE].bfill().astype(np.float64).fillna(1.0)
    return g


def _window_mean(values: np.ndarray, cell: np.ndarray, w: int, offset: int = 1) -> np.ndarray:
    """Per grid row, the mean of the observed (non-NaN) ``values`` of the same
    cell in the ``w`` weeks that end ``offset`` weeks before it (``offset=1``:
    the ``w`` weeks just before it); NaN where none was observed."""
    seen = ~np.isnan(values)
    first = np.r_[True, cell[1:] != cell[:-1]]
    csum = np.cumsum(np.where(seen, values, 0.0))
    ccnt = np.cumsum(seen.astype(np.float64))
    start = np.maximum.accumulate(np.where(first, np.arange(len(values)), 0))
    base_sum = np.where(start > 0, csum[start - 1], 0.0)  # cumulative before the cell's first row
    base_cnt = np.where(start > 0, ccnt[start - 1], 0.0)
    csum, ccnt = csum - base_sum, ccnt - base_cnt
    s_hi = np.nan_to_num(_group_shift(csum, cell, offset), nan=0.0)
    c_hi = np.nan_to_num(_group_shift(ccnt, cell, offset), nan=0.0)
    s_lo = np.nan_to_num(_group_shift(csum, cell, w + offset), nan=0.0)
    c_lo = np.nan_to_num(_group_shift(ccnt, cell, w + offset), nan=0.0)
    n = c_hi - c_lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (s_hi - s_lo) / np.where(n > 0, n, 1), np.nan)


def _type_depths(m: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per master row and incentive type, the depth (offer / MSRP) of the
    type's program that ran in the cell-week (0: none); only the types whose
    indicator column the master has."""
    present = [t for t in INCENTIVE_TYPES if INDICATORS[t] in m.columns]
    msrp = m[MSRP].where(m[MSRP] > 0, np.nan).to_numpy(np.float64)
    mean_amount = m[MASTER_AMOUNT].astype(np.float64).fillna(0.0) if MASTER_AMOUNT in m.columns else 0.0
    out: dict[str, np.ndarray] = {}
    for t in present:
        on = m[INDICATORS[t]].fillna(0).to_numpy(np.float64) > 0
        amount = m[OFFERS[t]].astype(np.float64).fillna(0.0) if OFFERS[t] in m.columns else mean_amount
        depth = np.nan_to_num(np.asarray(amount + np.zeros(len(m)), dtype=np.float64) / msrp, nan=0.0)
        out[t] = np.where(on, depth, 0.0)
    return out


def _total_depth(m: pd.DataFrame) -> np.ndarray:
    """Per master row, the summed depth (offer / MSRP) of every incentive type
    that ran in the cell-week: 0 without any, NaN without indicator columns."""
    depths = _type_depths(m)
    if not depths:
        return np.full(len(m), np.nan)
    return np.sum(list(depths.values()), axis=0)


def _incentive_history(depth: np.ndarray, cell: np.ndarray) -> dict[str, np.ndarray]:
    """Incentives of the weeks before (``INCENTIVE_HISTORY``), from the summed
    depth per grid row (NaN: a week the master does not have):

    - ``incentive_lag_1``: last week's summed depth (0 when unknown);
    - ``incentive_mean_4``: its mean over the observed weeks of the last 4;
    - ``weeks_since_incentive``: weeks since the last observed week with any
      incentive, 1 to ``WEEKS_SINCE_CAP`` (the cap also when there was none).

    The units lags of a week inside a program carry that program's lift, and
    the weeks after one carry its pull-forward dip; these tell the model so."""
    lag1 = np.nan_to_num(_group_shift(depth, cell, 1), nan=0.0)
    mean4 = np.nan_to_num(_window_mean(depth, cell, 4), nan=0.0)
    idx = np.arange(len(depth), dtype=np.float64)
    last_on = pd.Series(np.where(np.nan_to_num(depth) > 0, idx, np.nan)).groupby(cell).ffill().to_numpy()
    last_before = _group_shift(last_on, cell, 1)
    since = np.where(np.isnan(last_before), WEEKS_SINCE_CAP, idx - last_before)
    return {
        "incentive_lag_1": lag1,
        "incentive_mean_4": mean4,
        "weeks_since_incentive": np.clip(since, 1, WEEKS_SINCE_CAP).astype(np.float64),
    }


def _ended_programs(ran: Mapping[str, np.ndarray], cell: np.ndarray) -> dict[str, np.ndarray]:
    """Per type, the programs that ended in the weeks before each grid row
    (``ENDED``): the run's summed depth (depth x its weeks), at the weeks after
    its last one that each window covers; 0 where none ended.

    Why: a program borrows buyers from the weeks after it (its pull-forward
    dip). With only ``INCENTIVE_HISTORY`` the base cannot tell the third week
    of a program (lags inflated by the lift, no dip) from the week after one
    (the same lags, a dip), and it averaged the two: the baseline during a
    program came out too low and the lift too high by the dip (1.28x the true
    gross lift with every cell-week published, development seed 302). With the
    ended programs apart (``network.PullForwardDip``), the dip has a place of
    its own, and :func:`estimate_pull_forward` reads from the model the share
    of the extra units that programs borrow."""
    n = len(cell)
    same_next = np.zeros(n, dtype=bool)
    same_next[:-1] = cell[1:] == cell[:-1]
    same_prev = np.r_[False, same_next[:-1]]
    out: dict[str, np.ndarray] = {}
    for t in INCENTIVE_TYPES:
        cols = ENDED[t]
        if t not in ran:
            for c in cols:
                out[c] = np.zeros(n)
            continue
        d = np.nan_to_num(ran[t], nan=0.0)
        on = d > 0
        nxt = np.zeros(n)
        nxt[:-1] = d[1:]
        ends = on & ~((nxt > 0) & same_next)
        # summed depth of the run that ends at each row: a cumulative sum reset where the run starts
        csum = np.cumsum(d)
        start = on & ~(np.r_[False, on[:-1]] & same_prev)
        before = pd.Series(np.where(start, csum - d, np.nan)).ffill().fillna(0.0).to_numpy()
        ended = np.where(ends, csum - before, 0.0)
        for c, (lo, hi) in zip(cols, ENDED_WINDOWS.values(), strict=True):
            acc = np.zeros(n)
            for k in range(lo, hi + 1):
                acc += np.nan_to_num(_group_shift(ended, cell, k), nan=0.0)
            out[c] = acc
    return out


# --------------------------------------------------------------------------- scenarios


def observed_scenarios(master: pd.DataFrame) -> pd.DataFrame:
    """Each master row as the scenario that happened: its dominant incentive
    type (``"none"`` without any) and that type's offer (or, without
    ``offer_<type>`` columns, the mean amount per unit sold under a program);
    besides, every type's indicator and offer (so that every active type is on
    in the features) and the share of units under a program (take rates)."""
    m = normalize_master(master)
    kind = np.full(len(m), NO_INCENTIVE, dtype=object)
    present = [t for t in reversed(DOMINANCE_ORDER) if INDICATORS[t] in m.columns]
    if not present:
        raise KeyError(f"master table lacks the incentive indicator columns {list(INDICATORS.values())}")
    for t in present:  # reversed: the most dominant active type is written last
        on = m[INDICATORS[t]].fillna(0).to_numpy(np.float64) > 0
        kind[on] = t
    mean_amount = m[MASTER_AMOUNT].astype(np.float64).fillna(0.0) if MASTER_AMOUNT in m.columns else 0.0
    amount = np.asarray(mean_amount + np.zeros(len(m)), dtype=np.float64)
    for t in INCENTIVE_TYPES:  # the dominant type's own offer where the master has it
        if OFFERS[t] in m.columns:
            amount = np.where(kind == t, m[OFFERS[t]].astype(np.float64).fillna(0.0).to_numpy(), amount)
    amount = np.where(kind == NO_INCENTIVE, 0.0, amount)
    out = pd.DataFrame(
        {
            REGION: m[REGION],
            VEHICLE_MODEL: m[VEHICLE_MODEL],
            WEEK: m[WEEK],
            INCENTIVE_TYPE: kind.astype(str),
            INCENTIVE_AMOUNT: amount,
        }
    )
    out[UNITS] = m[UNITS].to_numpy()
    for c in (MASTER_SHARE, *INDICATORS.values(), *OFFERS.values()):
        if c in m.columns:  # every active type and its offer; the share for the take rates
            out[c] = m[c].astype(np.float64).fillna(0.0).to_numpy()
    return out


def check_scenarios(scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Scenarios validated and typed; a :class:`ScenarioError` naming the field otherwise."""
    df = scenarios if isinstance(scenarios, pd.DataFrame) else pd.DataFrame(list(scenarios))
    for f in SCENARIO_FIELDS:
        if f not in df.columns:
            raise ScenarioError(f, "missing")
        if df[f].isna().any():
            raise ScenarioError(f, "missing or null")
    out = df[list(SCENARIO_FIELDS)].copy()  # nothing else from a request reaches the features
    for f in (REGION, VEHICLE_MODEL, INCENTIVE_TYPE):
        if not all(isinstance(v, str) and v for v in out[f]):
            raise ScenarioError(f, "must be a non-empty string")
    out[WEEK] = to_week(out[WEEK]).to_numpy()
    if (out[WEEK].dt.dayofweek != 0).any():
        raise ScenarioError(WEEK, "must be a Monday")
    unknown = sorted(set(out[INCENTIVE_TYPE]) - set(SCENARIO_TYPES))
    if unknown:
        raise ScenarioError(
            INCENTIVE_TYPE, f"unknown type {unknown[0]!r}; one of {', '.join(SCENARIO_TYPES)}"
        )
    amt = out[INCENTIVE_AMOUNT]
    if amt.map(
        lambda v: isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating)
    ).any():
        raise ScenarioError(INCENTIVE_AMOUNT, "must be a number")
    out[INCENTIVE_AMOUNT] = amt.astype(np.float64)
    if not np.isfinite(out[INCENTIVE_AMOUNT]).all():
        raise ScenarioError(INCENTIVE_AMOUNT, "must be finite")
    if (out[INCENTIVE_AMOUNT] < 0).any():
        raise ScenarioError(INCENTIVE_AMOUNT, "must not be negative")
    if ((out[INCENTIVE_TYPE] == NO_INCENTIVE) & (out[INCENTIVE_AMOUNT] != 0)).any():
        raise ScenarioError(INCENTIVE_AMOUNT, f'must be 0 when incentive_type is "{NO_INCENTIVE}"')
    return out.reset_index(drop=True)


def without_incentive(frame: pd.DataFrame) -> pd.DataFrame:
    """The counterfactual of scenarios or feature rows: the same rows without
    any incentive (type ``"none"``, amount, depth and every treatment 0)."""
    out = frame.copy()
    out[INCENTIVE_TYPE] = NO_INCENTIVE
    out[INCENTIVE_AMOUNT] = 0.0
    for c in (INCENTIVE_DEPTH, *TREAT.values(), *DEPTH.values(), *INDICATORS.values(), *OFFERS.values()):
        if c in out.columns:
            out[c] = 0.0
    return out


def without_scenario(frame: pd.DataFrame) -> pd.DataFrame:
    """The counterfactual of served feature rows: the scenario's own incentive
    off, the programs that ran beside it (its background) still on. Equal to
    :func:`without_incentive` where nothing else ran."""
    out = without_incentive(frame)
    kind = frame[INCENTIVE_TYPE].astype(str).to_numpy()
    for t in INCENTIVE_TYPES:
        if TREAT[t] in frame.columns:
            keep = kind != t
            out[TREAT[t]] = np.where(keep, frame[TREAT[t]].to_numpy(np.float64), 0.0)
            out[DEPTH[t]] = np.where(keep, frame[DEPTH[t]].to_numpy(np.float64), 0.0)
    return out


def counterfactual_units(
    predict_fn: Callable[[pd.DataFrame], Any], frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Units of each feature row as it is and without any incentive, in one call."""
    both = pd.concat([frame, without_incentive(frame)], ignore_index=True)
    units = np.asarray(predict_fn(both), np.float64)
    return units[: len(frame)], units[len(frame) :]


def scenario_units(
    predict_fn: Callable[[pd.DataFrame], Any], frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units of served feature rows with the scenario, without it (the
    background still on) and without any incentive, in one call: the three
    inputs of ``roi.roi_columns``."""
    n = len(frame)
    stacked = pd.concat([frame, without_scenario(frame), without_incentive(frame)], ignore_index=True)
    units = np.asarray(predict_fn(stacked), np.float64)
    return units[:n], units[n : 2 * n], units[2 * n :]


def crowding(frame: pd.DataFrame, uptake: Mapping[str, float]) -> np.ndarray:
    """Per served feature row, the share of the regular buyers still free to
    take the scenario's incentive: a program beside it that pays more is taken
    first, by its uptake share, ``prod (1 - uptake_q)`` over those; one that
    pays the same goes first or second with even odds (``1 - uptake_q / 2``).
    A richer program of the scenario's own type that ran there (its ``RAN``
    depth above the scenario's) goes first too: two programs of one type
    often overlap (a regional and a national cash rebate), and without this
    the poorer one was charged as if it had every taker (its take 0.90
    against the truth's 0.77 for cash rebates, development seed 301)."""
    kind = frame[INCENTIVE_TYPE].astype(str).to_numpy()
    own = frame[INCENTIVE_DEPTH].to_numpy(np.float64)
    out = np.ones(len(frame))
    for t in INCENTIVE_TYPES:
        if DEPTH[t] in frame.columns and t in uptake:
            other = np.where(kind != t, frame[DEPTH[t]].to_numpy(np.float64), 0.0)
            out *= np.where(
                other > own, 1.0 - uptake[t], np.where((other == own) & (other > 0), 1.0 - uptake[t] / 2, 1.0)
            )
            if RAN[t] in frame.columns:  # a richer program of the scenario's own type ran there
                same = np.where(kind == t, np.nan_to_num(frame[RAN[t]].to_numpy(np.float64)), 0.0)
                out *= np.where(same > own, 1.0 - uptake[t], 1.0)
    return out


def reported_context(feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The context cell an answer names: the cell whose context row answered
    (``CONTEXT_*``, which the network's embeddings read), or, for a week
    filled from a coarser row (:func:`fill_merged_weeks`), that row, whose
    units the answer comes from."""
    region = feats[CONTEXT_REGION].to_numpy(dtype=object)
    model = feats[CONTEXT_MODEL].to_numpy(dtype=object)
    if FILLED_REGION not in feats.columns:
        return region, model
    was = feats[FILLED_REGION].fillna("").astype(str).to_numpy() != ""
    return (
        np.where(was, feats[FILLED_REGION].to_numpy(dtype=object), region),
        np.where(was, feats[FILLED_MODEL].to_numpy(dtype=object), model),
    )


def _resolve_cells(pairs: pd.DataFrame, context: pd.DataFrame) -> pd.DataFrame:
    """(region, vehicle_model) of the request -> the context cell that serves it:
    the exact cell, else the coarser cell the master merged it into."""
    keys = context[[REGION, VEHICLE_MODEL, CELL_LEVEL, SEGMENT, SUPER_REGION]].drop_duplicates(
        [REGION, VEHICLE_MODEL]
    )
    known = set(zip(keys[REGION], keys[VEHICLE_MODEL], strict=True))
    fine_region = keys[keys[CELL_LEVEL].isin(("region_model", "region_segment"))]
    super_of = dict(zip(fine_region[REGION], fine_region[SUPER_REGION], strict=True))
    fine_model = keys[keys[CELL_LEVEL].isin(("region_model", "super_region_model"))]
    segment_of = dict(zip(fine_model[VEHICLE_MODEL], fine_model[SEGMENT], strict=True))
    regions = set(keys[REGION]) | set(super_of)
    models = set(keys[VEHICLE_MODEL]) | set(segment_of)
    out_r, out_m = [], []
    for region, model in zip(pairs[REGION], pairs[VEHICLE_MODEL], strict=True):
        if region not in regions:
            raise ScenarioError(REGION, f"unknown region {region!r}")
        if model not in models:
            raise ScenarioError(VEHICLE_MODEL, f"unknown vehicle model {model!r}")
        sup, seg = super_of.get(region, region), segment_of.get(model, model)
        for r, mm in ((region, model), (sup, model), (region, seg), (sup, seg)):
            if (r, mm) in known:
                out_r.append(r)
                out_m.append(mm)
                break
        else:
            raise ScenarioError(VEHICLE_MODEL, f"no data for {model!r} in region {region!r}")
    return pd.DataFrame(
        {
            REGION: pairs[REGION].to_numpy(),
            VEHICLE_MODEL: pairs[VEHICLE_MODEL].to_numpy(),
            "_r": out_r,
            "_m": out_m,
        }
    )


def scenario_features(
    scenarios: pd.DataFrame, context: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC
) -> pd.DataFrame:
    """Feature rows (same order as ``scenarios``): the scenario's own columns,
    calendar features from its week, the cell context from ``context``
    (:func:`build_context`) and ``incentive_depth``. Columns the scenarios carry
    besides (``units``, ``incentive_share``) are kept."""
    s = scenarios.reset_index(drop=True).copy()
    s[WEEK] = to_week(s[WEEK]).to_numpy()
    pairs = s[[REGION, VEHICLE_MODEL]].drop_duplicates()
    cells = _resolve_cells(pairs, context)
    s = s.merge(cells, on=[REGION, VEHICLE_MODEL], how="left", sort=False)
    bounds = context.groupby([REGION, VEHICLE_MODEL], sort=False)[WEEK_INDEX].agg(["min", "max"])
    lohi = bounds.reindex(pd.MultiIndex.from_arrays([s["_r"], s["_m"]]))
    s[WEEK_INDEX] = np.clip(_week_index(s[WEEK]), lohi["min"].to_numpy(), lohi["max"].to_numpy())
    own = ((s["_r"] == s[REGION]) & (s["_m"] == s[VEHICLE_MODEL])).to_numpy()
    scale = np.ones(len(s))
    if ANSWER_REGION in context.columns:
        # a fine cell's week that k-anonymity merged: answered by that coarser row, scaled
        ans = context[[REGION, VEHICLE_MODEL, WEEK_INDEX, ANSWER_REGION, ANSWER_MODEL, CELL_SHARE]]
        ans = ans.rename(columns={REGION: "_r", VEHICLE_MODEL: "_m"})
        a = s[["_r", "_m", WEEK_INDEX]].merge(ans, on=["_r", "_m", WEEK_INDEX], how="left", sort=False)
        moved = (a[ANSWER_REGION].fillna("") != "").to_numpy() & own
        s.loc[moved, "_r"] = a.loc[moved, ANSWER_REGION].to_numpy()
        s.loc[moved, "_m"] = a.loc[moved, ANSWER_MODEL].to_numpy()
        scale = np.where(moved, a[CELL_SHARE].to_numpy(np.float64), 1.0)
    ctx_cols = [c for c in context.columns if c not in (REGION, VEHICLE_MODEL, WEEK, WEEK_INDEX)]
    ctx = context[[REGION, VEHICLE_MODEL, WEEK_INDEX, *ctx_cols]].rename(
        columns={REGION: "_r", VEHICLE_MODEL: "_m"}
    )
    drop = [c for c in ctx_cols if c in s.columns]
    s = s.drop(columns=drop).merge(ctx, on=["_r", "_m", WEEK_INDEX], how="left", sort=False)
    if UNKNOWN_SHARE in s.columns:  # a cell never published on its own: one member of the coarser row
        scale = np.where(own, scale, s[UNKNOWN_SHARE].to_numpy(np.float64))
    s[CELL_SCALE] = scale
    cal = calendar_features(s[WEEK])
    for c in CALENDAR_ALL:
        s[c] = cal[c].to_numpy()
    s[INCENTIVE_AMOUNT] = s[INCENTIVE_AMOUNT].astype(np.float64)
    s[INCENTIVE_DEPTH] = np.where(s[MSRP] > 0, s[INCENTIVE_AMOUNT] / s[MSRP].where(s[MSRP] > 0, 1.0), 0.0)
    kind = s[INCENTIVE_TYPE].astype(str).to_numpy()
    msrp = s[MSRP].where(s[MSRP] > 0, np.nan).to_numpy(np.float64)
    for t in INCENTIVE_TYPES:
        if INDICATORS[t] in s.columns:  # a master row: every type that was active, at its offer
            on = s[INDICATORS[t]].to_numpy(np.float64) > 0
            amount = s[OFFERS[t]] if OFFERS[t] in s.columns else s[INCENTIVE_AMOUNT]
        else:  # a served scenario: its one type, on top of the others that ran (background)
            on = kind == t
            amount = s[INCENTIVE_AMOUNT]
        depth = np.nan_to_num(amount.to_numpy(np.float64) / msrp, nan=0.0)
        s[TREAT[t]] = on.astype(np.float64)
        s[DEPTH[t]] = np.where(on, depth, 0.0)
        if spec.background and INDICATORS[t] not in s.columns and RAN[t] in s.columns:
            ran = s[RAN[t]].fillna(0.0).to_numpy(np.float64)
            beside = (kind != t) & (ran > 0)
            s[TREAT[t]] = np.where(beside, 1.0, s[TREAT[t]].to_numpy())
            s[DEPTH[t]] = np.where(beside, ran, s[DEPTH[t]].to_numpy())
    s = s.rename(columns={"_r": CONTEXT_REGION, "_m": CONTEXT_MODEL})
    if FILLED_LEVEL in s.columns:  # a week filled from a coarser row: report that row's level
        was = s[FILLED_LEVEL].fillna("").astype(str).to_numpy() != ""
        s[CELL_LEVEL] = np.where(was, s[FILLED_LEVEL], s[CELL_LEVEL])
    missing = [c for c in spec.numeric if c not in s.columns]
    if missing:
        raise KeyError(f"context table lacks feature columns {missing}")
    return s


def training_frame(master: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC) -> pd.DataFrame:
    """Master rows as feature rows with the ``units`` target, through the
    serving path (observed scenario + context of the same master)."""
    return scenario_features(observed_scenarios(master), build_context(master, spec), spec)


def estimate_take_rates(frame: pd.DataFrame) -> dict[str, float]:
    """Per incentive type, the share of a cell's units sold under its program
    (the take rate), from the master's share of units sold under any program:
    ``sum(incentive_share x units) / sum(units)`` over the cell-weeks where the
    type ran alone (where it never did: where it was the dominant type). Empty
    without ``incentive_share`` or the ``active_<type>`` columns: the ROI then
    charges the incentive on every predicted unit (take rate 1).

    Measured on the simulator's ground truth, these rates reproduce its ROI
    better than a least-squares split of overlapping weeks (which the order in
    which buyers take stacked programs distorts)."""
    units, under, rows_of = _rows_per_type(frame)
    rates: dict[str, float] = {}
    for t, rows in rows_of.items():
        if units[rows].sum() > 0:
            rates[t] = float(min(1.0, max(under[rows].sum() / units[rows].sum(), 1e-3)))
    return rates


def _rows_per_type(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The rows that measure each incentive type's take (the cell-weeks where it
    ran alone; where it never did, where it dominated), with the units and the
    units sold under a program; no types without ``incentive_share`` or the
    indicator columns."""
    present = [t for t in INCENTIVE_TYPES if INDICATORS[t] in frame.columns]
    units = frame[UNITS].to_numpy(np.float64)
    if MASTER_SHARE not in frame.columns or not present:
        return units, np.zeros_like(units), {}
    active = frame[[INDICATORS[t] for t in present]].fillna(0).to_numpy(np.float64) > 0
    alone = active.sum(axis=1) == 1
    under = units * frame[MASTER_SHARE].fillna(0).to_numpy(np.float64)
    kind = frame[INCENTIVE_TYPE].astype(str).to_numpy()
    rows_of: dict[str, np.ndarray] = {}
    for i, t in enumerate(present):
        rows = alone & active[:, i]
        rows_of[t] = rows if units[rows].sum() > 0 else kind == t
    return units, under, rows_of


def estimate_uptake(frame: pd.DataFrame, predicted: Any, baseline: Any) -> dict[str, float]:
    """Per incentive type, the share of the buyers who would have bought anyway
    that take the incentive (its *uptake*), from the master's
    ``incentive_share`` and the model's own counterfactual.

    The buyers an incentive brings in all take it; of the others, a share
    ``u``. On a row where one type ran alone, with ``e`` the incremental share
    of its units (``1 - baseline / predicted``), ``share = e + u x (1 - e)``;
    ``u`` is solved for on the sum over those rows (where the type never ran
    alone: where it dominated). The cost then follows the scenario's own lift
    (``roi.roi_columns``): a deeper incentive is taken by more buyers, where a
    constant take rate per type (:func:`estimate_take_rates`) charges every
    depth the average one. Empty without ``incentive_share`` or indicators."""
    units, under, rows_of = _rows_per_type(frame)
    pred = np.asarray(predicted, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lifted = np.clip(np.where(pred > 0, 1.0 - base / np.where(pred > 0, pred, 1.0), 0.0), 0.0, 1.0)
    brought = units * lifted
    out: dict[str, float] = {}
    for t, rows in rows_of.items():
        regular = (units - brought)[rows].sum()
        if regular > 0:
            out[t] = float(np.clip((under - brought)[rows].sum() / regular, 0.0, 1.0))
    return out


def estimate_pull_forward(
    predict_fn: Callable[[pd.DataFrame], Any], frame: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC
) -> dict[str, float]:
    """The share of an incentive's extra units that it borrows from the weeks
    after it (its pull-forward), read from the model: the units that ended
    programs take from the following weeks (the rows with ``ENDED`` columns
    as they are against zeroed) over the units programs add while they run
    (the rows where a type is on, against the same rows with it off), summed
    over every type. One share for every type that ran (clipped to 0..0.9).

    Why one: per type, the ratio rests on the few programs of that type that
    ended in the data; on a small world (8 cells) it read 0.9 for three types
    whose truth is 0.10-0.25, and the served lift collapsed with it. The
    pooled ratio rests on every program. Empty without the ``ENDED`` columns.

    The ROI counts an incentive's units net of this share (DESIGN.md): the
    buyers it pulled forward would have bought a few weeks later anyway."""
    if not spec.ended or not all(c in frame.columns for c in spec.ended_columns):
        return {}
    units = np.asarray(predict_fn(frame), np.float64).reshape(len(frame))
    gross, types = 0.0, []
    for t in spec.treatments:
        on = frame[TREAT[t]].to_numpy(np.float64) > 0
        if not on.any():
            continue
        off = frame.loc[on].copy()
        off[TREAT[t]] = 0.0
        off[DEPTH[t]] = 0.0
        gross += float((units[on] - np.asarray(predict_fn(off), np.float64).reshape(-1)).sum())
        types.append(t)
    cols = list(spec.ended_columns)
    ended: np.ndarray = np.asarray(frame[cols].to_numpy(np.float64).any(axis=1), dtype=bool)
    if gross <= 0 or not ended.any():
        return {}
    undipped = frame.loc[ended].copy()
    undipped[cols] = 0.0
    dip = float((np.asarray(predict_fn(undipped), np.float64).reshape(-1) - units[ended]).sum())
    share = float(np.clip(dip / gross, 0.0, 0.9))
    return dict.fromkeys(types, share)


def uptake_of(types: pd.Series | np.ndarray, uptake: Mapping[str, float]) -> np.ndarray:
    """The uptake of each row's incentive type (the mean of the others where none was measured)."""
    default = float(np.mean(list(uptake.values()))) if uptake else 1.0
    return np.array([uptake.get(str(t), default) for t in types], dtype=np.float64)


def pull_forward_of(types: pd.Series | np.ndarray, pull_forward: Mapping[str, float]) -> np.ndarray:
    """The pull-forward share of each row's incentive type (0 where none was read: ``"none"``)."""
    return np.array([pull_forward.get(str(t), 0.0) for t in types], dtype=np.float64)


def take_rate_of(types: pd.Series | np.ndarray, rates: Mapping[str, float]) -> np.ndarray:
    """The take rate of each row's incentive type (1.0 where none was measured)."""
    default = float(np.mean(list(rates.values()))) if rates else 1.0
    return np.array([rates.get(str(t), default) for t in types], dtype=np.float64)
