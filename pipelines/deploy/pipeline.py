"""The ``deploy`` pipeline: verify approval and digest -> roll out -> smoke
test -> promote or roll back -> record the deployment in the registry.

Started by ``autoroi approve`` (or by hand in the Kubeflow UI with a version).
The target comes from ``serving.target``: an InferenceService ``roi`` with a
canary revision on a cluster, model server processes behind the local endpoint
otherwise; the steps and their order are the same.
"""

from typing import Any

from kfp import dsl

from autoroi.config import AutoroiConfig
from components.promote import component as promote_component
from components.record_deployment import component as record_component
from components.roll_back import component as roll_back_component
from components.roll_out import component as roll_out_component
from components.smoke_test import component as smoke_component
from components.verify_approval import component as verify_component
from pipelines import cluster as k8s

PIPELINE_NAME = "autoroi-deploy"


def build_pipeline(cfg: AutoroiConfig) -> Any:
    image = cfg.kfp.image("components")
    verify_op = verify_component.build(image)
    roll_out_op = roll_out_component.build(image)
    smoke_op = smoke_component.build(image)
    promote_op = promote_component.build(image)
    roll_back_op = roll_back_component.build(image)
    record_op = record_component.build(image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Roll an approved ROI model version out to KServe: canary, smoke test,"
        " promote or roll back.",
    )
    def deploy(lake_uri: str, config_json: str, version: str) -> str:
        """Deploy one approved model version with a canary and a smoke test.

        Args:
            lake_uri: Lake root: a folder or s3://bucket/prefix.
            config_json: The effective autoroi configuration (no secrets), as JSON.
            version: The approved model version to deploy.
        """
        verify = verify_op(lake_uri=lake_uri, config_json=config_json, version=version)
        verify.set_display_name("Verify approval and digest")
        rollout = roll_out_op(
            lake_uri=lake_uri, config_json=config_json, version=version, digest=verify.output
        )
        rollout.set_display_name("Roll out new version (canary)")
        smoke = smoke_op(lake_uri=lake_uri, config_json=config_json, version=version).after(rollout)
        smoke.set_display_name("Smoke test recorded requests")
        for task in (verify, rollout, smoke):
            task.set_caching_options(False)  # each acts on the live endpoint
        with dsl.If(smoke.outputs["passed"] == True, name="smoke-passed"):  # noqa: E712 (a pipeline condition)
            promote = promote_op(lake_uri=lake_uri, config_json=config_json, version=version)
            promote.set_display_name("Promote to 100% traffic")
            record = record_op(
                lake_uri=lake_uri,
                config_json=config_json,
                version=version,
                previous=rollout.output,
                smoke=smoke.outputs["result"],
            ).after(promote)
            record.set_display_name("Record deployment in registry")
            promote.set_caching_options(False)
            record.set_caching_options(False)
        with dsl.Else(name="smoke-failed"):
            back = roll_back_op(
                lake_uri=lake_uri,
                config_json=config_json,
                version=version,
                previous=rollout.output,
                smoke=smoke.outputs["result"],
            )
            back.set_display_name("Roll back (smoke test failed)")
            back.set_caching_options(False)
        # on a cluster: lake credentials without raw/; the Kubernetes API through the run's ServiceAccount
        for task in (verify, rollout, smoke, promote, record, back):
            k8s.lake_credentials(task, cfg)
            k8s.pull_secret(task, cfg)
            k8s.restricted(task, cfg)
            k8s.resources(task, "250m", "512Mi", "1", "1Gi")
        for task in (verify, record):
            k8s.transient(task, cfg)
        return verify.output

    return deploy
