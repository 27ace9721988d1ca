"""The ``ingest`` pipeline: replicate (later: anonymize, preprocess, publish,
and train when the master table changed).

The same definition runs locally through ``kfp.local`` and on a cluster; only
the runner differs.
"""

from typing import Any

from kfp import dsl

from autoroi.config import AutoroiConfig
from components.replicate import component as replicate_component

PIPELINE_NAME = "autoroi-ingest"


def build_pipeline(cfg: AutoroiConfig) -> Any:
    """The pipeline function, with component images taken from ``cfg``."""
    replicate_op = replicate_component.build(cfg.kfp.base_image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Replicate the dealer database into the lake's raw zone"
        " (full load, then change capture).",
    )
    def ingest(source_url: str, lake_uri: str, config_json: str) -> str:
        """
        Args:
            source_url: SQLAlchemy URL of the dealer database, without password (it comes from a Secret).
            lake_uri: Lake root: a folder or s3://bucket/prefix.
            config_json: The effective autoroi configuration (no secrets), as JSON.
        """
        replicate_task = replicate_op(source_url=source_url, lake_uri=lake_uri, config_json=config_json)
        replicate_task.set_display_name("Replicate dealer database")
        replicate_task.set_caching_options(False)  # the source changes under the same parameters
        return replicate_task.outputs["Output"]

    return ingest
