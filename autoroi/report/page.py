"""The training report: one self-contained HTML page a reviewer reads before
approving a model version (``report.html`` in the registry).

Self-contained: inline CSS, charts as inline SVG (``autoroi.report.svg``), no
script, no font, no image or link that leaves the page; it opens from a file
with no network. Every string from the inputs is escaped (``html.escape``).

Inputs (plain data, so the page can be rendered and tested without training;
:func:`report_inputs` builds them from ``Validation`` and ``TuningResult``):

``version``, ``master_version``, ``digest``, ``code_version``, ``created_at``, ``status``
    strings for the header (any may be ``None``).
``gate``
    ``{"passed": bool, "reasons": [str], "checks": [{"name", "passed", "detail",
    "value", "threshold"}]}`` (``GateDecision.to_dict()``).
``metrics``
    ``{model: {metric: number}}`` pooled over the backtest folds
    (``BacktestResult.metrics``). ``"candidate"`` is the version under review,
    ``"production"`` the deployed model (when there is one); every other key is
    a baseline (``seasonal_naive``, ``poisson_glm``, ``hist_gbm``). Metrics used:
    ``wape``, ``mae``, ``rmse``, ``roi_mae``, ``roi_spearman``, ``roi_bias``,
    ``roi_balanced_accuracy``, ``roi_auc``, ``wape_truth_cells``; missing ones show as "—".
``oracle``
    ``{"wape": number, "rows": number}``: the truth's expected units against
    actual units (the noise floor), or ``None``.
``predictions``
    DataFrame, one row per backtest test row (``BacktestResult.predictions``):
    ``fold``, ``region``, ``segment``, ``week_start``, ``units`` (actual) and one
    column of predicted units per model named as in ``metrics``.
``roi``
    DataFrame, long, one row per (truth cell, model) (``BacktestResult.roi``):
    ``model``, ``incentive_type``, ``incentive_depth`` (amount / MSRP), ``roi``
    (predicted) and, where a ground truth is known, ``true_roi``. ``None`` or
    empty: the section says that ROI could not be checked.
``trials``
    the tuner's trials (``TuningResult.trials``): ``trial_id``, ``status``,
    ``hyperparameters`` (dict), ``val_loss``, ``best_epochs``, ``epochs_run``,
    ``seconds``.
``tuning``
    the search's summary: ``best_hyperparameters``, ``best_epochs``,
    ``best_score``, ``stopped_by``, ``seconds``, ``resumed`` (any subset).
``hyperparameters``
    the final model's hyperparameters.
``fold_metrics``
    ``[{"fold", "model", metric: number, ...}]`` (``BacktestResult.fold_metrics``).
``folds``
    ``[{"index", "test_start", "test_end"}]`` (``Fold.to_dict()``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from autoroi.report.svg import ACTUAL_COLOR, PALETTE, bar_chart, esc, fmt, line_chart, scatter_chart

CANDIDATE = "candidate"
PRODUCTION = "production"
ORACLE = "oracle"
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, heading, better ("min", "max", "zero" or "one": nearest that value)
    ("wape", "units WAPE", "min"),
    ("mae", "units MAE", "min"),
    ("rmse", "units RMSE", "min"),
    ("roi_mae", "ROI MAE", "min"),
    ("roi_spearman", "ROI Spearman", "max"),
    ("roi_bias", "ROI mean bias", "zero"),
    ("roi_balanced_accuracy", "pays back: balanced accuracy", "max"),
    ("roi_auc", "pays back: AUC", "max"),
    ("step_ratio", "program starts/ends: predicted / actual jump", "one"),
    ("lift_ratio", "programs: realized / predicted lift (no truth)", "one"),
    ("wape_truth_cells", "WAPE on truth cells", "min"),
)
DEPTH_EDGES = (0.0, 0.02, 0.04, 0.06, 0.08, math.inf)
_NOT_MODELS = frozenset(
    {
        "fold",
        "region",
        "vehicle_model",
        "segment",
        "cell_level",
        "week_start",
        "incentive_type",
        "units",
        "incentive_amount",
        "incentive_depth",
    }
)
SECTIONS = (
    ("summary", "Version"),
    ("gate", "Gate decision"),
    ("models", "Candidate, baselines and production"),
    ("units", "Predicted vs actual units"),
    ("errors", "Error by region and segment"),
    ("roi", "ROI by incentive type and depth"),
    ("programs", "Programs that ran"),
    ("tuning", "Hyperparameter search"),
    ("folds", "Backtest folds"),
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.5rem;margin:.6em 0 .2em}h2{font-size:1.15rem;margin:0 0 .6em}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:16px 0}
nav{font-size:.9rem}nav a{margin-right:12px;color:#1f4e9c}
table{border-collapse:collapse;font-size:.86rem;margin:.4em 0 .8em}
th,td{border-bottom:1px solid #e5e8eb;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.text,th.text{text-align:left}
th{background:#f0f2f5;font-weight:600}
td.best{font-weight:700;background:#e7f5ec}
tr.highlight td{background:#eef3fb}
table.kv th{text-align:left;width:170px}table.kv td{text-align:left;font-family:ui-monospace,monospace}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;font-size:.9rem}
.pass{background:#d8f3e0;color:#146c2e}.fail{background:#fbe0e0;color:#a4161a}
.muted{color:#5c6670;font-size:.86rem}
ul.reasons li{color:#a4161a;margin:.2em 0}
svg.chart{max-width:100%;height:auto;margin:.4em 0 1em;display:block}
svg .grid{stroke:#e3e6ea;stroke-width:1}svg .zero{stroke:#888;stroke-width:1}
svg .tick{font-size:11px;fill:#5c6670}svg .axis-label{font-size:12px;fill:#33393f}
svg .legend{font-size:11px;fill:#33393f}svg .chart-title{font-size:13px;font-weight:600;fill:#1d232a}
svg .band0{fill:#f2f5fa}svg .band1{fill:#e8eef7}svg .band-label{font-size:10px;fill:#6c757d}
svg .diagonal{stroke:#d1495b;stroke-dasharray:4 3;stroke-width:1}svg .dot{fill:#1f4e9c;fill-opacity:.45}
"""


# --------------------------------------------------------------------------- helpers


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    text_cols: int = 1,
    best: Iterable[tuple[int, int]] = (),
    highlight_rows: Iterable[int] = (),
) -> str:
    best_cells = set(best)
    hl = set(highlight_rows)
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"text" if i < text_cols else ""}">{esc(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        out.append('<tr class="highlight">' if r in hl else "<tr>")
        for c, cell in enumerate(row):
            classes = [cls for cls, on in (("text", c < text_cols), ("best", (r, c) in best_cells)) if on]
            text = cell if isinstance(cell, str) else fmt(cell)
            out.append(f'<td class="{" ".join(classes)}">{esc(text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc('—' if v is None else v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    return f'<section id="{esc(key)}"><h2>{esc(title)}</h2>{body}</section>'


def _p(text: str, cls: str = "muted") -> str:
    return f'<p class="{cls}">{esc(text)}</p>'


def _model_order(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    first = [n for n in (CANDIDATE, PRODUCTION) if n in names]
    return first + sorted(n for n in names if n not in first and n != ORACLE)


def _colors(models: Sequence[str]) -> dict[str, str]:
    out = {CANDIDATE: PALETTE[0], PRODUCTION: PALETTE[4], "actual": ACTUAL_COLOR, "truth": ACTUAL_COLOR}
    rest = iter(c for c in PALETTE[1:] if c != PALETTE[4])
    for m in models:
        if m not in out:
            out[m] = next(rest, "#999999")
    return out


def _best_baseline(metrics: Mapping[str, Mapping[str, Any]], key: str = "wape") -> str | None:
    scored = [
        (v, name)
        for name, m in metrics.items()
        if name not in (CANDIDATE, PRODUCTION, ORACLE) and (v := _num(m.get(key))) is not None
    ]
    return min(scored)[1] if scored else None


def _wape(actual: pd.Series, predicted: pd.Series) -> float | None:
    total = float(np.abs(actual).sum())
    if total <= 0:
        return None
    return float(np.abs(predicted - actual).sum() / total)


# --------------------------------------------------------------------------- sections


def _summary(
    version: str,
    master_version: str | None,
    digest: str | None,
    code_version: str | None,
    created_at: str | None,
    status: str | None,
    hyperparameters: Mapping[str, Any] | None,
) -> str:
    body = _kv(
        [
            ("model version", version),
            ("status", status),
            ("master-table version", master_version),
            ("artifact digest (sha256)", digest),
            ("code version", code_version),
            ("created", created_at),
        ]
    )
    if hyperparameters:
        body += "<h3>Hyperparameters of the final model</h3>" + _kv(
            [(str(k), v) for k, v in sorted(hyperparameters.items())]
        )
    return _section("summary", body)


def _gate(gate: Mapping[str, Any]) -> str:
    passed = bool(gate.get("passed"))
    badge = (
        '<span class="badge pass">gates passed: ready for review</span>'
        if passed
        else '<span class="badge fail">gates failed: registered as rejected_by_gate</span>'
    )
    body = f"<p>{badge}</p>"
    reasons = [str(r) for r in gate.get("reasons") or []]
    if reasons:
        body += '<ul class="reasons">' + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>"
    checks = gate.get("checks") or []
    if checks:
        rows = [
            [
                str(c.get("name", "")),
                "pass" if c.get("passed") else "FAIL",
                _num(c.get("value")),
                _num(c.get("threshold")),
                str(c.get("detail", "")),
            ]
            for c in checks
        ]
        body += _table(["check", "result", "value", "threshold", "detail"], rows, text_cols=2)
    elif not reasons:
        body += _p("No gate checks were recorded.")
    return _section("gate", body)


def _models(metrics: Mapping[str, Mapping[str, Any]], oracle: Mapping[str, Any] | None) -> str:
    models = _model_order(metrics)
    if not models:
        return _section("models", _p("No backtest metrics were recorded."))
    has_oracle = bool(oracle) and _num((oracle or {}).get("wape")) is not None
    cols = [
        c
        for c in METRIC_COLUMNS
        if any(_num(metrics[m].get(c[0])) is not None for m in models)
        or (c[0] == "wape_truth_cells" and has_oracle)
    ]
    rows: list[list[Any]] = []
    for m in models:
        role = "candidate" if m == CANDIDATE else "production" if m == PRODUCTION else "baseline"
        rows.append([m, role, *(_num(metrics[m].get(k)) for k, _, _ in cols)])
    best = []
    for j, (_k, _, better) in enumerate(cols, start=2):
        vals = [(r[j], i) for i, r in enumerate(rows) if r[j] is not None]
        if vals:
            if better in ("zero", "one"):
                at = 0.0 if better == "zero" else 1.0
                target = min(abs(v - at) for v, _ in vals)
                best += [(i, j) for v, i in vals if abs(v - at) == target]
            else:
                target = min(vals)[0] if better == "min" else max(vals)[0]
                best += [(i, j) for v, i in vals if v == target]
    if oracle and has_oracle:
        rows.append(
            ["oracle", "truth's expected units (noise floor)"]
            + [_num(oracle.get("wape")) if k == "wape_truth_cells" else None for k, _, _ in cols]
        )
    body = _p(
        "Pooled over the backtest folds; the best value of each column is marked. Lower is better for"
        " errors, nearer zero for the ROI bias (predicted minus true), higher for Spearman and for"
        " the decision \u201cpays back\u201d (ROI > 0): balanced accuracy (any constant answer"
        " scores 0.5) and AUC. Without any ground truth: at the weeks where a program starts or ends"
        " in a cell, the jump in units the model predicts over the jump sales made (nearer 1 is"
        " better; below 1 the model's lift is too small, about 0 for a model blind to incentives)."
    )
    body += _table(
        ["model", "role", *(h for _, h, _ in cols)], rows, text_cols=2, best=best, highlight_rows=[0]
    )
    colors = _colors(models)
    body += bar_chart(
        "Units WAPE by model (lower is better)",
        models,
        {"WAPE": [_num(metrics[m].get("wape")) for m in models]},
        y_label="WAPE",
        colors={"WAPE": colors[CANDIDATE]},
    )
    if any(_num(metrics[m].get("roi_mae")) is not None for m in models):
        body += bar_chart(
            "ROI error and rank correlation by model",
            models,
            {
                "ROI MAE (lower is better)": [_num(metrics[m].get("roi_mae")) for m in models],
                "ROI Spearman (higher is better)": [_num(metrics[m].get("roi_spearman")) for m in models],
            },
        )
    return _section("models", body)


def _model_columns(predictions: pd.DataFrame, metrics: Mapping[str, Any]) -> list[str]:
    known = [m for m in _model_order(metrics) if m in predictions.columns]
    if known:
        return known
    numeric = [
        c
        for c in predictions.columns
        if c not in _NOT_MODELS and pd.api.types.is_numeric_dtype(predictions[c].dtype)
    ]
    return _model_order(numeric)


def _units(predictions: pd.DataFrame | None, metrics: Mapping[str, Any]) -> str:
    if (
        predictions is None
        or predictions.empty
        or "units" not in predictions
        or "week_start" not in predictions
    ):
        return _section("units", _p("No backtest predictions were recorded."))
    models = _model_columns(predictions, metrics)
    frame = predictions.copy()
    frame["week_start"] = pd.to_datetime(frame["week_start"])
    weekly = frame.groupby("week_start")[["units", *models]].sum().sort_index()
    labels = [d.strftime("%Y-%m-%d") for d in weekly.index]
    series: dict[str, list[float | None]] = {"actual": [_num(v) for v in weekly["units"]]}
    for m in models:
        series[m] = [_num(v) for v in weekly[m]]
    bands = []
    if "fold" in frame:
        pos = {d: i for i, d in enumerate(weekly.index)}
        for fold, part in frame.groupby("fold"):
            bands.append((pos[part["week_start"].min()], pos[part["week_start"].max()], f"fold {fold}"))
    colors = _colors(models)
    chart = line_chart(
        "Units per week over all backtest cells: actual and predicted",
        labels,
        series,
        y_label="units per week",
        colors=colors,
        dashed=[m for m in models if m not in (CANDIDATE, PRODUCTION)],
        bands=bands,
    )
    rows = [
        [label, _num(weekly["units"].iloc[i]), *(_num(weekly[m].iloc[i]) for m in models)]
        for i, label in enumerate(labels)
    ]
    body = _p(
        "Each fold's model was trained on the weeks before the fold and predicts its test weeks"
        " one week ahead; the sums run over every cell of the fold."
    )
    body += chart + "<details><summary>weekly figures</summary>"
    body += _table(["week", "actual", *models], rows) + "</details>"
    return _section("units", body)


def _errors(predictions: pd.DataFrame | None, metrics: Mapping[str, Mapping[str, Any]]) -> str:
    if predictions is None or predictions.empty or "units" not in predictions:
        return _section("errors", _p("No backtest predictions were recorded."))
    models = _model_columns(predictions, metrics)
    shown = [m for m in (CANDIDATE, PRODUCTION, _best_baseline(metrics)) if m in models] or models[:3]
    colors = _colors(models)
    body = _p(
        "WAPE (sum of absolute errors / sum of actual units) of every model per group;"
        " the best model of each row is marked. The chart shows the candidate, the production"
        " model and the best baseline."
    )
    for key, label in (("region", "region"), ("segment", "segment")):
        if key not in predictions:
            continue
        rows: list[list[Any]] = []
        best: list[tuple[int, int]] = []
        series: dict[str, list[float | None]] = {m: [] for m in shown}
        groups = sorted(predictions.groupby(key), key=lambda g: str(g[0]))
        for i, (name, part) in enumerate(groups):
            wapes = [_wape(part["units"], part[m]) for m in models]
            rows.append([str(name), float(part["units"].sum()), *wapes])
            vals = [w for w in wapes if w is not None]
            if vals:
                best += [(i, j + 2) for j, w in enumerate(wapes) if w == min(vals)]
            for m in shown:
                series[m].append(wapes[models.index(m)])
        body += f"<h3>By {esc(label)}</h3>"
        body += _table([label, "actual units", *models], rows, best=best)
        body += bar_chart(
            f"WAPE by {label}",
            [str(r[0]) for r in rows],
            series,
            y_label="WAPE",
            colors={m: colors[m] for m in shown},
        )
    return _section("errors", body)


def _depth_bin(depth: float) -> str:
    for lo, hi in pairwise(DEPTH_EDGES):
        if lo <= depth < hi:
            return f"{lo * 100:.0f}%+" if math.isinf(hi) else f"{lo * 100:.0f}–{hi * 100:.0f}%"
    return "unknown"


def _roi_table(
    frame: pd.DataFrame, key: str, order: Sequence[str], models: Sequence[str], has_truth: bool
) -> tuple[str, dict[str, list[float | None]]]:
    """Rows per group of ``key``: cells, mean true ROI, share that pays back,
    and per model its mean predicted ROI (and MAE where the truth is known)."""
    headers = [key.replace("_", " "), "cells"]
    if has_truth:
        headers += ["mean true ROI", "pays back (true)"]
    for m in models:
        headers += [f"{m}: mean ROI"] + ([f"{m}: ROI MAE"] if has_truth else [])
    rows: list[list[Any]] = []
    means: dict[str, list[float | None]] = {"truth": []} if has_truth else {}
    means.update({m: [] for m in models})
    for g in order:
        part = frame[frame["_group"] == g]
        truth_part = part[part["model"] == models[0]] if models else part
        row: list[Any] = [g, float(len(truth_part))]
        if has_truth:
            t = truth_part["true_roi"].astype(float)
            t = t[np.isfinite(t)]
            row += [_num(t.mean()) if len(t) else None, _num((t > 0).mean()) if len(t) else None]
            means["truth"].append(row[2])
        for m in models:
            mp = part[part["model"] == m]
            r = mp["roi"].astype(float)
            ok = np.isfinite(r)
            mean = _num(r[ok].mean()) if ok.any() else None
            row.append(mean)
            means[m].append(mean)
            if has_truth:
                t = mp["true_roi"].astype(float)
                both = ok & np.isfinite(t)
                row.append(_num(np.abs(r[both] - t[both]).mean()) if both.any() else None)
        rows.append(row)
    return _table(headers, rows), means


def _roi(roi: pd.DataFrame | None, metrics: Mapping[str, Mapping[str, Any]]) -> str:
    if roi is None or roi.empty or "roi" not in roi or "model" not in roi:
        return _section(
            "roi",
            _p(
                "No ground truth was available for this source, so the backtest could not score ROI:"
                " units accuracy above is the evidence. (The simulator's truth file enables this section.)"
            ),
        )
    has_truth = bool("true_roi" in roi and roi["true_roi"].notna().any())
    present = set(roi["model"].astype(str))
    models = [m for m in (CANDIDATE, PRODUCTION, _best_baseline(metrics)) if m and m in present]
    models = models or _model_order(present)[:3]
    frame = roi[roi["model"].astype(str).isin(models)].copy()
    colors = _colors(models)
    body = _p(
        "One row per incentive program, region, vehicle model and week of the backtest's test folds"
        " where the ground truth is known. ROI = (incremental units x unit margin - incentive cost)"
        " / incentive cost; it is often negative."
        if has_truth
        else "Predicted ROI of the backtest's program cells (no ground truth is known for this source)."
    )
    sections: list[tuple[str, str, list[str]]] = []
    if "incentive_type" in frame:
        frame["_group"] = frame["incentive_type"].astype(str)
        order = sorted(frame["_group"].unique())
        sections.append(("incentive_type", "incentive type", order))
        table, means = _roi_table(frame, "incentive_type", order, models, has_truth)
        body += "<h3>By incentive type</h3>" + table
        body += bar_chart(
            "Mean ROI by incentive type" + (": truth and predicted" if has_truth else ""),
            order,
            means,
            y_label="ROI",
            colors=colors,
        )
    if "incentive_depth" in frame:
        depth = frame["incentive_depth"].astype(float)
        frame["_group"] = [_depth_bin(d) if math.isfinite(d) else "unknown" for d in depth]
        labels = [_depth_bin(lo) for lo in DEPTH_EDGES[:-1]]
        order = [lab for lab in [*labels, "unknown"] if (frame["_group"] == lab).any()]
        table, means = _roi_table(frame, "incentive_depth", order, models, has_truth)
        body += "<h3>By incentive depth (amount / MSRP)</h3>" + table
        body += bar_chart(
            "Mean ROI by incentive depth" + (": truth and predicted" if has_truth else ""),
            order,
            means,
            y_label="ROI",
            colors=colors,
        )
    if has_truth and CANDIDATE in present:
        cand = roi[roi["model"].astype(str) == CANDIDATE]
        body += scatter_chart(
            "Candidate: predicted vs true ROI per program cell (dashed: perfect prediction)",
            list(cand["true_roi"].astype(float)),
            list(cand["roi"].astype(float)),
            x_label="true ROI",
            y_label="predicted ROI",
        )
    return _section("roi", body)


def _tuning(trials: Sequence[Mapping[str, Any]] | None, tuning: Mapping[str, Any] | None) -> str:
    body = ""
    if tuning:
        body += _kv(
            [
                ("stopped by", tuning.get("stopped_by")),
                ("search seconds", fmt(_num(tuning.get("seconds")))),
                ("resumed a previous search", tuning.get("resumed")),
                ("best validation loss", fmt(_num(tuning.get("best_score")), 5)),
                ("best epochs", tuning.get("best_epochs")),
                (
                    "best hyperparameters",
                    ", ".join(
                        f"{k}={v}" for k, v in sorted((tuning.get("best_hyperparameters") or {}).items())
                    ),
                ),
            ]
        )
    if not trials:
        return _section("tuning", body + _p("No tuner trials were recorded."))
    losses = [_num(t.get("val_loss")) for t in trials]
    scored = [v for v in losses if v is not None]
    best_i = losses.index(min(scored)) if scored else -1
    names = sorted({k for t in trials for k in (t.get("hyperparameters") or {})})
    rows = []
    for t in trials:
        hp = t.get("hyperparameters") or {}
        rows.append(
            [
                str(t.get("trial_id", "")),
                str(t.get("status", "")),
                *(str(hp.get(n, "")) for n in names),
                _num(t.get("val_loss")),
                _num(t.get("best_epochs")),
                _num(t.get("epochs_run")),
                _num(t.get("seconds")),
            ]
        )
    body += _p("Validation Poisson loss on the held-out last weeks; the best trial is highlighted.")
    body += _table(
        ["trial", "status", *names, "val loss", "best epochs", "epochs run", "seconds"],
        rows,
        text_cols=2 + len(names),
        highlight_rows=[best_i] if best_i >= 0 else [],
    )
    body += bar_chart(
        "Validation loss per trial (lower is better)",
        [str(t.get("trial_id", i)) for i, t in enumerate(trials)],
        {"val loss": losses},
        y_label="Poisson loss",
    )
    return _section("tuning", body)


def _folds(
    fold_metrics: Sequence[Mapping[str, Any]] | None, folds: Sequence[Mapping[str, Any]] | None
) -> str:
    body = ""
    if folds:
        body += _table(
            ["fold", "first test week", "last test week"],
            [
                [str(f.get("index", "")), str(f.get("test_start", "")), str(f.get("test_end", ""))]
                for f in folds
            ],
            text_cols=3,
        )
    if fold_metrics:
        keys = [k for k, _, _ in METRIC_COLUMNS if any(_num(r.get(k)) is not None for r in fold_metrics)]
        heads = {k: h for k, h, _ in METRIC_COLUMNS}
        rows = [
            [str(r.get("fold", "")), str(r.get("model", "")), *(_num(r.get(k)) for k in keys)]
            for r in fold_metrics
        ]
        body += _table(["fold", "model", *(heads[k] for k in keys)], rows, text_cols=2)
    return _section("folds", body or _p("No fold metrics were recorded."))


# --------------------------------------------------------------------------- the page


def _programs(programs: Sequence[Mapping[str, Any]] | None) -> str:
    """Every program in the history as this model estimates it (``autoroi programs``)."""
    if not programs:
        return _section("programs", _p("No program table was recorded (the fit step writes it)."))
    truth = any(_num(p.get("true_roi")) is not None for p in programs)

    def pct(v: Any) -> str:
        x = _num(v)
        return "—" if x is None else f"{x:+.0%}"

    rows = []
    for p in programs:
        row = [
            str(p.get("code")),
            str(p.get("incentive_type")),
            f"{p.get('first_week')}..{str(p.get('last_week'))[5:]}",
            _num(p.get("incentive_amount")),
            _num(p.get("cells")),
            _num(p.get("incremental_units")),
            _num(p.get("incentive_cost")),
            _num(p.get("incremental_profit")),
            pct(p.get("roi")),
            f"{pct(p.get('roi_lower'))}..{pct(p.get('roi_upper'))}",
            pct(p.get("prob_pays_back"))[1:] if _num(p.get("prob_pays_back")) is not None else "—",
        ]
        if truth:
            row.append(pct(p.get("true_roi")))
        rows.append(row)
    heads = ["program", "type", "weeks", "$/unit", "cells", "+units", "cost $", "profit $", "ROI"]
    heads += ["90 % interval", "P(ROI > 0)", *(["true ROI"] if truth else [])]
    body = _p(
        "Each program's cells and weeks answered as the server would (on top of the programs that ran"
        " beside it), summed; ROI = summed profit over summed cost, its interval from each ensemble"
        " member's own sums."
        + (" True ROI: the simulator's ground truth (evaluation only)." if truth else "")
    )
    if truth:
        pairs = [(_num(p.get("roi")), _num(p.get("true_roi"))) for p in programs]
        err = [abs(a - b) for a, b in pairs if a is not None and b is not None]
        if err:
            mae = sum(err) / len(err)
            body += _p(f"Program-level ROI MAE against the truth: {mae:.3f} over {len(err)} programs.")
    return _section("programs", body + _table(heads, rows, text_cols=3))


def render_report(
    *,
    version: str,
    gate: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any]],
    master_version: str | None = None,
    digest: str | None = None,
    code_version: str | None = None,
    created_at: str | None = None,
    status: str | None = None,
    oracle: Mapping[str, Any] | None = None,
    predictions: pd.DataFrame | None = None,
    roi: pd.DataFrame | None = None,
    trials: Sequence[Mapping[str, Any]] | None = None,
    tuning: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    fold_metrics: Sequence[Mapping[str, Any]] | None = None,
    folds: Sequence[Mapping[str, Any]] | None = None,
    programs: Sequence[Mapping[str, Any]] | None = None,
    title: str = "autoroi: ROI model review",
) -> str:
    """The page as one string (the inputs are described in the module docstring)."""
    gate_d = gate.to_dict() if hasattr(gate, "to_dict") else dict(gate)
    created_at = created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    nav = " ".join(f'<a href="#{esc(k)}">{esc(t)}</a>' for k, t in SECTIONS)
    verdict = "passed" if gate_d.get("passed") else "FAILED"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}: {esc(version)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">Model version <strong>{esc(version)}</strong> · master table'
        f" {esc(master_version or '—')} · gates {esc(verdict)}</p>",
        f"<nav>{nav}</nav>",
        _summary(version, master_version, digest, code_version, created_at, status, hyperparameters),
        _gate(gate_d),
        _models(metrics, oracle),
        _units(predictions, metrics),
        _errors(predictions, metrics),
        _roi(roi, metrics),
        _programs(programs),
        _tuning(trials, tuning),
        _folds(fold_metrics, folds),
        f'<p class="muted">Generated by autoroi at {esc(created_at)}. Self-contained page: no network.</p>',
        "</main></body></html>",
    ]
    return "\n".join(parts)


def report_inputs(validation: Any = None, tuning: Any = None) -> dict[str, Any]:
    """``render_report`` keyword arguments from an ``autoroi.evaluation.validate.Validation``
    and an ``autoroi.model.tuning.TuningResult`` (either may be ``None``)."""
    out: dict[str, Any] = {}
    if validation is not None:
        bt = validation.backtest
        out.update(
            gate=validation.decision.to_dict(),
            metrics=bt.metrics,
            oracle=bt.oracle or None,
            predictions=bt.predictions,
            roi=bt.roi,
            fold_metrics=bt.fold_metrics,
            folds=[f.to_dict() for f in bt.folds],
        )
    if tuning is not None:
        out["trials"] = tuning.trials
        out["tuning"] = {
            k: getattr(tuning, k)
            for k in ("best_hyperparameters", "best_epochs", "best_score", "stopped_by", "seconds", "resumed")
        }
    return out
