"""KFP component ``record_deployment``: the registry says ``deployed`` (the
previous production version becomes ``retired``), and the rollout is recorded
under ``<lake>/deployments/roi/``."""

from kfp import dsl
from kfp.dsl import python_component


def record_deployment(lake_uri: str, config_json: str, version: str, previous: str, smoke: str) -> str:
    """Returns the new registry status."""
    import json

    from autoroi.config import config_from_json
    from autoroi.deploy.targets import record_deployment
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.registry import DEPLOYED, set_status

    setup_logging()
    cfg = config_from_json(config_json)
    lake = open_lake(lake_uri, cfg.lake)
    mv = set_status(lake, version, DEPLOYED, "autoroi deploy", f"promoted on {cfg.serving.target}")
    record_deployment(
        lake,
        version,
        "promoted",
        {"previous": previous or None, "target": cfg.serving.target, "smoke": json.loads(smoke)},
    )
    return mv.status


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(record_deployment)
