"""KFP component ``validate``: rolling-origin backtest of the tuned network
against the baselines (and the production model), then the gates.

A failed gate does not fail the step: the version is still fitted and
registered, as ``rejected_by_gate`` with the reasons, so a reviewer sees why.
The ``gate`` Markdown artifact shows the decision in the Kubeflow UI.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Metrics, Output, python_component


def validate_model(
    lake_uri: str,
    config_json: str,
    master_version: str,
    hyperparameters: str,
    epochs: int,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    gate: Output[Markdown],
) -> NamedTuple("ValidateOutputs", [("passed", bool), ("decision", str)]):  # type: ignore[valid-type]
    """Backtest on at least three time folds; metrics of every model go to
    ``evaluation``, the candidate's to ``metrics``."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.training import gate_markdown, run_validation

    setup_logging()
    cfg = config_from_json(config_json)
    doc = run_validation(
        open_lake(lake_uri, cfg.lake),
        cfg,
        master_version,
        json.loads(hyperparameters),
        epochs,
        evaluation.path,
    )
    for name, value in doc["metrics"]["candidate"].items():
        if isinstance(value, int | float):
            metrics.log_metric(name, value)
    Path(gate.path).write_text(gate_markdown(doc["gates"], doc["metrics"]))
    ValidateOutputs = namedtuple("ValidateOutputs", ["passed", "decision"])
    return ValidateOutputs(bool(doc["gates"]["passed"]), json.dumps(doc["gates"]))


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(validate_model)
