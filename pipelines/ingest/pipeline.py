"""The ``ingest`` pipeline: replicate -> anonymize -> preprocess -> validate ->
scan -> publish -> monitor, then ``train`` as a nested pipeline (``dsl.If``)
when the master version changed (off with ``train_on_change=False``) or the
monitor found the deployed model degraded (``training.on_degraded``).

Steps after ``replicate`` pass their tables as pipeline artifacts (staging);
only ``publish`` writes ``curated/`` and ``master/``, and it runs only when
validation and the PII scan passed. The same definition runs locally through
``kfp.local`` and on a cluster; only the runner differs.
"""

from typing import Any, NamedTuple

from kfp import dsl

from autoroi.config import AutoroiConfig
from components.anonymize import component as anonymize_component
from components.monitor import component as monitor_component
from components.preprocess import component as preprocess_component
from components.publish import component as publish_component
from components.replicate import component as replicate_component
from components.scan import component as scan_component
from components.validate_master import component as validate_component
from pipelines import cluster as k8s
from pipelines.train.pipeline import build_pipeline as build_train

PIPELINE_NAME = "autoroi-ingest"


class IngestOutputs(NamedTuple):
    """What a run tells its caller (and ``train``'s trigger, next)."""

    replication: str
    master_version: str
    master_changed: bool
    published: str
    monitor: str


def build_pipeline(cfg: AutoroiConfig) -> Any:
    """The pipeline function, with component images taken from ``cfg``."""
    image = cfg.kfp.image("components")
    replicate_op = replicate_component.build(image)
    anonymize_op = anonymize_component.build(image)
    preprocess_op = preprocess_component.build(cfg.kfp.image("spark"))
    validate_op = validate_component.build(image)
    scan_op = scan_component.build(image)
    publish_op = publish_component.build(image)
    monitor_op = monitor_component.build(cfg.kfp.image("trainer"))  # loads the deployed model
    train_pipeline = build_train(cfg)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Replicate the dealer database into the lake, strip PII, build the"
        " k-anonymous master table with Spark, validate, scan and publish it.",
    )
    def ingest(
        source_url: str,
        lake_uri: str,
        config_json: str,
        train_on_change: bool = cfg.training.on_master_change,
    ) -> IngestOutputs:
        """Replicate, anonymize, build, validate, scan and publish; train when the master changed.

        Args:
            source_url: SQLAlchemy URL of the dealer database, without password (it comes from a Secret).
            lake_uri: Lake root: a folder or s3://bucket/prefix.
            config_json: The effective autoroi configuration (no secrets), as JSON.
            train_on_change: Run the train pipeline when this run published a new master version.
        """
        replicate = replicate_op(source_url=source_url, lake_uri=lake_uri, config_json=config_json)
        replicate.set_display_name("Replicate dealer database")
        replicate.set_caching_options(False)  # the source changes under the same parameters

        anonymize = anonymize_op(lake_uri=lake_uri, config_json=config_json).after(replicate)
        anonymize.set_display_name("Strip PII (allow-list, HMAC pseudonyms)")
        anonymize.set_caching_options(False)  # reads the raw zone, which replicate just changed

        preprocess = preprocess_op(config_json=config_json, curated=anonymize.outputs["curated"])
        preprocess.set_display_name("Build master table (Spark, k-anonymity)")

        validate = validate_op(
            lake_uri=lake_uri,
            config_json=config_json,
            curated=anonymize.outputs["curated"],
            master=preprocess.outputs["master"],
        )
        validate.set_display_name("Validate master table")
        validate.set_caching_options(False)  # compares with the lake's current master

        scan = scan_op(
            config_json=config_json,
            identifiers=anonymize.outputs["identifiers"],
            curated=anonymize.outputs["curated"],
            master=preprocess.outputs["master"],
        ).after(validate)
        scan.set_display_name("Scan outputs for PII")
        scan.set_caching_options(False)  # fingerprints of the raw zone, which changes under the same inputs

        publish = publish_op(
            lake_uri=lake_uri,
            config_json=config_json,
            curated=anonymize.outputs["curated"],
            master=preprocess.outputs["master"],
        ).after(scan)
        publish.set_display_name("Publish curated tables and master version")
        publish.set_caching_options(False)

        monitor = monitor_op(
            lake_uri=lake_uri,
            config_json=config_json,
            master_version=publish.outputs["version"],
            changed=publish.outputs["changed"],
            train_on_change=train_on_change,
        )
        monitor.set_display_name("Monitor deployed model (accuracy, lift, drift)")
        monitor.set_caching_options(False)  # judges whichever version is deployed now

        # kfp.local resolves a condition on a task's output only inside a sub-DAG
        # (a top-level one reads as false); the outer condition, on a parameter
        # every run has, makes one. On a cluster it is always true.
        with (
            dsl.If(lake_uri != "", name="lake-given"),
            dsl.If(monitor.outputs["train"] == True, name="train-needed"),  # noqa: E712 (a pipeline condition)
        ):
            train = train_pipeline(
                lake_uri=lake_uri,
                config_json=config_json,
                master_version=publish.outputs["version"],
                trained_because=monitor.outputs["reason"],
            )
            train.set_display_name("Train ROI model (new master or degraded model)")

        # on a cluster: Secrets as environment variables, resources, retries (kfp.local ignores these)
        k8s.source_password(replicate, cfg)
        k8s.lake_credentials(replicate, cfg, raw=True)  # only these two steps may read raw/
        k8s.lake_credentials(anonymize, cfg, raw=True)
        k8s.hmac_key(anonymize, cfg)
        k8s.hmac_key(scan, cfg)  # fingerprints, not raw/
        for task in (validate, publish, monitor):
            k8s.lake_credentials(task, cfg)
        for task in (replicate, publish):
            k8s.transient(task, cfg)
        k8s.resources(replicate, "1", "2Gi", "2", "4Gi")
        k8s.resources(anonymize, "1", "4Gi", "2", "8Gi")
        k8s.resources(preprocess, "2", "6Gi", "4", "12Gi")
        k8s.resources(validate, "500m", "2Gi", "1", "4Gi")
        k8s.resources(scan, "1", "4Gi", "2", "8Gi")
        k8s.resources(publish, "500m", "2Gi", "1", "4Gi")
        k8s.resources(monitor, "1", "2Gi", "2", "4Gi")
        k8s.notify_webhook(monitor, cfg)
        for task in (replicate, anonymize, preprocess, validate, scan, publish, monitor):
            k8s.pull_secret(task, cfg)
            k8s.restricted(task, cfg)
        k8s.spark_on_kubernetes(preprocess, cfg, cfg.kfp.image("spark"))

        return IngestOutputs(
            replicate.outputs["Output"],
            publish.outputs["version"],
            publish.outputs["changed"],
            publish.outputs["report"],
            monitor.outputs["status"],
        )

    return ingest
