"""KFP component ``smoke_test``: replay the requests recorded at fit time
against the new version itself (v1 and v2) and compare with the recorded
answers. Does not fail the step: the pipeline promotes or rolls back on its
``passed`` output, and the ``report`` Markdown says what differed."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output, python_component


def smoke_test(
    lake_uri: str, config_json: str, version: str, report: Output[Markdown], metrics: Output[Metrics]
) -> NamedTuple("SmokeOutputs", [("passed", bool), ("result", str)]):  # type: ignore[valid-type]
    import json
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from autoroi.config import config_from_json
    from autoroi.deploy.rollout import SmokeResult
    from autoroi.deploy.smoke import read_samples, smoke_test
    from autoroi.deploy.targets import make_target
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from autoroi.registry import fetch_artifact

    setup_logging()
    cfg = config_from_json(config_json)
    try:
        model_dir = fetch_artifact(open_lake(lake_uri, cfg.lake), version, Path(tempfile.mkdtemp()) / "model")
        samples = read_samples(model_dir)
        url = make_target(cfg, lake_uri).candidate_url(version)
    except Exception as e:  # noqa: BLE001 (no test possible is a failed test: roll back, do not strand the canary)
        result = SmokeResult(False, 0, float("inf"), [f"cannot smoke-test {version}: {e}"])
    else:
        result = smoke_test(url, samples, rtol=cfg.serving.smoke_rtol, atol=cfg.serving.smoke_atol)
    metrics.log_metric("passed", int(result.passed))
    if result.max_abs_error != float("inf"):  # KFP metrics are JSON numbers
        metrics.log_metric("max_abs_error", result.max_abs_error)
    lines = [f"**Smoke test of {version}: {'passed' if result.passed else 'FAILED'}**", ""]
    lines += [f"- {f}" for f in result.failures[:50]] or ["every recorded sample matched on v1 and v2"]
    Path(report.path).write_text("\n".join(lines) + "\n")
    SmokeOutputs = namedtuple("SmokeOutputs", ["passed", "result"])
    return SmokeOutputs(result.passed, json.dumps(result.to_dict()))


def build(base_image: str) -> "python_component.PythonComponent":
    return dsl.component(base_image=base_image, install_kfp_package=False)(smoke_test)
