"""KFP component ``publish``: curated tables and the master version into the
lake, then ``latest``. Runs only after validation and the PII scan passed."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output, python_component


def publish(
    lake_uri: str,
    config_json: str,
    curated: Input[Dataset],
    master: Input[Dataset],
    metrics: Output[Metrics],
) -> NamedTuple("PublishOutputs", [("changed", bool), ("version", str), ("report", str)]):  # type: ignore[valid-type]
    """Publish atomically; ``changed`` is False when the data are the same as
    the current ``latest`` (which then stays where it is)."""
    import json
    from collections import namedtuple

    from autoroi.config import config_from_json
    from autoroi.lake.datasets import read_dataset_dir, read_table_dir
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.release import publish_ingest, read_report

    setup_logging()
    cfg = config_from_json(config_json)
    result = publish_ingest(
        open_lake(lake_uri, cfg.lake),
        cfg,
        read_table_dir(curated.path),
        read_dataset_dir(master.path),
        read_report(master.path),
        source=read_report(curated.path).get("source"),
    )
    metrics.log_metric("changed", int(result.changed))
    metrics.log_metric("curated_tables_changed", len(result.curated_changed))
    PublishOutputs = namedtuple("PublishOutputs", ["changed", "version", "report"])
    return PublishOutputs(result.changed, result.version, json.dumps(result.to_dict()))


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(publish)
