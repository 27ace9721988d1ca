"""KFP component ``verify_approval``: the first step of ``deploy``. Refuses a
version without a recorded approval, or whose artifact's bytes are not the
approved ones (digest), before anything is started."""

from kfp import dsl
from kfp.dsl import python_component


def verify_approval(lake_uri: str, config_json: str, version: str) -> str:
    """Returns the approved digest."""
    from autoroi.approval import require_approval
    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging

    setup_logging()
    cfg = config_from_json(config_json)
    record = require_approval(open_lake(lake_uri, cfg.lake), version)
    return record.digest


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(verify_approval)
