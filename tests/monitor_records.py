"""Hand-written monitor records (``<lake>/monitoring/roi/<master_version>.json``,
the shape the ``monitor`` step writes) for the tests of ``autoroi monitor
show``, ``GET /health`` and the dashboard's health panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL = "v20261102-120000-abcd1234"


def record(
    master: str,
    created_at: str,
    status: str = "ok",
    *,
    weeks: dict[str, float] | None = None,
    wape: float = 0.2,
    reference: float = 0.19,
    lift: float | None = 1.09,
    drifted: dict[str, float] | None = None,
    unknown: dict[str, list[str]] | None = None,
    reasons: list[str] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    """One record; ``weeks``: WAPE per observed week, ``drifted``: PSI of the
    features over the threshold (0.2); a steady ``units_lag1`` is always there."""
    by_week = [
        {"week_start": w, "wape": v, "actual_units": 1000.0, "predicted_units": 1000.0 * (1 + v), "rows": 136}
        for w, v in (weeks or {}).items()
    ]
    features = [{"feature": "units_lag1", "value": 0.03, "drifted": False}]
    features += [{"feature": f, "value": v, "drifted": True} for f, v in (drifted or {}).items()]
    return {
        "master_version": master,
        "created_at": created_at,
        "model_version": model,
        "model_master_version": "00aa00aa00aa00aa",
        "deployed_at": "2026-11-02T12:00:00Z",
        "status": status,
        "reasons": reasons or [],
        "accuracy": {
            "weeks": len(by_week),
            "rows": 136 * len(by_week),
            "wape": wape,
            "reference_wape": reference,
            "ratio": wape / reference,
            "by_week": by_week,
            "by_group": [
                {
                    "region": "Northeast",
                    "segment": "suv",
                    "wape": wape,
                    "ratio": wape / reference,
                    "actual_units": 321.0,
                    "predicted_units": 300.0,
                    "flagged": False,
                }
            ],
            "lift": None
            if lift is None
            else {
                "programs": 4,
                "cells": 30,
                "predicted_incremental_units": 55.0,
                "realized_incremental_units": 55.0 * lift,
                "ratio": lift,
                "flagged": False,
            },
        },
        "drift": {
            "statistic": "psi",
            "threshold": 0.2,
            "features": features,
            "unknown_categories": unknown or {},
            "drifted": sorted(drifted or {}),
        },
        "predictions_logged": {"rows": 1200, "days": ["2026-12-06"]},
    }


def write(lake: Path, *records: dict[str, Any]) -> Path:
    """The records into ``lake``'s history folder; returns the folder."""
    folder = lake / "monitoring" / "roi"
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / f"{r['master_version']}.json").write_text(json.dumps(r, indent=2))
    return folder


def three_runs() -> list[dict[str, Any]]:
    """ok, ok, then drift with a degraded accuracy; oldest first by created_at.
    Week 2026-11-16 is judged by the second and the third run (the third's 0.41 wins)."""
    return [
        record("1111111111111111", "2026-11-16T10:00:00Z", weeks={"2026-11-02": 0.18, "2026-11-09": 0.21}),
        record(
            "2222222222222222",
            "2026-11-23T10:00:00Z",
            weeks={"2026-11-16": 0.2},
            wape=0.2,
            lift=1.1,
        ),
        record(
            "3333333333333333",
            "2026-11-30T10:00:00Z",
            "drift",
            weeks={"2026-11-16": 0.41, "2026-11-23": 0.35},
            wape=0.38,
            lift=0.52,
            drifted={"dealer_count": 0.31, "incentive_amount": 0.27},
            unknown={"vehicle_model": ["Voltara EX"]},
            reasons=[
                "units WAPE 0.38 is 2.0x the backtest's 0.19 (limit 1.5x)",
                "dealer_count drifted: PSI 0.31 over 0.2",
            ],
        ),
    ]
