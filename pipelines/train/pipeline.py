"""The ``train`` pipeline: tune -> validate -> fit -> register -> notify.

Ends with a model version in the registry that is ``pending_approval`` (gates
passed) or ``rejected_by_gate`` (with the reasons), and a reviewer who has been
told. ``validate`` and ``fit`` both need only ``tune``'s result, so a cluster
runs them side by side. ``ingest`` nests this pipeline under ``dsl.If`` when
the master version changed; ``autoroi trigger`` does the same from outside.
"""

from typing import Any, NamedTuple

from kfp import dsl

from autoroi.config import AutoroiConfig
from components.fit import component as fit_component
from components.notify import component as notify_component
from components.register import component as register_component
from components.tune import component as tune_component
from components.validate import component as validate_component
from pipelines import cluster as k8s

PIPELINE_NAME = "autoroi-train"


class TrainOutputs(NamedTuple):
    master_version: str
    version: str
    status: str


def build_pipeline(cfg: AutoroiConfig) -> Any:
    """The pipeline function, with component images and resource requests
    from ``cfg``."""
    image = cfg.kfp.image("trainer")
    res = cfg.kfp.train_resources
    tune_op = tune_component.build(image)
    validate_op = validate_component.build(image)
    fit_op = fit_component.build(image)
    register_op = register_component.build(image)
    notify_op = notify_component.build(cfg.kfp.image("components"))

    def heavy(task: Any) -> Any:
        return (
            task.set_cpu_request(res.cpu_request)
            .set_cpu_limit(res.cpu_limit)
            .set_memory_request(res.memory_request)
            .set_memory_limit(res.memory_limit)
        )

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Tune the ROI model with Keras Tuner, backtest it against baselines and the production"
        " model, fit it on the whole master table, register it with its report, notify a reviewer.",
    )
    def train(
        lake_uri: str, config_json: str, master_version: str = "", trained_because: str = ""
    ) -> TrainOutputs:
        """Tune, validate, fit, register and notify for one master version.

        Args:
            lake_uri: Lake root: a folder or s3://bucket/prefix.
            config_json: The effective autoroi configuration (no secrets), as JSON.
            master_version: Master table version to train on; empty for the one `latest` points at.
            trained_because: Why this run trains (new master, degraded monitor); the reviewer is told.
        """
        tune = heavy(tune_op(lake_uri=lake_uri, config_json=config_json, master_version=master_version))
        tune.set_display_name("Tune hyperparameters (Keras Tuner)")
        tune.set_caching_options(False)  # an empty master_version means "latest", which moves

        validate = heavy(
            validate_op(
                lake_uri=lake_uri,
                config_json=config_json,
                master_version=tune.outputs["master_version"],
                hyperparameters=tune.outputs["hyperparameters"],
                epochs=tune.outputs["epochs"],
            )
        )
        validate.set_display_name("Validate: backtest, baselines, gates")
        validate.set_caching_options(False)  # gates compare with the production model, which changes

        fit = heavy(
            fit_op(
                lake_uri=lake_uri,
                config_json=config_json,
                master_version=tune.outputs["master_version"],
                hyperparameters=tune.outputs["hyperparameters"],
                epochs=tune.outputs["epochs"],
            )
        )
        fit.set_display_name("Fit final model")

        register = register_op(
            lake_uri=lake_uri,
            config_json=config_json,
            master_version=tune.outputs["master_version"],
            model=fit.outputs["model"],
            evaluation=validate.outputs["evaluation"],
            tuner=tune.outputs["tuner"],
            trained_because=trained_because,
        )
        register.set_display_name("Register model version and report")
        register.set_caching_options(False)  # writes a new registry version

        notify = notify_op(lake_uri=lake_uri, config_json=config_json, version=register.outputs["version"])
        notify.set_display_name("Notify reviewer")
        notify.set_caching_options(False)

        # on a cluster (kfp.local ignores these): lake credentials without raw/, GPU nodes if configured
        for task in (tune, validate, fit, register, notify):
            k8s.lake_credentials(task, cfg)
            k8s.pull_secret(task, cfg)
            k8s.restricted(task, cfg)
        for task in (tune, fit):
            k8s.gpu_trainer(task, cfg)
        k8s.notify_webhook(notify, cfg)
        for task in (register, notify):
            k8s.transient(task, cfg)
        k8s.resources(register, "500m", "1Gi", "1", "2Gi")
        k8s.resources(notify, "100m", "256Mi", "500m", "512Mi")

        return TrainOutputs(
            tune.outputs["master_version"], register.outputs["version"], register.outputs["status"]
        )

    return train
