"""KFP component ``roll_out``: start the approved version beside the serving
one (a canary revision on KServe, a second process locally) and wait until it
is ready. On failure it removes what it started, so the old version keeps all
traffic, and fails the run."""

from kfp import dsl
from kfp.dsl import python_component


def roll_out(lake_uri: str, config_json: str, version: str, digest: str) -> str:
    """Returns the version that served before (empty for none)."""
    from autoroi.config import config_from_json
    from autoroi.deploy.rollout import DeployError
    from autoroi.deploy.targets import artifact_uri, make_target
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging

    setup_logging()
    cfg = config_from_json(config_json)
    target = make_target(cfg, lake_uri)
    previous = target.serving() or ""
    try:
        target.start(version, artifact_uri(open_lake(lake_uri, cfg.lake), version))
        target.wait_ready(version, cfg.serving.ready_timeout_s)
    except Exception as e:
        target.rollback(version)
        raise DeployError(f"rolling out {version} (digest {digest[:12]}) failed; rolled back: {e}") from e
    return previous


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(roll_out)
