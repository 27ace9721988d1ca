"""Judge the deployed model on the weeks observed since its training data:
realized accuracy, the lift of the programs that ran, and input drift.

The predictions judged are the ones a client would have been served for what
actually happened: each new master row as its observed scenario, scored with
the artifact's own context (what the model knew when it was trained). That
needs no prediction log, so a cell nobody asked about is judged too.

Three tests, each against the model's own yardstick rather than a fixed
number, so a model that was always 20 % off is not flagged for being 20 % off:

- **accuracy**: the units WAPE of the observed weeks against the backtest WAPE
  the model was approved with;
- **groups**: per region and per segment, realized over predicted units in
  the latest one and two weeks against the weeks before them, each week read
  against its own level: a region whose demand just fell stands out, while a
  lasting error of the model in a region (its backtest had it too) does not;
  judged only beyond several standard errors;
- **lift**: per incentive type, the incremental units realized (actual units
  less the predicted baseline, both on the level of the untreated rows) over
  the incremental units predicted, relative to the same ratio in the model's
  backtest (``lift_ratio``).

Drift is the population stability index (PSI) of the market's own columns
(units, dealers per cell) between the model's training weeks and the new ones,
and categories the model has never seen (a new vehicle model). Incentive
columns are not judged for drift: they are the analysts' decisions, and a
change of plan is not a change of the market. PSI is a few lines of numpy with
the usual reading (0.1 a shift, 0.25 a large one); a library for it (Evidently,
NannyML) would add hundreds of megabytes to the components image for one
statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoroi.config import MonitoringConfig
from autoroi.evaluation.metrics import lift_calibration, units_metrics
from autoroi.model import features as F

OK, DEGRADED, DRIFT, NO_DATA = "ok", "degraded", "drift", "no_data"
STATUSES = (OK, DEGRADED, DRIFT, NO_DATA)
DRIFT_COLUMNS = (F.UNITS, F.DEALER_COUNT)
PSI_BINS = 10
ON = "on_"  # judged rows: on_<type> is True where a program of the type ran
Z_GAP = 4.5  # standard errors a group's or a type's gap must exceed to count
MIN_PRIOR_WEEKS = 2  # observed weeks before the latest that a change is read against
REFERENCE_WEEKS = 52


@dataclass(frozen=True)
class Judged:
    """The observed rows the model could be scored on, and its predictions."""

    rows: pd.DataFrame  # observed scenario columns, segment, units, predicted, baseline, treated
    unknown: dict[str, list[str]]  # categories of new rows the model has never seen
    unresolved: list[str]  # cells of the new weeks at a level the model has no answer for


def observed_weeks(master: pd.DataFrame, trained_until: pd.Timestamp, max_weeks: int) -> pd.DataFrame:
    """Master rows after the model's data, at most the ``max_weeks`` latest
    complete weeks and the newest week, which may still be filling (a batch of
    changes ends on any weekday); ``complete`` tells them apart."""
    m = F.normalize_master(master)
    weeks = pd.to_datetime(m[F.WEEK])
    newest = weeks.max()
    new = m[weeks > trained_until]
    keep = sorted(pd.to_datetime(new[F.WEEK]).unique())[-(max_weeks + 1) :]
    out = new[pd.to_datetime(new[F.WEEK]).isin(keep)].reset_index(drop=True)
    out["complete"] = (pd.to_datetime(out[F.WEEK]) < newest).to_numpy()
    return out


def predict_observed(model: Any, rows: pd.DataFrame) -> Judged:
    """Predicted units with the incentives that ran and without any (the
    baseline), through the artifact's features and context."""
    ctx = model.context
    known_r, known_m = set(ctx[F.REGION].astype(str)), set(ctx[F.VEHICLE_MODEL].astype(str))
    unknown = {
        F.REGION: sorted(set(rows[F.REGION].astype(str)) - known_r),
        F.VEHICLE_MODEL: sorted(set(rows[F.VEHICLE_MODEL].astype(str)) - known_m),
    }
    ok = rows[F.REGION].astype(str).isin(known_r) & rows[F.VEHICLE_MODEL].astype(str).isin(known_m)
    rows = rows[ok].reset_index(drop=True)
    rows, unresolved = _answerable(rows, ctx, model.spec)
    out = pd.DataFrame(columns=[F.REGION, F.VEHICLE_MODEL, F.SEGMENT, F.WEEK, F.UNITS])
    if len(rows):
        feats = F.scenario_features(F.observed_scenarios(rows), ctx, model.spec)
        scale = feats[F.CELL_SCALE].to_numpy(np.float64)
        both = pd.concat([feats, F.without_incentive(feats)], ignore_index=True)
        units = np.asarray(model.predict_features(both), np.float64)
        n = len(feats)
        out = pd.DataFrame(
            {
                F.REGION: rows[F.REGION].astype(str).to_numpy(),
                F.VEHICLE_MODEL: rows[F.VEHICLE_MODEL].astype(str).to_numpy(),
                F.SEGMENT: rows[F.SEGMENT].astype(str).to_numpy()
                if F.SEGMENT in rows.columns
                else feats[F.SEGMENT].astype(str).to_numpy(),
                F.WEEK: pd.to_datetime(rows[F.WEEK]).dt.strftime("%Y-%m-%d").to_numpy(),
                F.INCENTIVE_TYPE: feats[F.INCENTIVE_TYPE].astype(str).to_numpy(),
                F.UNITS: rows[F.UNITS].to_numpy(np.float64),
                "predicted": units[:n] * scale,
                "baseline": units[n:] * scale,
                **{
                    ON + t: feats[F.TREAT[t]].to_numpy(np.float64) > 0
                    for t in F.INCENTIVE_TYPES
                    if F.TREAT[t] in feats.columns
                },
                "complete": rows["complete"].to_numpy(bool) if "complete" in rows.columns else True,
            }
        )
    out["treated"] = out.get(F.INCENTIVE_TYPE, pd.Series(dtype=str)) != F.NO_INCENTIVE
    return Judged(out, {k: v for k, v in unknown.items() if v}, unresolved)


def _answerable(rows: pd.DataFrame, ctx: pd.DataFrame, spec: Any) -> tuple[pd.DataFrame, list[str]]:
    """Rows whose cell the model can answer; k-anonymity may merge a cell of
    the new weeks into a coarser row than any the model was trained with
    (a segment of a region), which no answer exists for: those are left out
    and named."""
    pairs = rows[[F.REGION, F.VEHICLE_MODEL]].drop_duplicates()
    try:
        F.scenario_features(F.observed_scenarios(rows.loc[pairs.index]), ctx, spec)
        return rows, []
    except F.ScenarioError:
        pass
    bad = []
    for i in pairs.index:
        try:
            F.scenario_features(F.observed_scenarios(rows.loc[[i]]), ctx, spec)
        except F.ScenarioError:
            bad.append((str(rows.at[i, F.REGION]), str(rows.at[i, F.VEHICLE_MODEL])))
    keep = ~pd.Series(
        list(zip(rows[F.REGION].astype(str), rows[F.VEHICLE_MODEL].astype(str), strict=True))
    ).isin(bad)
    return rows[keep.to_numpy()].reset_index(drop=True), [f"{m} in {r}" for r, m in bad]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index over the reference's quantile bins."""
    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    if not len(reference) or not len(current):
        return math.nan
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    p = np.maximum(ref / ref.sum(), 1e-4)
    q = np.maximum(cur / cur.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _gap_z(actual: float, expected: float, n_rows: int, rel_sd: float) -> float:
    """How many standard errors ``actual`` is from ``expected``: count noise
    plus the model's own relative error per row (its backtest WAPE), which
    does not average away within a group as fast as counts do."""
    var = max(expected, 1.0) + (rel_sd * expected) ** 2 / max(n_rows, 1)
    return abs(actual - expected) / math.sqrt(var)


def group_changes(rows: pd.DataFrame, by: str, cfg: MonitoringConfig, span: int = 1) -> list[dict[str, Any]]:
    """Per group, its realized-over-predicted units in the latest ``span``
    weeks against the weeks before them, each week read against that week's
    own level (so a week still filling, short on every group alike, counts
    too): a model's lasting error in a group cancels, and what is left is what
    just changed. The spread beyond counting noise comes from the earlier weeks."""
    weeks = sorted(rows[F.WEEK].unique())
    if len(weeks) < span + MIN_PRIOR_WEEKS:
        return []
    recent = set(weeks[-span:])
    sums = rows.groupby([F.WEEK, by], sort=True)[[F.UNITS, "predicted"]].sum()
    week_sums = rows.groupby(F.WEEK, sort=True)[[F.UNITS, "predicted"]].sum()
    level = (week_sums[F.UNITS] / week_sums["predicted"].clip(lower=1e-9)).rename("level")
    g = sums.reset_index().merge(level.reset_index(), on=F.WEEK)
    g["rel"] = np.log((g[F.UNITS] + 0.5) / (g["predicted"] * g["level"] + 0.5))
    g["noise"] = 1.0 / (g[F.UNITS] + 0.5)
    g["expected"] = g["predicted"] * g["level"]
    prior = g[~g[F.WEEK].isin(recent)]
    latest = g[g[F.WEEK].isin(recent)].groupby(by)[[F.UNITS, "expected"]].sum()
    latest["rel"] = np.log((latest[F.UNITS] + 0.5) / (latest["expected"] + 0.5))
    latest["noise"] = 1.0 / (latest[F.UNITS] + 0.5)
    dev = prior["rel"] - prior.groupby(by)["rel"].transform("mean")
    counts = prior.groupby(by)["rel"].transform("size")
    total_var = float((dev**2 * counts / (counts - 1).clip(lower=1)).mean())
    excess = max(0.0, total_var - float(prior["noise"].mean()))
    out = []
    for name, p in prior.groupby(by, sort=True):
        if name not in latest.index:
            continue
        now = {c: float(latest[c].loc[name]) for c in (F.UNITS, "expected", "rel", "noise")}
        change = now["rel"] - float(p["rel"].mean())
        n = len(p)
        var = excess * (1 / span + 1 / n) + now["noise"] + float(p["noise"].mean()) / n
        z = abs(change) / math.sqrt(var)
        flagged = bool(
            now[F.UNITS] + now["expected"] >= 2 * cfg.min_group_units
            and abs(math.expm1(change)) > cfg.group_bias_max
            and z > Z_GAP
        )
        out.append(
            {
                by: str(name),
                "window": f"change_{span}",
                "ratio": round(math.exp(change), 4),
                "z": round(z, 2),
                "actual_units": round(now[F.UNITS], 2),
                "predicted_units": round(now["expected"], 2),
                "prior_weeks": n,
                "flagged": flagged,
            }
        )
    return out


def _reference(references: Mapping[str, Any], key: str) -> float:
    v = references.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) and v > 0 else math.nan


def _calibration(treated: pd.DataFrame, untreated: pd.DataFrame) -> dict[str, float]:
    both = pd.concat([treated, untreated])
    return lift_calibration(both[F.UNITS], both["predicted"], both["baseline"], both["treated"])


def _lift(
    rows: pd.DataFrame, references: Mapping[str, Any], cfg: MonitoringConfig, rel_sd: float
) -> dict[str, Any]:
    """Per incentive type (the cell-weeks where it ran, beside others or
    alone), realized over predicted lift, read two ways:

    - against the type's figure in the model's backtest (``lift_ratio_<type>``),
      reported, not alarmed on: that figure comes from other programs, and the
      model's lift error differs from program to program by more than that
      (a 2.4x gap on an ordinary week of the medium-scale bench);
    - the latest one and two weeks against the observed weeks before them
      (:func:`_lift_change`)."""
    treated = rows["treated"].to_numpy()
    untreated = rows[~treated]
    lo, hi = cfg.lift_ratio_range
    by_type: list[dict[str, Any]] = []
    for t in F.INCENTIVE_TYPES:
        if ON + t not in rows.columns or not rows[ON + t].any():
            continue
        g = rows[rows[ON + t].to_numpy(bool)]
        c = _calibration(g, untreated)
        ref = _reference(references, f"lift_ratio_{t}")
        judged = (
            math.isfinite(ref)
            and c["predicted_incremental"] >= cfg.min_program_units
            and float(untreated[F.UNITS].sum()) >= cfg.min_group_units  # a level to read the lift on
        )
        ratio = c["lift_ratio"] / ref if math.isfinite(ref) else c["lift_ratio"]
        z = _gap_z(float(g[F.UNITS].sum()), c["level"] * float(g["predicted"].sum()), len(g), rel_sd)
        entry: dict[str, Any] = {
            F.INCENTIVE_TYPE: str(t),
            "cells": len(g),
            "predicted_incremental_units": round(c["predicted_incremental"], 2),
            "realized_incremental_units": round(c["realized_incremental"], 2),
            "ratio": round(ratio, 4),
            "reference_ratio": round(ref, 4) if math.isfinite(ref) else None,
            "z": round(z, 2),
            "outside": bool(judged and not lo <= ratio <= hi and z > Z_GAP),
            "flagged": False,
        }
        for span in (1, 2):
            change = _lift_change(g, untreated, span, cfg)
            if change is not None:
                entry[f"change_{span}"] = change
        by_type.append(entry)
    pooled = lift_calibration(rows[F.UNITS], rows["predicted"], rows["baseline"], treated)
    pooled_ref = _reference(references, "lift_ratio")
    return {
        "cells": int(treated.sum()),
        "predicted_incremental_units": round(pooled["predicted_incremental"], 2),
        "realized_incremental_units": round(pooled["realized_incremental"], 2),
        "ratio": round(pooled["lift_ratio"] / (pooled_ref if math.isfinite(pooled_ref) else 1.0), 4)
        if math.isfinite(pooled["lift_ratio"])
        else None,
        "reference_ratio": round(pooled_ref, 4) if math.isfinite(pooled_ref) else None,
        "flagged": any(
            r["flagged"] or any(r.get(f"change_{n}", {}).get("flagged", False) for n in (1, 2))
            for r in by_type
        ),
        "by_type": by_type,
    }


def _lift_change(
    g: pd.DataFrame, untreated: pd.DataFrame, span: int, cfg: MonitoringConfig
) -> dict[str, Any] | None:
    """One type's realized lift in the latest ``span`` weeks against the
    weeks before, in the cells where it ran in both (a new program of the type
    elsewhere is not a change). Each row's baseline is read on the level of
    the untreated rows of its segment and week, so a seasonal swing of one
    segment that the model missed is not taken for a change of lift. The gap
    is what the latest weeks' units would be had the ratio stayed, in standard
    errors of the cells' own spread around that in the weeks before (at least
    counting noise)."""
    weeks = sorted(g[F.WEEK].unique())
    if len(weeks) < span + 1:
        return None
    recent = set(weeks[-span:])
    cells = [F.REGION, F.VEHICLE_MODEL]
    both = (
        g[g[F.WEEK].isin(recent)][cells]
        .drop_duplicates()
        .merge(g[~g[F.WEEK].isin(recent)][cells].drop_duplicates(), on=cells)
    )
    rows = g.merge(both, on=cells)
    if rows.empty:
        return None
    key = [F.WEEK, F.SEGMENT]
    u = untreated.groupby(key)[[F.UNITS, "predicted"]].sum()
    w = untreated.groupby(F.WEEK)[[F.UNITS, "predicted"]].sum()
    seg_level = (u[F.UNITS] / u["predicted"].clip(lower=1e-9)).where(u[F.UNITS] >= cfg.min_group_units / 5)
    week_level = (w[F.UNITS] / w["predicted"].clip(lower=1e-9)).where(w[F.UNITS] >= cfg.min_group_units)
    joined = rows.join(seg_level.rename("lvl"), on=key)["lvl"]
    lvl = joined.fillna(rows[F.WEEK].map(week_level)).to_numpy(np.float64)
    # a week with no untreated rows to read the level on cannot tell lift
    # from level (a broad program that runs everywhere): not judged
    known = np.isfinite(lvl)
    rows, lvl = rows[known], lvl[known]
    a, p, b = (rows[c].to_numpy(np.float64) for c in (F.UNITS, "predicted", "baseline"))
    now = rows[F.WEEK].isin(recent).to_numpy()
    if not now.any() or now.all():
        return None

    def ratio(m: np.ndarray) -> float:
        predicted = float((lvl[m] * (p[m] - b[m])).sum())
        return float((a[m] - lvl[m] * b[m]).sum()) / predicted if predicted > 0 else math.nan

    before_ratio = ratio(~now)
    if not (float((lvl[~now] * (p[~now] - b[~now])).sum()) >= cfg.min_program_units and before_ratio > 0):
        return None
    expected = lvl * (b + before_ratio * (p - b))
    dispersion = max(1.0, float(((a[~now] - expected[~now]) ** 2).sum() / max(expected[~now].sum(), 1.0)))
    z = abs(float(a[now].sum() - expected[now].sum())) / math.sqrt(dispersion * max(expected[now].sum(), 1.0))
    change = ratio(now) / before_ratio
    lo, hi = cfg.lift_ratio_range
    return {
        "ratio": round(change, 4),
        "z": round(z, 2),
        "cells": len(both),
        "flagged": bool(not lo <= change <= hi and z > Z_GAP),
    }


def _level(rows: pd.DataFrame, cfg: MonitoringConfig) -> float:
    """Realized over predicted units of the untreated rows (all rows when too
    few are untreated): the yardstick groups and lifts are read against."""
    untreated = rows[~rows["treated"]]
    base = untreated if untreated[F.UNITS].sum() >= cfg.min_group_units else rows
    return float(base[F.UNITS].sum() / max(base["predicted"].sum(), 1e-9))


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, unknown: dict[str, list[str]], threshold: float
) -> dict[str, Any]:
    feats = []
    for c in DRIFT_COLUMNS:
        if c in reference.columns and c in current.columns:
            v = psi(reference[c].to_numpy(np.float64), current[c].to_numpy(np.float64))
            feats.append({"feature": c, "value": round(v, 4), "drifted": bool(v > threshold)})
    drifted = [f["feature"] for f in feats if f["drifted"]]
    drifted += [f"{k}: {', '.join(v)}" for k, v in unknown.items()]
    return {
        "statistic": "psi",
        "threshold": threshold,
        "features": feats,
        "unknown_categories": unknown,
        "drifted": drifted,
    }


def judge(
    model: Any,
    master: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    reference_wape: float,
    reference_lifts: Mapping[str, Any] | None = None,
    cfg: MonitoringConfig,
) -> dict[str, Any]:
    """The monitor's figures and status for ``master`` (the new master table)
    against ``model`` trained on ``reference`` (its master table);
    ``reference_wape`` and ``reference_lifts`` (``lift_ratio``,
    ``lift_ratio_<type>``) are its backtest's."""
    ref = F.normalize_master(reference)
    trained_until = pd.to_datetime(ref[F.WEEK]).max()
    rows = observed_weeks(master, trained_until, cfg.max_weeks)
    judged = predict_observed(model, rows)
    r = judged.rows
    ref_weeks = sorted(pd.to_datetime(ref[F.WEEK]).unique())[-REFERENCE_WEEKS:]
    ref_rows = ref[pd.to_datetime(ref[F.WEEK]).isin(ref_weeks)]
    drift = drift_report(ref_rows, rows, judged.unknown, cfg.drift_threshold)
    reasons: list[str] = []
    if r.empty:
        status = DRIFT if drift["drifted"] else NO_DATA
        if drift["drifted"]:
            reasons.append(f"drift: {'; '.join(drift['drifted'])}")
        return {"status": status, "reasons": reasons, "accuracy": {"weeks": 0, "rows": 0}, "drift": drift}

    full = r[r["complete"]]  # accuracy: complete weeks only
    actual, pred = full[F.UNITS].to_numpy(), full["predicted"].to_numpy()
    level = _level(r, cfg)
    rel_sd = max(reference_wape, 0.05) * math.sqrt(math.pi / 2)  # WAPE ~ mean |error| ~ sd sqrt(2/pi)
    overall = units_metrics(actual, pred)["wape"]
    ratio = overall / reference_wape if reference_wape > 0 else math.nan
    by_week = [
        {
            F.WEEK: str(w),
            "wape": round(units_metrics(g[F.UNITS], g["predicted"])["wape"], 4),
            "actual_units": round(float(g[F.UNITS].sum()), 2),
            "predicted_units": round(float(g["predicted"].sum()), 2),
            "rows": len(g),
        }
        for w, g in full.groupby(F.WEEK, sort=True)
    ]
    # groups: what changed in the latest one and two weeks against the weeks
    # before (a model's lasting error in a region, which its backtest had
    # too, is not news); on base demand only (a model's error on one type's
    # lift is the lift test's, and would otherwise show up where it ran)
    plain = r[~r["treated"]]
    groups = [
        g for by in (F.REGION, F.SEGMENT) for span in (1, 2) for g in group_changes(plain, by, cfg, span)
    ]
    lift = _lift(r, reference_lifts or {}, cfg, rel_sd)

    if ratio > cfg.wape_ratio_max:
        reasons.append(
            f"units WAPE {overall:.3f} is {ratio:.2f}x the backtest's {reference_wape:.3f}"
            f" (limit {cfg.wape_ratio_max:g}x)"
        )
    for g in groups:
        if g["flagged"]:
            name = g.get(F.REGION) or g.get(F.SEGMENT)
            when = {
                "latest": "in the latest week",
                "change_1": "in the latest week, against the weeks before",
                "change_2": "in the latest two weeks, against the weeks before",
            }.get(g["window"], "over the observed weeks")
            reasons.append(
                f"{name}: realized units {g['ratio']:.2f}x the predicted {when} ({g['actual_units']:.0f}"
                f" vs {g['predicted_units']:.0f}, {g['z']:.1f} standard errors)"
            )
    for t in lift["by_type"]:
        name = t[F.INCENTIVE_TYPE]
        for n in (1, 2):
            c = t.get(f"change_{n}") or {}
            if c.get("flagged"):
                weeks = "week" if n == 1 else "two weeks"
                reasons.append(
                    f"{name}: realized lift in the latest {weeks} {c['ratio']:.2f}x that of the weeks before,"
                    f" same cells ({c['z']:.1f} standard errors)"
                )
    degraded = bool(reasons)
    if drift["drifted"]:
        reasons.append(f"drift: {'; '.join(drift['drifted'])}")
    status = DEGRADED if degraded else DRIFT if drift["drifted"] else OK
    return {
        "status": status,
        "reasons": reasons,
        "accuracy": {
            "weeks": len(by_week),
            "rows": len(full),
            "wape": round(overall, 4),
            "reference_wape": round(reference_wape, 4),
            "ratio": round(ratio, 4),
            "level": round(level, 4),
            "unanswered_cells": judged.unresolved,
            "by_week": by_week,
            "by_group": groups,
            "lift": lift,
        },
        "drift": drift,
    }
