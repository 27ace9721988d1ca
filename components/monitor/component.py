"""KFP component ``monitor``: judge the deployed model on the master version
``publish`` just wrote (realized accuracy, lift of the programs that ran,
drift), keep the record under ``<lake>/monitoring/roi/``, alert when it is
not ok, and decide whether ``train`` runs (new master, or degraded)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output, python_component


def monitor_model(
    lake_uri: str,
    config_json: str,
    master_version: str,
    changed: bool,
    train_on_change: bool,
    metrics: Output[Metrics],
    summary: Output[Markdown],
) -> NamedTuple("MonitorOutputs", [("status", str), ("train", bool), ("reason", str)]):  # type: ignore[valid-type]
    """Returns the status, whether to train, and why."""
    from collections import namedtuple
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.monitoring.run import alert, monitor_master, summary_markdown, train_decision

    setup_logging()
    cfg = config_from_json(config_json)
    lake = open_lake(lake_uri, cfg.lake)
    record: dict = {"status": "off", "master_version": master_version, "reasons": []}
    if cfg.monitoring.enabled:
        record = monitor_master(lake, cfg, master_version)
        alert(cfg, lake, record)
    acc = record.get("accuracy") or {}
    for key in ("wape", "reference_wape", "ratio", "weeks"):
        if isinstance(acc.get(key), int | float):
            metrics.log_metric(key, acc[key])
    metrics.log_metric("drifted", len((record.get("drift") or {}).get("drifted", [])))
    Path(summary.path).write_text(summary_markdown(record))
    train, reason = train_decision(
        changed=changed,
        train_on_change=train_on_change,
        on_degraded=cfg.training.on_degraded,
        status=str(record["status"]),
        master_version=master_version,
    )
    MonitorOutputs = namedtuple("MonitorOutputs", ["status", "train", "reason"])
    return MonitorOutputs(str(record["status"]), train, reason)


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image (trainer: the check loads the model)."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(monitor_model)
