"""KFP component ``replicate``: the source database into ``<lake>/raw/``.

Thin by design: parse the config, call ``autoroi.replication``, report. The
database password is not a parameter; it reaches the step as the environment
variable named by ``source.password_env`` (a Kubernetes Secret on a cluster).
"""

from kfp import dsl
from kfp.dsl import Metrics, Output, python_component


def replicate(source_url: str, lake_uri: str, config_json: str, metrics: Output[Metrics]) -> str:
    """Replicate every source table (full load, then change capture); returns
    the run report as JSON."""
    import json

    from autoroi.config import config_from_json
    from autoroi.logs import setup_logging
    from autoroi.replication import replicate_tables

    setup_logging()
    report = replicate_tables(config_from_json(config_json), source_url=source_url, lake_uri=lake_uri)
    for t in report.tables:
        for name in ("rows", "inserted", "updated", "deleted"):
            metrics.log_metric(f"{t.table}.{name}", getattr(t, name))
        metrics.log_metric(f"{t.table}.seconds", round(t.seconds, 3))
    metrics.log_metric("duration_seconds", round(report.seconds, 3))
    if not report.ok:
        failed = "; ".join(t.message for t in report.failed)
        raise RuntimeError(f"replication failed for {len(report.failed)} table(s): {failed}")
    return json.dumps(report.to_dict(), default=str)


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(replicate)
