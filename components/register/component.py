"""KFP component ``register``: the fitted model, its evaluation and the
reviewer's report into ``<lake>/models/roi/<version>/``, atomically, as
``pending_approval`` or ``rejected_by_gate``. The ``report`` HTML artifact is
the same page, rendered by the Kubeflow UI."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Model, Output, python_component


def register_model(
    lake_uri: str,
    config_json: str,
    master_version: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    tuner: Input[Artifact],
    report: Output[HTML],
    trained_because: str = "",
) -> NamedTuple("RegisterOutputs", [("version", str), ("status", str)]):  # type: ignore[valid-type]
    """Returns the new version's name and status."""
    from collections import namedtuple
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.registry.store import REPORT_FILE
    from autoroi.training import register_candidate

    setup_logging()
    cfg = config_from_json(config_json)
    lake = open_lake(lake_uri, cfg.lake)
    mv = register_candidate(
        lake, cfg, master_version, model.path, evaluation.path, tuner.path, trained_because=trained_because
    )
    page = lake.fs.open_input_stream(f"{mv.path}/{REPORT_FILE}").readall()
    Path(report.path).write_bytes(page)
    RegisterOutputs = namedtuple("RegisterOutputs", ["version", "status"])
    return RegisterOutputs(mv.version, mv.status)


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(register_model)
