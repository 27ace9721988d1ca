"""KFP component ``roll_back``: the smoke test failed, so the new version is
removed and the previous one keeps all traffic; the attempt is recorded and
the run fails, so nobody mistakes it for a deployment."""

from kfp import dsl
from kfp.dsl import python_component


def roll_back(lake_uri: str, config_json: str, version: str, previous: str, smoke: str) -> str:
    import json

    from autoroi.config import config_from_json
    from autoroi.deploy.rollout import DeployError
    from autoroi.deploy.targets import make_target, record_deployment
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging

    setup_logging()
    cfg = config_from_json(config_json)
    make_target(cfg, lake_uri).rollback(version)
    result = json.loads(smoke)
    path = record_deployment(
        open_lake(lake_uri, cfg.lake), version, "rolled_back", {"previous": previous or None, "smoke": result}
    )
    failures = "; ".join(result.get("failures", [])[:3])
    raise DeployError(
        f"{version} failed its smoke test and was rolled back; {previous or 'nothing'} keeps serving"
        f" ({failures}); recorded in {path}"
    )


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(roll_back)
