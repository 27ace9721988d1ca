"""The smoke test: recorded requests, recorded answers.

At fit time :func:`record_samples` picks a few scenarios from the master table
(every incentive type it has, several amounts, and no incentive), predicts
them with the saved artifact as serving loads it, and stores both in the
artifact folder (so the registry digest covers them). At rollout
:func:`smoke_test` sends the same requests to the new server over HTTP (v1 and
v2) and compares the answers within a tolerance: a server that loads a
different artifact, mangles features or mis-parses requests fails before it
receives traffic.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoroi.deploy.rollout import SmokeResult
from autoroi.model import features as F
from autoroi.model.roi import ROI_COLUMNS

log = logging.getLogger(__name__)

SAMPLES_FILE = "smoke_samples.json"
MODEL_NAME = "roi"


def sample_scenarios(master: pd.DataFrame, n: int = 24, seed: int = 0) -> list[dict[str, Any]]:
    """Observed finest-level scenarios of the last weeks: up to ``n``, spread
    over incentive types, with a few amounts changed (what-if) and a few
    without incentive."""
    obs = F.observed_scenarios(master)
    ctx_level = F.normalize_master(master)[F.CELL_LEVEL].to_numpy()
    obs = obs[ctx_level == F.FINEST_LEVEL]
    if obs.empty:
        raise ValueError("the master table has no finest-level cells to draw smoke-test samples from")
    weeks = sorted(obs[F.WEEK].unique())
    recent = obs[obs[F.WEEK].isin(weeks[-26:])]
    rng = np.random.default_rng(seed)
    picks = []
    for _, group in recent.groupby(F.INCENTIVE_TYPE, sort=True):
        take = min(len(group), max(2, n // 8))
        picks.append(group.iloc[rng.choice(len(group), size=take, replace=False)])
    chosen = pd.concat(picks).head(n).reset_index(drop=True)
    out = []
    for i, row in enumerate(chosen.to_dict("records")):
        amount = float(row[F.INCENTIVE_AMOUNT])
        kind = str(row[F.INCENTIVE_TYPE])
        if kind != F.NO_INCENTIVE and i % 3 == 1:
            amount = round(amount * 1.5 + 100.0, 2)  # a what-if amount, not only what happened
        out.append(
            {
                F.REGION: str(row[F.REGION]),
                F.VEHICLE_MODEL: str(row[F.VEHICLE_MODEL]),
                F.WEEK: str(pd.Timestamp(row[F.WEEK]).date()),
                F.INCENTIVE_TYPE: kind,
                F.INCENTIVE_AMOUNT: round(amount, 2),
            }
        )
    return out


def record_samples(model_dir: str | Path, master: pd.DataFrame, n: int = 24) -> Path:
    """Predict the samples with the artifact as saved and store requests and
    answers beside it."""
    from autoroi.model.artifact import load_model

    model = load_model(model_dir)
    instances = sample_scenarios(master, n)
    pred = model.predict(instances)
    outputs = [{c: float(pred[c].iloc[i]) for c in ROI_COLUMNS} for i in range(len(pred))]
    path = Path(model_dir) / SAMPLES_FILE
    path.write_text(json.dumps({"instances": instances, "outputs": outputs}, indent=2))
    return path


def read_samples(model_dir: str | Path) -> dict[str, Any]:
    doc = json.loads((Path(model_dir) / SAMPLES_FILE).read_text())
    if not doc.get("instances") or len(doc["instances"]) != len(doc.get("outputs", [])):
        raise ValueError(f"{Path(model_dir) / SAMPLES_FILE}: no samples, or requests and answers disagree")
    return doc


def _post(url: str, body: Mapping[str, Any], timeout: float) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _close(expected: float, got: Any, rtol: float, atol: float) -> bool:
    g = math.nan if got is None else float(got)  # JSON has no NaN: an undefined ROI comes back as null
    if math.isnan(expected) or math.isnan(g):
        return math.isnan(expected) and math.isnan(g)
    return abs(g - expected) <= atol + rtol * abs(expected)


def v2_request(instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The same scenarios as Open Inference Protocol v2 input tensors."""
    cols = {f: [inst[f] for inst in instances] for f in F.SCENARIO_FIELDS}
    tensors = []
    for name, values in cols.items():
        if name == F.INCENTIVE_AMOUNT:
            tensors.append({"name": name, "shape": [len(values)], "datatype": "FP64", "data": values})
        else:
            tensors.append({"name": name, "shape": [len(values)], "datatype": "BYTES", "data": values})
    return {"inputs": tensors}


def smoke_test(
    base_url: str,
    samples: Mapping[str, Any],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    timeout_s: float = 30.0,
) -> SmokeResult:
    """Both protocols, every recorded sample, every ROI field."""
    base = base_url.rstrip("/")
    instances, expected = samples["instances"], samples["outputs"]
    failures: list[str] = []
    worst = 0.0
    requests = 0
    answers: dict[str, list[dict[str, Any]]] = {}
    try:
        requests += 1
        v1 = _post(f"{base}/v1/models/{MODEL_NAME}:predict", {"instances": instances}, timeout_s)
        answers["v1"] = list(v1["predictions"])
        requests += 1
        v2 = _post(f"{base}/v2/models/{MODEL_NAME}/infer", v2_request(instances), timeout_s)
        by_name = {o["name"]: o["data"] for o in v2["outputs"]}
        answers["v2"] = [
            {c: by_name.get(c, [None] * len(instances))[i] for c in ROI_COLUMNS}
            for i in range(len(instances))
        ]
    except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError) as e:
        detail = e.read().decode(errors="replace")[:300] if isinstance(e, urllib.error.HTTPError) else ""
        failures.append(f"request {requests} to {base} failed: {e} {detail}".strip())
        return SmokeResult(False, requests, math.inf, failures)
    for proto, got in answers.items():
        if len(got) != len(expected):
            failures.append(f"{proto}: {len(got)} predictions for {len(expected)} requests")
            continue
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            for c in ROI_COLUMNS:
                w, h = float(want[c]), have.get(c)
                if h is not None and not math.isnan(w):
                    worst = max(worst, abs(float(h) - w))
                if not _close(w, h, rtol, atol):
                    failures.append(f"{proto} sample {i} {c}: expected {w:.6g}, got {h}")
    passed = not failures
    log.info(
        "smoke test of %s: %s (%d samples x 2 protocols, largest difference %.3g)",
        base,
        "passed" if passed else f"FAILED ({len(failures)} mismatches)",
        len(instances),
        worst,
    )
    return SmokeResult(passed, requests, worst, failures)
