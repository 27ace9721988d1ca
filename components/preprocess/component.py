"""KFP component ``preprocess``: the curated tables into the master table, with Spark.

Thin by design: parse the config, call ``autoroi.master``, report. The Spark
session comes from ``master.spark`` (``local[*]`` by default; a
``k8s://https://...`` master and its settings in a cluster).

Input ``curated``: ``<table>/*.parquet`` per table (and ``_report.json``);
with a cluster master and an ``s3://`` pipeline root on the lake's store, the
executors read it there through ``s3a://`` (make test-scale).
Output ``master``: ``part-00000.parquet`` (one row per published cell and
week, sorted; the same input gives the same bytes) and ``_report.json``
(k, rows, units, merged and suppressed cell-weeks and units, seconds).
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output, python_component


def preprocess(
    config_json: str, curated: Input[Dataset], master: Output[Dataset], metrics: Output[Metrics]
) -> str:
    """Build the k-anonymous, featured master table; returns the report as JSON."""
    import json
    import os

    from autoroi.config import config_from_json
    from autoroi.logs import setup_logging
    from autoroi.master.io import preprocess_dir

    setup_logging()
    full = config_from_json(config_json)
    cfg = full.master
    executor_image = os.environ.get("AUTOROI_SPARK_EXECUTOR_IMAGE")  # set for Spark on Kubernetes
    if executor_image and cfg.spark.master.startswith("k8s://"):
        cfg.spark.conf.setdefault("spark.kubernetes.container.image", executor_image)
    # a cluster's executors cannot read this pod's copy: they read the artifact
    # where KFP stored it, when that is the lake's S3 store (s3a://)
    remote = curated.uri.startswith("s3://") and not cfg.spark.master.startswith("local")
    result = preprocess_dir(cfg, curated.uri if remote else curated.path, master.path, full.lake)
    for name, value in result.metrics().items():
        metrics.log_metric(name, value)
    return json.dumps(result.to_dict())


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(preprocess)
