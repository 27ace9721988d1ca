"""KFP component ``anonymize``: ``<lake>/raw/`` into a staged curated folder.

Thin by design: parse the config, call ``autoroi.anonymize``, report. Nothing
in the lake changes here; ``publish`` copies the staged tables into
``<lake>/curated/`` after the PII scan and validation passed. The HMAC key is
not a parameter: it reaches the step as the environment variable named by
``anonymize.hmac_key_env`` or as the mounted file named by
``anonymize.hmac_key_file`` (a Kubernetes Secret on a cluster).

Output ``curated``: ``<table>/part-00000.parquet`` (zstd) per allowed table and
``_report.json`` (what was kept, treated, dropped; never a value). Output
``identifiers``: keyed fingerprints of the raw zone's direct identifiers, so
that the PII scan needs no access to raw/.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Metrics, Output, python_component


def anonymize(
    lake_uri: str,
    config_json: str,
    curated: Output[Dataset],
    identifiers: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Drop direct identifiers, pseudonymize keys, generalize quasi-identifiers;
    returns the report as JSON."""
    import json

    from autoroi.anonymize.run import anonymize_lake, identifiers_from_raw, write_identifiers
    from autoroi.config import config_from_json
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging

    setup_logging()
    cfg = config_from_json(config_json)
    lake = open_lake(lake_uri, cfg.lake)
    report = anonymize_lake(lake, cfg, curated.path)
    ids = identifiers_from_raw(lake, cfg)
    write_identifiers(identifiers.path, ids)
    metrics.log_metric("identifier_fingerprints", len(ids))
    for t in report.tables:
        metrics.log_metric(f"{t.table}.rows", t.rows_out)
        metrics.log_metric(f"{t.table}.columns_dropped", len(t.dropped))
    metrics.log_metric("tables_dropped", len(report.dropped_tables))
    metrics.log_metric("new_columns", len(report.new_columns))
    metrics.log_metric("zip3_areas_suppressed", sum(z.areas_suppressed for z in report.zip3))
    metrics.log_metric("zip3_rows_suppressed", sum(z.rows_suppressed for z in report.zip3))
    metrics.log_metric("duration_seconds", round(report.seconds, 3))
    return json.dumps(report.to_dict())


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(anonymize)
