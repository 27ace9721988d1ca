"""KFP component ``scan_pii``: the PII-scan gate over every staged output.

Takes the keyed fingerprints of the raw zone's direct identifiers (names,
e-mails, phones, VINs, street lines) that ``anonymize`` wrote, and searches
every text column of every table in ``curated`` and ``master`` (and the JSON
files beside them) for them, by fingerprint, and for e-mail, phone and VIN
patterns. It needs the pseudonymization key, not access to raw/. The report
artifact lists table, column, check and count, never a value; any finding
fails the step, so ``publish`` never runs.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output, python_component


def scan_pii(
    config_json: str,
    identifiers: Input[Artifact],
    curated: Input[Dataset],
    master: Input[Dataset],
    report: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Fails (PiiLeakError) on any finding; returns the report as JSON."""
    import json
    from pathlib import Path

    from autoroi.anonymize import load_hmac_key
    from autoroi.anonymize.run import read_identifiers, scan_staged
    from autoroi.config import config_from_json
    from autoroi.logs import setup_logging

    setup_logging()
    cfg = config_from_json(config_json)
    key = load_hmac_key(cfg.anonymize)
    result = scan_staged(read_identifiers(identifiers.path), curated.path, master.path, key=key)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(json.dumps(result.to_dict(), indent=2))
    metrics.log_metric("findings", len(result.findings))
    metrics.log_metric("columns_scanned", result.columns_scanned)
    metrics.log_metric("cells_scanned", result.cells_scanned)
    metrics.log_metric("identifiers", result.identifiers)
    metrics.log_metric("duration_seconds", round(result.seconds, 3))
    result.raise_if_leaking()
    return json.dumps(result.to_dict())


def build(base_image: str) -> "python_component.PythonComponent":
    """The component for one image; the image comes from config, so it is bound
    when the pipeline is built, not at import."""
    return dsl.component(base_image=base_image, install_kfp_package=False)(scan_pii)
