"""The rollout target the config asks for, and the deployment records.

Every step of the ``deploy`` pipeline builds its target from the config, so
the steps share nothing but the target's own state (the InferenceService on a
cluster, ``endpoint.json`` and the candidates' files locally).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from autoroi.config import AutoroiConfig
from autoroi.deploy.rollout import RolloutTarget
from autoroi.lake.storage import Lake
from autoroi.registry import version_path
from autoroi.registry.store import ARTIFACT_DIR

log = logging.getLogger(__name__)

DEPLOYMENTS_ZONE = "deployments"


def make_target(cfg: AutoroiConfig, lake_uri: str) -> RolloutTarget:
    s = cfg.serving
    args = (
        "--max-batch",
        str(s.max_batch),
        "--access-log",
        str(s.access_log).lower(),
        "--log-level",
        "WARNING",
    )
    if s.target == "local":
        from autoroi.deploy.local import LocalTarget

        return LocalTarget(s.state_dir, lake_uri, host=s.host, server_args=args)
    if s.target == "docker":
        from autoroi.deploy.docker import DockerTarget, EngineAPI

        # the lake's S3 settings as the InferenceService's predictor gets them (not secrets)
        lake_env = {"AUTOROI_LAKE__URI": lake_uri, "AUTOROI_LAKE__S3_REGION": cfg.lake.s3_region}
        if cfg.lake.s3_endpoint_url:
            lake_env["AUTOROI_LAKE__S3_ENDPOINT_URL"] = cfg.lake.s3_endpoint_url
        return DockerTarget(
            s.state_dir,
            lake_uri,
            image=s.image,
            api=EngineAPI(s.docker_socket),
            host=s.host,
            server_args=args,
            extra_env=lake_env,
        )
    from autoroi.deploy.kserve import KServeTarget, kubernetes_api

    api = kubernetes_api(s.in_cluster, s.kubeconfig, s.kube_context)
    return KServeTarget(
        api,
        s.namespace,
        image=s.image,
        canary_percent=s.canary_percent,
        lake_uri=lake_uri,
        options=serving_options(cfg),
    )


def serving_options(cfg: AutoroiConfig) -> Any:
    """The predictor's settings from the config: the lake's S3 endpoint and
    region, the S3 credentials without access to raw/, the autoscaler's, and
    the payload logger's sink (``monitoring``)."""
    from autoroi.deploy.kserve import ServingOptions, sink_url

    c = cfg.cluster
    m = cfg.monitoring
    return ServingOptions(
        s3_secret=c.lake_secret,
        s3_secret_keys={
            "AWS_ACCESS_KEY_ID": c.s3_access_key_key,
            "AWS_SECRET_ACCESS_KEY": c.s3_secret_key_key,
        },
        s3_endpoint_url=cfg.lake.s3_endpoint_url,
        s3_region=cfg.lake.s3_region,
        min_replicas=cfg.serving.min_replicas,
        max_replicas=cfg.serving.max_replicas,
        scale_metric=cfg.serving.scale_metric,
        scale_target=cfg.serving.scale_target,
        logger_url=(m.sink_url or sink_url(cfg.serving.namespace)) if m.log_predictions else None,
    )


def artifact_uri(lake: Lake, version: str) -> str:
    return lake.display(f"{version_path(lake, version)}/{ARTIFACT_DIR}")


def record_deployment(lake: Lake, version: str, outcome: str, detail: dict[str, Any]) -> str:
    """One JSON document per rollout attempt under ``<lake>/deployments/roi/``
    (promoted or rolled back), beside the registry's status history."""
    now = dt.datetime.now(dt.UTC)
    path = lake.path(DEPLOYMENTS_ZONE, "roi", f"{now:%Y%m%dT%H%M%S%fZ}-{version}.json")
    lake.sweep(lake.path(DEPLOYMENTS_ZONE, "roi"))
    lake.write_json(
        path, {"version": version, "outcome": outcome, "at": now.isoformat(timespec="seconds"), **detail}
    )
    return path
