"""KFP component ``tune``: Keras Tuner search on one master version.

The tuner's project directory is the output artifact ``tuner`` (a fresh folder
every run, so a search is never skipped silently); ``tuning.json`` beside it
holds the trials and the best hyperparameters, which later steps read.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output, python_component


def tune_hyperparameters(
    lake_uri: str,
    config_json: str,
    master_version: str,
    tuner: Output[Artifact],
    metrics: Output[Metrics],
) -> NamedTuple("TuneOutputs", [("master_version", str), ("hyperparameters", str), ("epochs", int)]):  # type: ignore[valid-type]
    """Search the configured space within its trial and time budgets; an empty
    ``master_version`` means the one ``latest`` points at."""
    import json
    from collections import namedtuple

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.training import resolve_master, run_tuning

    setup_logging()
    cfg = config_from_json(config_json)
    lake = open_lake(lake_uri, cfg.lake)
    version = resolve_master(lake, master_version or None)
    doc = run_tuning(lake, cfg, version, tuner.path)
    metrics.log_metric("trials", len(doc["trials"]))
    metrics.log_metric("best_val_loss", round(doc["best_score"], 6))
    metrics.log_metric("best_epochs", doc["best_epochs"])
    metrics.log_metric("seconds", round(doc["seconds"], 1))
    TuneOutputs = namedtuple("TuneOutputs", ["master_version", "hyperparameters", "epochs"])
    return TuneOutputs(version, json.dumps(doc["best_hyperparameters"]), doc["epochs"])


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(tune_hyperparameters)
