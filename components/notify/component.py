"""KFP component ``notify``: tell the reviewer that a version waits (log,
Slack-compatible webhook, SNS; ``notify.channels``). The webhook URL comes
from the environment variable ``notify.webhook_url_env`` (a Secret), never a
parameter. The ``notice`` Markdown artifact is what the reviewer was sent."""

from kfp import dsl
from kfp.dsl import Markdown, Output, python_component


def notify_reviewer(lake_uri: str, config_json: str, version: str, notice: Output[Markdown]) -> str:
    """Returns the channels that delivered the notice, comma-separated."""
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.notify import ReviewNotice, notify_reviewer
    from autoroi.registry import get_version

    setup_logging()
    cfg = config_from_json(config_json)
    message = ReviewNotice.from_version(
        get_version(open_lake(lake_uri, cfg.lake), version), lake_uri=lake_uri
    )
    Path(notice.path).write_text(message.markdown())
    return ",".join(notify_reviewer(message, cfg))


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(notify_reviewer)
