"""Validation gates: may this candidate become a reviewable model version?

Checks, on the backtest pooled over its folds (observed sales only: a
production source has no ground truth):

1. ``wape_max``: the candidate's units WAPE is at most the absolute threshold;
2. ``beats_<baseline>``: for every baseline named in ``must_beat`` (default the
   seasonal naive), the candidate's WAPE is strictly lower;
3. ``vs_production``: when a production model exists, the candidate's WAPE is
   at most the production WAPE x (1 + ``production_tolerance``);
4. ``moves_with_programs``: the effect, not only the level: where a program
   starts or ends in a cell, the jump in units the candidate predicts over
   the jump sales made (``step_ratio``) exceeds the seasonal naive's, a model
   blind to incentives, by ``step_margin``. Relative, not absolute: with the
   few dozen starts and ends of a demo-size backtest the ratio is noisy
   (0.28 to 0.90 for candidates whose ROI MAE was 0.14 to 0.36, while the
   naive scored -0.61 to 0.05); it catches a model that does not move with
   the programs, not a lift that is 20 % off. Not judged with fewer than
   ``MIN_STEP_PAIRS`` starts and ends in the test weeks (one start can make
   last year's weeks look like a perfect model).

Every check is recorded with its values; ``reasons`` lists the failed ones, in
words a reviewer can act on. A missing or NaN WAPE fails its check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from autoroi.config import GateConfig

METRIC = "wape"
MIN_STEP_PAIRS = 20  # program starts and ends below which moves_with_programs is not judged


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # the failed checks' details
    checks: list[GateCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}

    def markdown(self) -> str:
        head = "**Gates passed**" if self.passed else "**Gates failed**"
        lines = [head, "", "| check | result | detail |", "| --- | --- | --- |"]
        lines += [f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.detail} |" for c in self.checks]
        return "\n".join(lines) + "\n"


def _metric(metrics: Mapping[str, Any] | None) -> float:
    if not metrics:
        return math.nan
    v = metrics.get(METRIC)
    return float(v) if v is not None else math.nan


def decide_gates(
    candidate_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Mapping[str, Any]],
    production_metrics: Mapping[str, Any] | None,
    cfg: GateConfig,
) -> GateDecision:
    """The gate decision for one candidate (see the module docstring)."""
    checks: list[GateCheck] = []
    cand = _metric(candidate_metrics)
    if math.isnan(cand):
        checks.append(GateCheck("wape_max", False, "the candidate has no WAPE", None, cfg.wape_max))
    else:
        ok = cand <= cfg.wape_max
        rel = "<=" if ok else ">"
        checks.append(
            GateCheck(
                "wape_max", ok, f"WAPE {cand:.4f} {rel} threshold {cfg.wape_max:.4f}", cand, cfg.wape_max
            )
        )
    for name in cfg.must_beat:
        base = _metric(baseline_metrics.get(name))
        if math.isnan(base):
            checks.append(GateCheck(f"beats_{name}", False, f"no WAPE for baseline {name}", cand, None))
            continue
        ok = not math.isnan(cand) and cand < base
        detail = f"WAPE {cand:.4f} {'<' if ok else '>='} {name} {base:.4f}"
        checks.append(GateCheck(f"beats_{name}", ok, detail, cand, base))
    if production_metrics is not None:
        prod = _metric(production_metrics)
        if math.isnan(prod):
            checks.append(GateCheck("vs_production", False, "the production model has no WAPE", cand, None))
        else:
            limit = prod * (1 + cfg.production_tolerance)
            ok = not math.isnan(cand) and cand <= limit
            detail = (
                f"WAPE {cand:.4f} {'<=' if ok else '>'} production {prod:.4f}"
                f" x (1 + {cfg.production_tolerance:g}) = {limit:.4f}"
            )
            checks.append(GateCheck("vs_production", ok, detail, cand, limit))
    if cfg.step_margin is not None:
        checks.append(_step_check(candidate_metrics, baseline_metrics.get("seasonal_naive"), cfg.step_margin))
    reasons = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    return GateDecision(passed=not reasons, reasons=reasons, checks=checks)


def _step_check(metrics: Mapping[str, Any], blind: Mapping[str, Any] | None, margin: float) -> GateCheck:
    """``moves_with_programs`` (module docstring); ``blind``: the seasonal
    naive's metrics (0 when it has none)."""
    ratio = float(metrics.get("step_ratio", math.nan))
    pairs = int(metrics.get("step_pairs", 0) or 0)
    floor = float((blind or {}).get("step_ratio", math.nan))
    floor = 0.0 if math.isnan(floor) else floor
    limit = floor + margin
    if math.isnan(ratio) or pairs < MIN_STEP_PAIRS:
        detail = (
            f"not judged: {pairs} program starts and ends in the test weeks (fewer than {MIN_STEP_PAIRS})"
        )
        return GateCheck("moves_with_programs", True, detail, None if math.isnan(ratio) else ratio, limit)
    ok = ratio > limit
    detail = (
        f"at {pairs} program starts and ends the predicted jump is {ratio:.2f} x the actual"
        f" {'>' if ok else '<='} seasonal naive {floor:.2f} + {margin:g}"
    )
    return GateCheck("moves_with_programs", ok, detail, ratio, limit)
