"""What a step needs on Kubernetes beyond its image (``kfp-kubernetes``):
Secrets as environment variables (never parameters), nodes, retries.

Zones of the lake map to two S3 credentials: ``raw`` (the restricted zone:
only replicate and anonymize get it) and ``lake`` (everything else; the
bucket policy or prefix-scoped keys behind it cannot read ``raw/``, see
manifests/README.md). kfp.local ignores all of this; it is compiled into the
pipeline's platform spec for the cluster.
"""

from __future__ import annotations

from typing import Any

from kfp import kubernetes

from autoroi.config import AutoroiConfig

S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def lake_credentials(task: Any, cfg: AutoroiConfig, *, raw: bool = False) -> Any:
    c = cfg.cluster
    kubernetes.use_secret_as_env(
        task,
        secret_name=c.lake_raw_secret if raw else c.lake_secret,
        secret_key_to_env={c.s3_access_key_key: S3_ENV[0], c.s3_secret_key_key: S3_ENV[1]},
    )
    return task


def source_password(task: Any, cfg: AutoroiConfig) -> Any:
    c = cfg.cluster
    kubernetes.use_secret_as_env(
        task, secret_name=c.db_secret, secret_key_to_env={c.db_password_key: cfg.source.password_env}
    )
    return task


def hmac_key(task: Any, cfg: AutoroiConfig) -> Any:
    c = cfg.cluster
    kubernetes.use_secret_as_env(
        task, secret_name=c.hmac_secret, secret_key_to_env={c.hmac_key_key: cfg.anonymize.hmac_key_env}
    )
    return task


def notify_webhook(task: Any, cfg: AutoroiConfig) -> Any:
    c = cfg.cluster
    if c.notify_secret:
        kubernetes.use_secret_as_env(
            task, secret_name=c.notify_secret, secret_key_to_env={"webhook_url": cfg.notify.webhook_url_env}
        )
    return task


def transient(task: Any, cfg: AutoroiConfig) -> Any:
    """Retries with backoff for steps that talk to a database, S3 or an API
    and are safe to repeat (each commits atomically or not at all)."""
    if cfg.cluster.retries:
        task.set_retry(num_retries=cfg.cluster.retries, backoff_duration="30s", backoff_factor=2.0)
    return task


def gpu_trainer(task: Any, cfg: AutoroiConfig) -> Any:
    """The optional GPU node for tune and fit."""
    c = cfg.cluster
    if not c.gpu_trainer:
        return task
    for label, value in sorted(c.gpu_node_selector.items()):
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    kubernetes.add_toleration(task, key=c.gpu_toleration_key, operator="Exists", effect="NoSchedule")
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    return task


def pull_secret(task: Any, cfg: AutoroiConfig) -> Any:
    if cfg.cluster.image_pull_secret:
        kubernetes.set_image_pull_secrets(task, [cfg.cluster.image_pull_secret])
    return task


def resources(
    task: Any, cpu: str, memory: str, cpu_limit: str | None = None, memory_limit: str | None = None
) -> Any:
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_cpu_limit(cpu_limit or cpu).set_memory_limit(memory_limit or memory)
    return task


def restricted(task: Any, cfg: AutoroiConfig) -> Any:
    """Non-root, as the namespace's restricted Pod Security level demands."""
    kubernetes.set_security_context(task, run_as_user=cfg.cluster.run_as_user, run_as_non_root=True)
    return task


def spark_on_kubernetes(task: Any, cfg: AutoroiConfig, image: str) -> Any:
    """Only when ``master.spark.master`` is ``k8s://...``: the driver (this
    step) needs spark-defaults from the ConfigMap, its pod IP as the host
    executors call back, and the executor image."""
    if not cfg.master.spark.master.startswith("k8s://"):
        return task
    kubernetes.use_config_map_as_volume(
        task, config_map_name=cfg.cluster.spark_config_map, mount_path="/etc/autoroi/spark"
    )
    task.set_env_variable("SPARK_CONF_DIR", "/etc/autoroi/spark")
    task.set_env_variable("AUTOROI_SPARK_EXECUTOR_IMAGE", image)
    kubernetes.use_field_path_as_env(task, env_name="SPARK_LOCAL_HOSTNAME", field_path="status.podIP")
    kubernetes.use_field_path_as_env(task, env_name="SPARK_DRIVER_BIND_ADDRESS", field_path="status.podIP")
    return task
