"""KFP component ``fit``: the final fit on every row of the master version,
with the tuned hyperparameters; the output ``model`` holds the servable
artifact (network, preprocessing, context, take rates)."""

from kfp import dsl
from kfp.dsl import Metrics, Model, Output, python_component


def fit_model(
    lake_uri: str,
    config_json: str,
    master_version: str,
    hyperparameters: str,
    epochs: int,
    model: Output[Model],
    metrics: Output[Metrics],
) -> str:
    """Returns the artifact's sha256 digest."""
    import json

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.model.artifact import artifact_digest
    from autoroi.training import run_fit

    setup_logging()
    cfg = config_from_json(config_json)
    path = run_fit(
        open_lake(lake_uri, cfg.lake), cfg, master_version, json.loads(hyperparameters), epochs, model.path
    )
    model.metadata["master_version"] = master_version
    metrics.log_metric("epochs", epochs)
    return artifact_digest(path)


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(fit_model)
