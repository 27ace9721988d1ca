"""KFP component ``promote``: all traffic to the new version (KServe: canary
to 100 %; locally: the endpoint switches), then the old one stops."""

from kfp import dsl
from kfp.dsl import python_component


def promote(lake_uri: str, config_json: str, version: str) -> str:
    from autoroi.config import config_from_json
    from autoroi.deploy.targets import make_target
    from autoroi.logs import setup_logging

    setup_logging()
    make_target(config_from_json(config_json), lake_uri).promote(version)
    return version


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(promote)
