"""Every pod template the manifests create is "restricted" (Pod Security
Standards) with a read-only root filesystem: the Deployment, the CronJob, the
InferenceService's predictor and the Spark executors' pod template."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from manifest_checks import MANIFESTS, RENDERS, containers, pod_specs, restricted_violations

SPARK_TEMPLATE = MANIFESTS / "components/spark-on-kubernetes/spark/executor-pod-template.yaml"


def _pods(rendered: dict[str, list[dict[str, Any]]], name: str) -> list[tuple[str, dict[str, Any]]]:
    return [p for o in rendered[name] for p in pod_specs(o)]


def test_the_check_rejects_what_restricted_rejects() -> None:
    ok: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    assert restricted_violations(ok) == []
    for broken in (
        {**ok, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
        {**ok, "securityContext": {"runAsNonRoot": True}},
        {**ok, "hostNetwork": True},
        {**ok, "containers": [{**ok["containers"][0], "securityContext": {"readOnlyRootFilesystem": True}}]},
    ):
        assert restricted_violations(broken)


@pytest.mark.parametrize("name", RENDERS)
def test_every_pod_template_is_restricted(rendered: dict[str, Any], name: str) -> None:
    pods = _pods(rendered, name)
    kinds = {where.split("/")[0] for where, _ in pods}
    assert {"Deployment", "CronJob"} <= kinds
    if name == "prod-all-components":
        assert "InferenceService" in kinds
    problems = [f"{where}: {v}" for where, pod in pods for v in restricted_violations(pod)]
    assert not problems, "\n".join(problems)


def test_the_spark_executor_template_is_restricted() -> None:
    pod = yaml.safe_load(SPARK_TEMPLATE.read_text())
    assert pod["kind"] == "Pod"
    assert restricted_violations(pod["spec"]) == []
    assert pod["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", RENDERS)
def test_pods_carry_no_api_token_unless_they_need_one(rendered: dict[str, Any], name: str) -> None:
    """None of these pods calls the Kubernetes API (the schedule authenticates
    to Kubeflow Pipelines with a projected, audience-bound token)."""
    for where, pod in _pods(rendered, name):
        assert pod.get("automountServiceAccountToken") is False, where


@pytest.mark.parametrize("name", RENDERS)
def test_containers_have_requests_limits_and_writable_tmp_only(rendered: dict[str, Any], name: str) -> None:
    for where, pod in _pods(rendered, name):
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for c in containers(pod):
            res = c.get("resources") or {}
            assert {"cpu", "memory"} <= set(res.get("requests") or {}), f"{where}/{c['name']}: requests"
            assert {"cpu", "memory"} <= set(res.get("limits") or {}), f"{where}/{c['name']}: limits"
            for m in c.get("volumeMounts") or []:
                vol = volumes[m["name"]]
                writable = "emptyDir" in vol
                assert (
                    writable or m.get("readOnly") or "configMap" in vol or "projected" in vol
                ), f"{where}/{c['name']}: {m['mountPath']} is a writable non-emptyDir volume"
                if "emptyDir" in vol:
                    assert vol["emptyDir"].get(
                        "sizeLimit"
                    ), f"{where}: emptyDir {m['name']} without sizeLimit"
