"""KFP component ``validate_master``: data checks on the staged master table.

Fails the step (and so the run, before anything is published) when a check
fails; the report artifact names every check and its outcome.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output, python_component


def validate_master(
    lake_uri: str,
    config_json: str,
    curated: Input[Dataset],
    master: Input[Dataset],
    report: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Schema, ranges, keys, drift versus the current master, freshness."""
    import json
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.lake.datasets import read_dataset_dir, read_table_dir
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.release import check_master

    setup_logging()
    cfg = config_from_json(config_json)
    result = check_master(
        open_lake(lake_uri, cfg.lake), cfg, read_dataset_dir(master.path), read_table_dir(curated.path)
    )
    Path(report.path).write_text(json.dumps(result.to_dict(), indent=2))
    metrics.log_metric("rows", result.rows)
    metrics.log_metric("checks_failed", len(result.failed))
    result.raise_if_failed()
    return json.dumps(result.to_dict())


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(validate_master)
