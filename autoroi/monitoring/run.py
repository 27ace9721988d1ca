"""The ingest pipeline's ``monitor`` step, with its lake I/O: judge the
deployed model on the new master version, keep the record, alert, and decide
whether ``train`` runs."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from typing import Any

from autoroi.config import AutoroiConfig
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import Lake
from autoroi.monitoring import predictions
from autoroi.monitoring.monitor import DEGRADED, OK, judge

log = logging.getLogger(__name__)

MONITORING_ZONE = "monitoring/roi"
NOT_DEPLOYED = "not_deployed"


def record_path(lake: Lake, master_version: str) -> str:
    return lake.path(MONITORING_ZONE, f"{master_version}.json")


def monitor_master(
    lake: Lake, cfg: AutoroiConfig, master_version: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The monitoring record of ``master_version`` (also written to
    ``<lake>/monitoring/roi/<master_version>.json``); status ``not_deployed``
    (and nothing written) while no version is deployed."""
    from autoroi.model.artifact import load_model
    from autoroi.registry import fetch_artifact, production_version
    from autoroi.registry.store import deployed_at as deployed_time

    prod = production_version(lake)
    if prod is None or prod.master_version is None:
        log.info("monitor: no model version is deployed; nothing to judge")
        return {"status": NOT_DEPLOYED, "master_version": master_version, "reasons": []}
    masters = MasterStore(lake)
    reference = masters.read(prod.master_version).to_pandas()
    current = masters.read(master_version).to_pandas()
    reference_wape = float(prod.metrics.get("wape") or 0.0)
    with tempfile.TemporaryDirectory(prefix="autoroi-monitor-") as tmp:
        model = load_model(fetch_artifact(lake, prod.version, tmp))
        figures = judge(
            model,
            current,
            reference,
            reference_wape=reference_wape,
            reference_lifts={k: v for k, v in prod.metrics.items() if k.startswith("lift_ratio")},
            cfg=cfg.monitoring,
        )
    deployed_at = deployed_time(prod) or None
    record = {
        "master_version": master_version,
        "created_at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "model_version": prod.version,
        "model_master_version": prod.master_version,
        "deployed_at": deployed_at,
        **figures,
        "predictions_logged": predictions.count_predictions(
            lake, dt.date.fromisoformat(deployed_at[:10]) if deployed_at else None
        ),
    }
    lake.write_json(record_path(lake, master_version), record)
    log.info("monitor: %s on %s (%s)", record["status"], master_version, "; ".join(record["reasons"]) or "-")
    return record


def train_decision(
    *, changed: bool, train_on_change: bool, on_degraded: bool, status: str, master_version: str
) -> tuple[bool, str]:
    """Whether ingest trains, and why (told to the reviewer)."""
    if status == DEGRADED and on_degraded:
        return True, f"the monitor found the deployed model degraded on master {master_version}"
    if changed and train_on_change:
        return True, f"new master version {master_version}"
    return False, ""


def alert(cfg: AutoroiConfig, lake: Lake, record: dict[str, Any]) -> list[str]:
    """Tell the configured channels when the status is not ok; returns the
    channels that delivered."""
    from autoroi.notify import MonitorAlert, notify_reviewer

    if record["status"] in (OK, NOT_DEPLOYED, "no_data"):
        return []
    message = MonitorAlert(
        version=str(record["model_version"]),
        status=str(record["status"]),
        master_version=str(record["master_version"]),
        reasons=[str(r) for r in record.get("reasons") or []],
        record=lake.display(record_path(lake, str(record["master_version"]))),
    )
    return notify_reviewer(message, cfg)


def summary_markdown(record: dict[str, Any]) -> str:
    """The step's Markdown artifact in the Kubeflow UI."""
    lines = [f"### Monitor: **{record['status']}** on master `{record['master_version']}`", ""]
    if record.get("model_version"):
        lines.append(
            f"- deployed model: `{record['model_version']}` (trained on `{record['model_master_version']}`)"
        )
    acc = record.get("accuracy") or {}
    if acc.get("rows"):
        lines.append(
            f"- units WAPE {acc['wape']:.3f} over {acc['weeks']} observed week(s), {acc['rows']} cells;"
            f" backtest {acc['reference_wape']:.3f} ({acc['ratio']:.2f}x)"
        )
        lift = acc.get("lift") or {}
        if lift.get("ratio") is not None:
            lines.append(
                f"- lift of programs that ran: realized {lift['realized_incremental_units']:.0f} vs"
                f" predicted {lift['predicted_incremental_units']:.0f} units ({lift['ratio']:.2f}x)"
            )
    drift = record.get("drift") or {}
    for f in drift.get("features", []):
        lines.append(
            f"- drift of {f['feature']}: PSI {f['value']:.3f}{' **drifted**' if f['drifted'] else ''}"
        )
    for r in record.get("reasons") or []:
        lines.append(f"- {r}")
    return "\n".join(lines) + "\n"
