"""The reviewer's report: one self-contained, escaped HTML page with an SVG per plot."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autoroi.report import render_report, report_inputs
from autoroi.report.svg import fmt, nice_ticks, scatter_chart

EVIL = '"><script>alert("x")</script><img src="https://evil.example/x.png">'
MODELS = ("candidate", "production", "seasonal_naive", "poisson_glm", "hist_gbm")
TYPES = ("cash_rebate", "apr_subsidy", "loyalty")


class Page(HTMLParser):
    """Collects tags, attributes and text; checks that elements nest properly."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link", "line", "rect", "circle", "polyline"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}  # type: ignore[misc]

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, p.stack
    return p


def inputs(with_truth: bool = True, region: str = "Northeast") -> dict[str, Any]:
    rng = np.random.default_rng(7)
    weeks = pd.date_range("2026-01-05", periods=12, freq="7D")
    rows = []
    for i, week in enumerate(weeks):
        for reg, seg in ((region, "suv"), ("Pacific", "sedan"), ("Mountain", "truck")):
            units = float(rng.integers(20, 60))
            row = {"fold": i // 4, "region": reg, "segment": seg, "week_start": week, "units": units}
            for k, m in enumerate(MODELS):
                row[m] = units * (1 + (k + 1) * 0.03 * rng.standard_normal())
            rows.append(row)
    predictions = pd.DataFrame(rows)
    roi_rows = []
    for m in MODELS:
        for j in range(60):
            true = float(rng.normal(-0.2, 0.5))
            r = {
                "model": m,
                "incentive_type": TYPES[j % 3],
                "incentive_depth": 0.01 + 0.0015 * j,
                "roi": true + float(rng.normal(0, 0.2)),
            }
            if with_truth:
                r["true_roi"] = true
            roi_rows.append(r)
    metrics = {
        m: {
            "wape": 0.2 + 0.05 * k,
            "mae": 3.0 + k,
            "rmse": 4.0 + k,
            "roi_mae": 0.3 + 0.1 * k,
            "roi_spearman": 0.8 - 0.1 * k,
            "roi_bias": 0.05 - 0.04 * k,
            "roi_balanced_accuracy": 0.9 - 0.1 * k,
            "roi_auc": 0.95 - 0.1 * k,
            "roi_sign_agreement": 0.9,
        }
        for k, m in enumerate(MODELS)
    }
    metrics["seasonal_naive"]["roi_spearman"] = float("nan")
    trials = [
        {
            "trial_id": f"0{i}",
            "status": "COMPLETED",
            "hyperparameters": {"layers": 1 + i % 2, "units": 32 * (i + 1), "learning_rate": 0.003},
            "val_loss": 1.5 - 0.1 * i if i != 2 else None,
            "best_epochs": 4 + i,
            "epochs_run": 7 + i,
            "seconds": 3.2 * (i + 1),
        }
        for i in range(4)
    ]
    return {
        "version": "v20260302-093015-1a2b3c4d",
        "master_version": "0123456789abcdef",
        "digest": "ab" * 32,
        "code_version": "0.1.0",
        "created_at": "2026-03-02T09:30:15+00:00",
        "status": "pending_approval",
        "gate": {
            "passed": False,
            "reasons": ["vs_production: WAPE 0.2000 > production 0.1800 x (1 + 0.05) = 0.1890"],
            "checks": [
                {
                    "name": "wape_max",
                    "passed": True,
                    "detail": "WAPE 0.2 <= 0.6",
                    "value": 0.2,
                    "threshold": 0.6,
                },
                {"name": "vs_production", "passed": False, "detail": "WAPE 0.2 > 0.189", "value": 0.2},
            ],
        },
        "metrics": metrics,
        "oracle": {"wape": 0.15, "rows": 120.0},
        "predictions": predictions,
        "roi": pd.DataFrame(roi_rows),
        "trials": trials,
        "tuning": {"stopped_by": "max_trials", "seconds": 41.2, "best_score": 1.2, "best_epochs": 7},
        "hyperparameters": {"layers": 2, "units": 64},
        "fold_metrics": [{"fold": f, "model": m, "wape": 0.2, "mae": 3.0} for f in range(3) for m in MODELS],
        "folds": [{"index": f, "test_start": "2026-01-05", "test_end": "2026-01-26"} for f in range(3)],
    }


def test_full_report_parses_and_has_every_section_and_plot():
    page = render_report(**inputs())
    assert page.startswith("<!DOCTYPE html>")
    p = parse(page)
    assert {"summary", "gate", "models", "units", "errors", "roi", "tuning", "folds"} <= p.ids()
    # plots: WAPE by model, ROI by model, units over time, WAPE by region and by segment,
    # ROI by type and by depth, predicted-vs-true scatter, trials
    assert p.count("svg") == 9
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 9 and all("<title>" in s for s in svgs)
    assert page.count("<polyline") >= 6  # actual + 5 models in the time series
    text = " ".join(p.text)
    for expected in (
        "v20260302-093015-1a2b3c4d",
        "0123456789abcdef",
        "ab" * 32,
        "gates failed",
        "vs_production: WAPE 0.2000 > production",
        "seasonal_naive",
        "hist_gbm",
        "production",
        "Northeast",
        "suv",
        "cash_rebate",
        "mean true ROI",
        "max_trials",
        "noise floor",
        "WAPE on truth cells",
        "ROI mean bias",
        "pays back: balanced accuracy",
        "pays back: AUC",
    ):
        assert expected in text, expected
    assert "sign agreement" not in text  # it measures nothing where most cells lose
    assert "<style>" in page


def test_report_is_self_contained():
    page = render_report(**inputs())
    p = parse(page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    for tag, attrs in p.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href  # in-page links only
    assert "url(" not in page and "@import" not in page


def test_every_string_is_escaped():
    data = inputs(region=EVIL)
    data["version"] = EVIL
    data["gate"]["reasons"] = [EVIL]
    data["trials"][0]["hyperparameters"]["layers"] = EVIL
    data["tuning"]["stopped_by"] = EVIL
    data["metrics"][EVIL] = {"wape": 0.5}
    data["roi"].loc[0, "incentive_type"] = EVIL
    page = render_report(**data)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and 'src="' not in page  # the URL is text, not an attribute
    p = parse(page)
    assert p.count("script") == 0 and p.count("img") == 0
    assert all("src" not in attrs for _, attrs in p.tags)
    assert EVIL in " ".join(p.text)  # shown as text, verbatim


def test_without_ground_truth_or_tuning_the_page_says_so():
    data = inputs(with_truth=False)
    data.update(trials=None, tuning=None, oracle=None)
    data["gate"] = {"passed": True, "reasons": [], "checks": []}
    p = parse(render_report(**data))
    text = " ".join(p.text)
    assert "gates passed" in text and "No tuner trials were recorded" in text
    assert "no ground truth is known" in text and "mean true ROI" not in text
    no_roi = parse(render_report(**{**data, "roi": None}))
    assert "No ground truth was available" in " ".join(no_roi.text)


def test_minimal_inputs_render():
    page = render_report(version="v1", gate={"passed": True}, metrics={})
    p = parse(page)
    assert {"summary", "gate", "models", "units", "errors", "roi", "tuning", "folds"} <= p.ids()
    assert p.count("svg") == 0


def test_report_inputs_from_result_objects():
    from autoroi.evaluation.backtest import BacktestResult
    from autoroi.evaluation.folds import Fold
    from autoroi.evaluation.gates import GateCheck, GateDecision
    from autoroi.evaluation.validate import Validation

    data = inputs()
    folds = [Fold(i, pd.Timestamp("2026-01-05"), pd.Timestamp("2026-01-26")) for i in range(3)]
    bt = BacktestResult(
        folds, data["metrics"], data["fold_metrics"], data["predictions"], data["roi"], {"wape": 0.1}
    )
    decision = GateDecision(True, [], [GateCheck("wape_max", True, "ok", 0.2, 0.6)])

    tuning = SimpleNamespace(
        trials=data["trials"],
        best_hyperparameters={"layers": 2},
        best_epochs=5,
        best_score=1.1,
        stopped_by="time_budget",
        seconds=60.0,
        resumed=False,
    )

    kwargs = report_inputs(Validation(bt, decision), tuning)
    assert kwargs["gate"]["passed"] is True and kwargs["folds"][0]["test_start"] == "2026-01-05"
    p = parse(render_report(version="v2", **kwargs))
    assert p.count("svg") == 9 and "time_budget" in " ".join(p.text)


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.0, 1.0), (-0.73, 2.4), (13.0, 13.0), (0.0, 12345.0), (-5e-4, 3e-4)]
)
def test_nice_ticks_cover_the_range(lo: float, hi: float):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 8
    assert ticks == sorted(ticks)


def test_fmt():
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt(12345.6) == "12,346" and fmt(0.123456) == "0.123" and fmt(7) == "7"


def test_scatter_clips_outliers_to_the_plot_area():
    xs = [float(i % 7) - 3 for i in range(200)] + [500.0]
    ys = [x + 0.1 for x in xs[:-1]] + [-400.0]
    svg = scatter_chart("roi", xs, ys)
    assert "clipped" in svg
    cx = [float(v) for v in re.findall(r'cx="([-\d.]+)"', svg)]
    cy = [float(v) for v in re.findall(r'cy="([-\d.]+)"', svg)]
    assert len(cx) == 201
    assert all(0 < v < 760 for v in cx) and all(0 < v < 300 for v in cy)
    assert "clipped" not in scatter_chart("roi", xs[:-1], ys[:-1])


def test_programs_section_lists_every_program_beside_the_truth():
    programs = [
        {
            "program_id": 1,
            "code": "CR-25001",
            "incentive_type": "cash_rebate",
            "incentive_amount": 1500.0,
            "first_week": "2025-01-06",
            "last_week": "2025-02-24",
            "cells": 12,
            "cell_weeks": 96,
            "incremental_units": 210.5,
            "incentive_cost": 350_000.0,
            "incremental_profit": -120_000.0,
            "roi": -0.343,
            "roi_lower": -0.45,
            "roi_upper": -0.24,
            "prob_pays_back": 0.01,
            "true_roi": -0.30,
        },
        {
            **{k: None for k in ("roi", "roi_lower", "roi_upper", "prob_pays_back")},
            "code": "LOY-25002",
            "incentive_type": "loyalty",
            "first_week": "2025-03-03",
            "last_week": "2025-03-31",
            "true_roi": None,
        },
    ]
    p = parse(render_report(**{**inputs(), "programs": programs}))
    assert "programs" in p.ids()
    text = " ".join(p.text)
    for expected in ("CR-25001", "LOY-25002", "-34%", "-45%..-24%", "true ROI", "-30%", "2025-01-06..02-24"):
        assert expected in text, expected
    assert "Program-level ROI MAE against the truth: 0.043 over 1 programs." in text
    bare = " ".join(parse(render_report(**inputs())).text)
    assert "No program table was recorded" in bare
