"""The cluster rollout target: the generated InferenceService against KServe's
CRD schema, and the canary control flow of ``roll_out`` against a fake
Kubernetes API whose controller mimics KServe and Knative (revisions from
template changes, traffic from ``canaryTrafficPercent``, the rolled-out
revision bookkeeping of ``inference_service_status.go``)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from autoroi.deploy.kserve import (
    CONTAINER_NAME,
    PREVIOUS_REVISION_KEY,
    PREVIOUS_VERSION_KEY,
    ROLLOUT_ID_KEY,
    TAG_ROUTING_KEY,
    VERSION_KEY,
    KServeTarget,
    KubernetesConfigError,
    ServingOptions,
    inference_service,
    kubernetes_api,
    model_uri,
)
from autoroi.deploy.rollout import DeployError, SmokeResult, roll_out
from autoroi.errors import ConfigError
from tests.manifests.manifest_checks import KSERVE_CRD, crd_schema, crd_schema_errors

LAKE = "s3://autoroi-lake/prod"
IMAGE = "ghcr.io/autoroi/serving:1.4.0"
NS = "autoroi"
V1, V2, V3 = "v20260302-101500-0badcafe", "v20260309-101500-1badcafe", "v20260316-101500-2badcafe"
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


# --------------------------------------------------------------------------- the CRD schema


@pytest.fixture(scope="module")
def isvc_schema() -> dict[str, Any]:
    return crd_schema(KSERVE_CRD, "v1beta1")


def _validate(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    """The CRD's schema, and no field the API server would prune silently."""
    errors = crd_schema_errors(schema, obj)
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_a_typo_and_a_wrong_type(isvc_schema: dict[str, Any]) -> None:
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE, namespace=NS, rollout_id="r1")
    obj["spec"]["predictor"]["canaryTraficPercent"] = 10  # pruned silently by the API server
    obj["spec"]["predictor"]["minReplicas"] = "two"
    errors = crd_schema_errors(isvc_schema, obj)
    assert any("canaryTraficPercent" in e for e in errors)
    assert any("minReplicas" in e for e in errors)


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["predictor"]["containers"]
    return container


def test_first_deployment_matches_the_crd_schema(isvc_schema: dict[str, Any]) -> None:
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE, namespace=NS, rollout_id="r1")
    _validate(isvc_schema, obj)
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["kind"] == "InferenceService"
    assert obj["metadata"]["name"] == "roi" and obj["metadata"]["namespace"] == NS
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]  # first deployment: all traffic
    for labels in (obj["metadata"]["labels"], obj["spec"]["predictor"]["labels"]):
        assert labels[VERSION_KEY] == V1
        assert all(LABEL_VALUE.fullmatch(v) for v in labels.values())
    assert obj["metadata"]["annotations"][VERSION_KEY] == V1
    assert obj["metadata"]["annotations"][TAG_ROUTING_KEY] == "true"
    assert obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


def test_the_container_runs_the_model_server_on_the_registry_version() -> None:
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE + "/")
    c = _container(obj)
    assert c["name"] == CONTAINER_NAME and c["image"] == IMAGE
    assert c["args"][:3] == ["python", "-m", "serving.roi_server"]
    assert c["args"][c["args"].index("--version") + 1] == V1
    assert c["args"][c["args"].index("--lake") + 1] == LAKE + "/"
    uri = f"{LAKE}/models/roi/{V1}/model"
    assert model_uri(LAKE + "/", V1) == uri
    env = {e["name"]: e for e in c["env"]}
    assert env["AUTOROI_MODEL_URI"]["value"] == uri
    assert "STORAGE_URI" not in env  # KServe would inject its storage initializer
    assert "storageUri" not in json.dumps(obj)
    assert obj["spec"]["predictor"]["annotations"]["autoroi.io/model-uri"] == uri
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"]["requests"] and c["resources"]["limits"]


def test_the_pod_is_restricted() -> None:
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE)
    sc = _container(obj)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    predictor = obj["spec"]["predictor"]
    assert predictor["automountServiceAccountToken"] is False
    # the one writable place is an emptyDir at /tmp, where the server fetches the model
    assert _container(obj)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert predictor["volumes"][0]["name"] == "tmp" and "emptyDir" in predictor["volumes"][0]


def test_credentials_come_from_a_secret_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_values = ["AKIAEXAMPLEKEYID0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", secret_values[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_values[1])
    opts = ServingOptions(s3_secret="lake-creds", s3_endpoint_url="http://minio.storage:9000")
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE, options=opts)
    text = json.dumps(obj)
    assert not any(v in text for v in secret_values)
    env = {e["name"]: e for e in _container(obj)["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": "lake-creds", "key": name}}
    assert env["AUTOROI_LAKE__S3_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
    # with the pod's own role (IRSA and the like) there is no credential variable at all
    bare = inference_service(V1, image=IMAGE, lake_uri=LAKE, options=ServingOptions(s3_secret=None))
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & {e["name"] for e in _container(bare)["env"]}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lake_uri": "var/lake"}, ConfigError),  # a cluster cannot read a local folder
        ({"canary_percent": 101}, ConfigError),
        ({"name": "ROI"}, ConfigError),
        ({"version": "v" * 64}, DeployError),  # not a label value
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"version": V1, "image": IMAGE, "lake_uri": LAKE, **kwargs}
    version = args.pop("version")
    with pytest.raises(error):
        inference_service(version, **args)


def test_the_autoscaler_settings_come_from_the_config_and_fit_the_crd(isvc_schema: dict[str, Any]) -> None:
    from autoroi.config import load_config
    from autoroi.deploy.targets import serving_options

    scaling = {"min_replicas": 2, "max_replicas": 6, "scale_metric": "rps", "scale_target": 40}
    cfg = load_config(overrides={"serving": scaling})
    obj = inference_service(V1, image=IMAGE, lake_uri=LAKE, options=serving_options(cfg))
    _validate(isvc_schema, obj)
    predictor = obj["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("rps", 40)
    # the defaults: one to three pods, eight requests in flight each
    default = inference_service(V1, image=IMAGE, lake_uri=LAKE, options=serving_options(load_config()))
    _validate(isvc_schema, default)
    p = default["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"]) == (1, 3)
    assert (p["scaleMetric"], p["scaleTarget"]) == ("concurrency", 8)
    # the CRD itself refuses what the config refuses
    bad = copy.deepcopy(obj)
    bad["spec"]["predictor"]["scaleMetric"] = "latency"
    assert any("scaleMetric" in e for e in crd_schema_errors(isvc_schema, bad))


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"min_replicas": 4, "max_replicas": 2}, "max_replicas"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"scale_metric": "cpu"}, "scale_metric"),
        ({"scale_target": 0}, "scale_target"),
    ],
)
def test_bad_autoscaler_settings_are_refused_by_name(serving: dict[str, Any], field: str) -> None:
    from autoroi.config import load_config

    with pytest.raises(ConfigError, match=field):
        load_config(overrides={"serving": serving})


@pytest.mark.parametrize(
    ("opts", "word"),
    [
        (ServingOptions(min_replicas=3, max_replicas=2), "maxReplicas"),
        (ServingOptions(min_replicas=0, max_replicas=0), "maxReplicas"),
        (ServingOptions(scale_metric="cpu"), "scaleMetric"),
        (ServingOptions(scale_target=0), "scaleTarget"),
    ],
)
def test_an_inference_service_with_bad_scaling_is_not_built(opts: ServingOptions, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        inference_service(V1, image=IMAGE, lake_uri=LAKE, options=opts)


# --------------------------------------------------------------------------- the payload logger

SINK = f"http://roi-prediction-sink.{NS}.svc.cluster.local"


def test_the_payload_logger_stanza_matches_the_crd(isvc_schema: dict[str, Any]) -> None:
    """KServe's logger (``predictor.logger``): every request and its answer to
    the prediction sink; the CRD refuses a mode KServe does not have."""
    obj = inference_service(
        V1, image=IMAGE, lake_uri=LAKE, namespace=NS, options=ServingOptions(logger_url=SINK)
    )
    _validate(isvc_schema, obj)
    assert obj["spec"]["predictor"]["logger"] == {"mode": "all", "url": SINK}
    logger_schema = isvc_schema["properties"]["spec"]["properties"]["predictor"]["properties"]["logger"]
    assert set(logger_schema["properties"]["mode"]["enum"]) == {"all", "request", "response"}
    bad = copy.deepcopy(obj)
    bad["spec"]["predictor"]["logger"] = {"mode": "everything", "uri": SINK}
    errors = crd_schema_errors(isvc_schema, bad)
    assert any("everything" in e for e in errors) and any("logger.uri" in e for e in errors)
    assert "logger" not in inference_service(V1, image=IMAGE, lake_uri=LAKE)["spec"]["predictor"]
    with pytest.raises(ConfigError, match="prediction sink"):
        inference_service(V1, image=IMAGE, lake_uri=LAKE, options=ServingOptions(logger_url="sink:8091"))


def test_the_logger_follows_the_monitoring_config(isvc_schema: dict[str, Any]) -> None:
    from autoroi.config import load_config
    from autoroi.deploy.targets import serving_options

    def logger(**monitoring: Any) -> Any:
        cfg = load_config(overrides={"serving": {"namespace": NS}, "monitoring": monitoring})
        obj = inference_service(V1, image=IMAGE, lake_uri=LAKE, options=serving_options(cfg))
        _validate(isvc_schema, obj)
        return obj["spec"]["predictor"].get("logger")

    assert logger() == {"mode": "all", "url": SINK}  # on by default: the sink's Service of the namespace
    assert logger(sink_url="http://broker-ingress.knative-eventing.svc.cluster.local/autoroi/default") == {
        "mode": "all",
        "url": "http://broker-ingress.knative-eventing.svc.cluster.local/autoroi/default",
    }
    assert logger(log_predictions=False) is None


def test_turning_the_logger_off_removes_it_from_the_live_resource(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget], isvc_schema: dict[str, Any]
) -> None:
    """A merge patch keeps what it does not name: the patch names the logger
    as null when logging is off, so the next version is not logged."""
    on = make_target(options=ServingOptions(logger_url=SINK))
    assert _deploy(on, V1, Smoke(cluster)).promoted
    assert cluster.objects[(NS, "roi")]["spec"]["predictor"]["logger"]["url"] == SINK
    assert _deploy(make_target(), V2, Smoke(cluster)).promoted
    start = cluster.patches()[0]
    assert start["spec"]["predictor"]["logger"] is None
    stored = {k: v for k, v in cluster.objects[(NS, "roi")].items() if k != "status"}
    assert "logger" not in stored["spec"]["predictor"]
    _validate(isvc_schema, stored)


# --------------------------------------------------------------------------- a fake KServe


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, what ``patch_namespaced_custom_object`` sends."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKServe:
    """An in-memory ``CustomObjectsApi`` with a controller that advances one
    step on every read: a changed pod template makes a revision, which becomes
    ready after ``ready_after`` steps (``behaviour[version] == "ready"``), fails
    (``"fail"``) or stays pending (``"pending"``); traffic follows
    ``canaryTrafficPercent`` as KServe's ksvc reconciler computes it, and the
    rolled-out revision as its ``PropagateStatus`` records it."""

    def __init__(self, *, ready_after: int = 2) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.revisions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.behaviour: dict[str, str] = {}
        self.ready_after = ready_after
        self.fail_next: dict[str, Exception] = {}

    # -- CustomObjectsApi ---------------------------------------------------
    def _enter(self, verb: str, group: str, version: str, plural: str, name: str, body: Any = None) -> None:
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        self.calls.append((verb, name, copy.deepcopy(body)))
        if verb in self.fail_next:
            raise self.fail_next.pop(verb)

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> dict[str, Any]:
        self._enter("get", group, version, plural, name)
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        self._reconcile(namespace, name)
        return copy.deepcopy(self.objects[(namespace, name)])

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self._enter("create", group, version, plural, name, body)
        if (namespace, name) in self.objects:
            raise ApiException(status=409, reason="Conflict")
        obj = copy.deepcopy(body)
        obj["metadata"].update(namespace=namespace, generation=1)
        self.objects[(namespace, name)] = obj
        self.revisions[(namespace, name)] = []
        return copy.deepcopy(obj)

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **_: Any
    ) -> dict[str, Any]:
        self._enter("patch", group, version, plural, name, body)
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        old = self.objects[(namespace, name)]
        new = merge_patch(old, body)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        self.objects[(namespace, name)] = new
        return copy.deepcopy(new)

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> dict[str, Any]:
        self._enter("delete", group, version, plural, name)
        if self.objects.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")
        self.revisions.pop((namespace, name), None)
        return {"status": "Success"}

    # -- the simulated controllers ------------------------------------------
    def _reconcile(self, ns: str, name: str) -> None:
        obj = self.objects[(ns, name)]
        meta, predictor = obj["metadata"], obj["spec"]["predictor"]
        revisions = self.revisions[(ns, name)]
        # KServe copies the InferenceService's annotations and labels into the template
        template = {
            "spec": {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"},
            "annotations": meta.get("annotations", {}),
            "labels": meta.get("labels", {}),
        }
        if not revisions or revisions[-1]["template"] != template:
            revisions.append(
                {
                    "name": f"{name}-predictor-{len(revisions) + 1:05d}",
                    "version": predictor["labels"][VERSION_KEY],
                    "template": copy.deepcopy(template),
                    "steps": 0,
                    "state": "pending",
                }
            )
        for rev in revisions:
            if rev["state"] != "pending":
                continue
            rev["steps"] += 1
            behaviour = self.behaviour.get(rev["version"], "ready")
            if behaviour == "ready" and rev["steps"] >= self.ready_after:
                rev["state"] = "ready"
            elif behaviour == "fail":
                rev["state"] = "failed"
        created = revisions[-1]
        ready = [r for r in revisions if r["state"] == "ready"]
        latest_ready = ready[-1]["name"] if ready else ""

        status = obj.setdefault("status", {})
        pred = status.setdefault("components", {}).setdefault("predictor", {})
        rolled = pred.get("latestRolledoutRevision", "")
        canary = predictor.get("canaryTrafficPercent")
        tagged = meta.get("annotations", {}).get(TAG_ROUTING_KEY) == "true"
        if canary is not None and rolled:
            targets = [{"latestRevision": True, "percent": canary, "tag": "latest"}]
            if canary < 100:
                targets.append({"revisionName": rolled, "latestRevision": False, "percent": 100 - canary})
                targets[-1]["tag"] = "prev"
        else:
            targets = [{"latestRevision": True, "percent": 100, "tag": "latest"}]
        traffic = []
        if latest_ready:  # Knative routes only to ready revisions
            for t in targets:
                t = dict(t)
                if t["latestRevision"]:
                    t["revisionName"] = latest_ready
                if not tagged:
                    t.pop("tag", None)
                if "tag" in t:
                    t["url"] = f"http://{t['tag']}-{name}-predictor.{ns}.example.com"
                traffic.append(t)

        # inference_service_status.go, PropagateStatus
        pred["latestCreatedRevision"] = created["name"]
        share: dict[str, int] = {}
        for t in traffic:
            share[t["revisionName"]] = share.get(t["revisionName"], 0) + t["percent"]
        for t in traffic:
            if t["revisionName"] == latest_ready and t["latestRevision"]:
                if pred.get("latestRolledoutRevision", "") != latest_ready:
                    if t["percent"] == 100:
                        pred["previousRolledoutRevision"] = pred.get("latestRolledoutRevision", "")
                        pred["latestRolledoutRevision"] = latest_ready
                elif (
                    latest_ready == created["name"]
                    and t["percent"] < 100
                    and share.get(t["revisionName"]) == 100
                    and pred.get("previousRolledoutRevision")
                ):
                    pred["latestRolledoutRevision"] = pred["previousRolledoutRevision"]
        pred["latestReadyRevision"] = latest_ready
        pred["traffic"] = traffic
        if latest_ready:
            pred["url"] = f"http://{name}-predictor.{ns}.example.com"
            pred["address"] = {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"}

        if created["state"] == "ready":
            predictor_ready = {"type": "PredictorReady", "status": "True"}
        elif created["state"] == "failed":
            predictor_ready = {
                "type": "PredictorReady",
                "status": "False",
                "reason": "RevisionFailed",
                "message": f'Revision "{created["name"]}" failed with message: container exited with code 1.',
            }
        else:
            predictor_ready = {
                "type": "PredictorReady",
                "status": "Unknown",
                "reason": "RevisionMissing",
                "message": f'Configuration "{name}-predictor" is waiting for a Revision to become ready.',
            }
        ingress = {"type": "IngressReady", "status": "True" if latest_ready else "Unknown"}
        overall = dict(predictor_ready, type="Ready")
        if predictor_ready["status"] == "True" and ingress["status"] != "True":
            overall = dict(ingress, type="Ready")
        status["conditions"] = [ingress, predictor_ready, overall]
        status["url"] = f"http://{name}.{ns}.example.com"

    # -- what a client sees ---------------------------------------------------
    def version_at(self, url: str, ns: str = NS, name: str = "roi") -> str:
        """The version that answers at a tag URL (the smoke test's view)."""
        host = url.split("://", 1)[1].split("/", 1)[0]
        tag = host.split("-", 1)[0]
        pred = self.objects[(ns, name)]["status"]["components"]["predictor"]
        (target,) = [t for t in pred["traffic"] if t.get("tag") == tag]
        (rev,) = [r for r in self.revisions[(ns, name)] if r["name"] == target["revisionName"]]
        return str(rev["version"])

    def traffic(self, ns: str = NS, name: str = "roi") -> dict[str, int]:
        """Percent of traffic per version, once the controllers caught up."""
        self._reconcile(ns, name)
        pred = self.objects[(ns, name)]["status"]["components"]["predictor"]
        versions = {r["name"]: r["version"] for r in self.revisions[(ns, name)]}
        out: dict[str, int] = {}
        for t in pred["traffic"]:
            v = versions[t["revisionName"]]
            out[v] = out.get(v, 0) + t["percent"]
        return {v: p for v, p in out.items() if p}

    def patches(self) -> list[Any]:
        return [body for verb, _, body in self.calls if verb == "patch"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class Smoke:
    """A smoke test that asks the fake cluster which version answers at the URL."""

    def __init__(self, cluster: FakeKServe, *, passes: bool = True) -> None:
        self.cluster = cluster
        self.passes = passes
        self.seen: list[tuple[str, str]] = []

    def __call__(self, url: str) -> SmokeResult:
        self.seen.append((url, self.cluster.version_at(url)))
        if self.passes:
            return SmokeResult(True, 3, 0.0)
        return SmokeResult(False, 3, 12.5, ["request 2: roi 0.41 != recorded 0.12"])


@pytest.fixture
def cluster() -> FakeKServe:
    return FakeKServe()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_target(cluster: FakeKServe, clock: FakeClock) -> Callable[..., KServeTarget]:
    ids = iter(f"rollout{i}" for i in range(1, 100))

    def make(**kwargs: Any) -> KServeTarget:
        args: dict[str, Any] = {
            "image": IMAGE,
            "lake_uri": LAKE,
            "canary_percent": 25,
            "poll_s": 5.0,
            "promote_timeout_s": 60.0,
            "clock": clock,
            "sleep": clock.sleep,
            "new_rollout_id": lambda: next(ids),
            **kwargs,
        }
        return KServeTarget(cluster, NS, **args)

    return make


def _deploy(target: KServeTarget, version: str, smoke: Smoke, timeout_s: float = 120.0) -> Any:
    return roll_out(target, version, model_uri(LAKE, version), smoke, ready_timeout_s=timeout_s)


# --------------------------------------------------------------------------- the control flow


def test_first_deployment_creates_and_promotes(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget], isvc_schema: dict[str, Any]
) -> None:
    target = make_target()
    assert target.serving() is None
    smoke = Smoke(cluster)
    result = _deploy(target, V1, smoke)
    assert result.promoted and result.previous is None, result.reason
    (create,) = [body for verb, _, body in cluster.calls if verb == "create"]
    assert "canaryTrafficPercent" not in create["spec"]["predictor"]
    assert not cluster.patches()  # nothing to split, nothing to promote
    assert smoke.seen == [(f"http://latest-roi-predictor.{NS}.example.com", V1)]
    assert target.serving() == V1 and cluster.traffic() == {V1: 100}
    stored = {k: v for k, v in cluster.objects[(NS, "roi")].items() if k != "status"}
    _validate(isvc_schema, stored)


def test_second_deployment_is_a_canary_then_promoted(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget], isvc_schema: dict[str, Any]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    traffic_during_smoke: list[dict[str, int]] = []

    class Watching(Smoke):
        def __call__(self, url: str) -> SmokeResult:
            traffic_during_smoke.append(cluster.traffic())
            return super().__call__(url)

    smoke = Watching(cluster)
    target = make_target()
    result = _deploy(target, V2, smoke)
    assert result.promoted and result.previous == V1, result.reason

    start, promote = cluster.patches()
    assert start["spec"]["predictor"]["canaryTrafficPercent"] == 25  # from the configuration
    assert start["metadata"]["annotations"][VERSION_KEY] == V2
    assert start["metadata"]["annotations"][PREVIOUS_VERSION_KEY] == V1
    assert start["metadata"]["annotations"][PREVIOUS_REVISION_KEY] == "roi-predictor-00001"
    assert start["spec"]["predictor"]["annotations"][ROLLOUT_ID_KEY] == "rollout2"
    # KServe's promotion: canaryTrafficPercent removed, nothing else touched (no new revision)
    assert promote == {"spec": {"predictor": {"canaryTrafficPercent": None}}}

    assert traffic_during_smoke == [{V2: 25, V1: 75}]
    assert smoke.seen == [(f"http://latest-roi-predictor.{NS}.example.com", V2)]  # the candidate alone
    assert cluster.traffic() == {V2: 100}
    pred = cluster.objects[(NS, "roi")]["status"]["components"]["predictor"]
    assert pred["latestRolledoutRevision"] == "roi-predictor-00002"
    assert pred["previousRolledoutRevision"] == "roi-predictor-00001"
    assert [r["name"] for r in cluster.revisions[(NS, "roi")]] == [
        "roi-predictor-00001",
        "roi-predictor-00002",
    ]
    assert target.serving() == V2

    # the patched resource (as the API server stores it) still matches the CRD
    stored = {k: v for k, v in cluster.objects[(NS, "roi")].items() if k != "status"}
    _validate(isvc_schema, stored)
    canary_stage = merge_patch(inference_service(V1, image=IMAGE, lake_uri=LAKE, namespace=NS), start)
    _validate(isvc_schema, canary_stage)
    assert canary_stage["spec"]["predictor"]["canaryTrafficPercent"] == 25


def test_a_failed_smoke_test_rolls_back_to_the_previous_revision(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    target = make_target()
    smoke = Smoke(cluster, passes=False)
    result = _deploy(target, V2, smoke)

    assert result.outcome == "rolled_back" and result.previous == V1
    assert "smoke test failed" in result.reason and "0.41" in result.reason
    assert smoke.seen[0][1] == V2
    start, rollback = cluster.patches()
    assert start["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert rollback == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}  # KServe's rollback
    assert cluster.traffic() == {V1: 100}
    annotations = cluster.objects[(NS, "roi")]["metadata"]["annotations"]
    assert annotations[PREVIOUS_VERSION_KEY] == V1
    assert target.serving() == V1
    assert make_target().serving() == V1  # a fresh process reads the same from the cluster

    # the next rollout canaries against the version that kept serving
    result = _deploy(make_target(), V3, Smoke(cluster))
    assert result.promoted and result.previous == V1
    assert cluster.patches()[2]["metadata"]["annotations"][PREVIOUS_VERSION_KEY] == V1
    assert cluster.traffic() == {V3: 100}


def test_a_rolled_back_version_can_be_rolled_out_again(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    assert not _deploy(make_target(), V2, Smoke(cluster, passes=False)).promoted
    smoke = Smoke(cluster)
    result = _deploy(make_target(), V2, smoke)  # same spec as the rolled-back one: a fresh revision
    assert result.promoted and result.previous == V1, result.reason
    assert smoke.seen == [(f"http://latest-roi-predictor.{NS}.example.com", V2)]
    assert [r["name"] for r in cluster.revisions[(NS, "roi")]][-1] == "roi-predictor-00003"
    assert cluster.traffic() == {V2: 100}


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("pending", "is waiting for a Revision to become ready"),
        ("fail", "failed with message: container exited with code 1"),
    ],
)
def test_a_readiness_timeout_rolls_back_with_the_condition_message(
    cluster: FakeKServe,
    clock: FakeClock,
    make_target: Callable[..., KServeTarget],
    behaviour: str,
    message: str,
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    cluster.behaviour[V2] = behaviour
    smoke = Smoke(cluster)
    t0 = clock.now
    result = _deploy(make_target(), V2, smoke, timeout_s=60.0)

    assert result.outcome == "rolled_back" and result.smoke is None and not smoke.seen
    assert "not ready within 60 s" in result.reason
    assert "PredictorReady" in result.reason and message in result.reason
    assert 60.0 <= clock.now - t0 <= 65.0  # waited the timeout on the injected clock, no longer
    assert cluster.patches()[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert cluster.traffic() == {V1: 100}
    assert make_target().serving() == V1


def test_an_api_error_while_patching_rolls_back_and_is_named(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    body = json.dumps(
        {"kind": "Status", "message": 'admission webhook "inferenceservice.kserve-webhook" denied'}
    )
    err = ApiException(status=403, reason="Forbidden")
    err.body = body
    cluster.fail_next["patch"] = err
    result = _deploy(make_target(), V2, Smoke(cluster))

    assert result.outcome == "rolled_back"
    assert "ApiException" in result.reason and "403 Forbidden" in result.reason
    assert "patching InferenceService autoroi/roi" in result.reason and "admission webhook" in result.reason
    assert "\n" not in result.reason
    # the patch never landed: the rollback leaves the serving version alone (no canary 0 on it)
    assert len(cluster.patches()) == 1
    assert cluster.traffic() == {V1: 100} and make_target().serving() == V1


def test_an_api_error_while_creating_rolls_back_and_is_named(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    cluster.fail_next["create"] = ApiException(status=422, reason="Unprocessable Entity")
    target = make_target()
    result = _deploy(target, V1, Smoke(cluster))
    assert result.outcome == "rolled_back"
    assert "creating InferenceService autoroi/roi" in result.reason and "422" in result.reason
    assert not cluster.objects and target.serving() is None


def test_a_failed_first_deployment_is_removed(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    target = make_target()
    result = _deploy(target, V1, Smoke(cluster, passes=False))
    assert result.outcome == "rolled_back"
    assert [verb for verb, _, _ in cluster.calls if verb in ("create", "patch", "delete")] == [
        "create",
        "delete",
    ]
    assert target.serving() is None


def test_readiness_waits_for_the_new_revision_not_a_stale_ready_status(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    target = make_target()
    target.start(V2, model_uri(LAKE, V2))
    obj = cluster.objects[(NS, "roi")]
    # right after the patch the status still says Ready for revision 1
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"
    ready, why = target._readiness(obj, V2)
    assert not ready and "new revision" in why
    target.wait_ready(V2, 60.0)
    assert cluster.version_at(target.candidate_url(V2)) == V2


def test_a_passing_api_error_while_waiting_is_retried(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    target = make_target()
    target.start(V1, model_uri(LAKE, V1))
    cluster.fail_next["get"] = ApiException(status=503, reason="Service Unavailable")
    target.wait_ready(V1, 60.0)
    cluster.fail_next["get"] = ApiException(status=403, reason="Forbidden")
    with pytest.raises(DeployError, match="403 Forbidden"):
        target.wait_ready(V1, 60.0)


def test_nothing_to_return_to_is_a_loud_failure(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    # an InferenceService someone else created, whose version never became ready
    cluster.behaviour[V1] = "pending"
    cluster.create_namespaced_custom_object(
        "serving.kserve.io",
        "v1beta1",
        NS,
        "inferenceservices",
        inference_service(V1, image=IMAGE, lake_uri=LAKE),
    )
    target = make_target()
    assert target.serving() is None
    with pytest.raises(DeployError, match="no previous revision to return to"):
        _deploy(target, V2, Smoke(cluster, passes=False))
    # nothing served, so no split was asked for (null: the merge patch removes the field)
    assert cluster.patches()[0]["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert (NS, "roi") in cluster.objects  # not ours to delete


def test_the_candidate_url_can_be_cluster_local(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    smoke = Smoke(cluster)
    assert _deploy(make_target(candidate_endpoint="cluster-local"), V1, smoke).promoted
    assert smoke.seen == [(f"http://latest-roi-predictor.{NS}.svc.cluster.local", V1)]


def test_a_rollout_changed_underneath_is_refused(
    cluster: FakeKServe, make_target: Callable[..., KServeTarget]
) -> None:
    assert _deploy(make_target(), V1, Smoke(cluster)).promoted
    target = make_target()
    target.start(V2, model_uri(LAKE, V2))
    make_target().start(V3, model_uri(LAKE, V3))  # another deploy run wins the race
    with pytest.raises(DeployError, match=f"now runs version {V3}"):
        target.wait_ready(V2, 60.0)
    target.rollback(V2)  # not ours any more: leaves it alone
    assert cluster.patches()[-1]["metadata"]["annotations"][VERSION_KEY] == V3


def test_an_artifact_outside_the_lake_is_refused(make_target: Callable[..., KServeTarget]) -> None:
    with pytest.raises(DeployError, match="not version"):
        make_target().start(V1, f"s3://other-lake/models/roi/{V1}/model")


def test_target_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="s3://"):
        KServeTarget(FakeKServe(), NS, image=IMAGE, lake_uri="/srv/lake")
    with pytest.raises(ConfigError, match="canary_percent"):
        KServeTarget(FakeKServe(), NS, image=IMAGE, lake_uri=LAKE, canary_percent=100)
    with pytest.raises(ConfigError, match="namespace"):
        KServeTarget(FakeKServe(), "Bad_NS", image=IMAGE, lake_uri=LAKE)


# --------------------------------------------------------------------------- the client


def test_in_cluster_config_outside_a_pod_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesConfigError, match="in-cluster") as info:
        kubernetes_api(in_cluster=True)
    assert info.value.__cause__ is not None


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(KubernetesConfigError, match="nope.yaml") as info:
        kubernetes_api(in_cluster=False, kubeconfig=str(missing))
    assert info.value.__cause__ is not None
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(KubernetesConfigError) as info:
        kubernetes_api()
    assert "in-cluster" in str(info.value) and "kubeconfig" in str(info.value)


def test_a_kubeconfig_context_gives_a_custom_objects_api(tmp_path: Path) -> None:
    from kubernetes.client import CustomObjectsApi

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "a", "cluster": {"server": "https://a.example:6443"}},
                    {"name": "b", "cluster": {"server": "https://b.example:6443"}},
                ],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "ctx-a", "context": {"cluster": "a", "user": "u"}},
                    {"name": "ctx-b", "context": {"cluster": "b", "user": "u"}},
                ],
                "current-context": "ctx-a",
            }
        )
    )
    api = kubernetes_api(in_cluster=False, kubeconfig=str(kubeconfig), context="ctx-b")
    assert isinstance(api, CustomObjectsApi)
    assert api.api_client.configuration.host == "https://b.example:6443"
    with pytest.raises(KubernetesConfigError, match="ctx-c"):
        kubernetes_api(in_cluster=False, kubeconfig=str(kubeconfig), context="ctx-c")


def test_the_crd_copy_is_the_reference():
    """tests/data holds a gzipped copy of the shared reference CRD; where the
    reference is at hand (this workspace), the copy must equal it."""
    import gzip

    reference = Path(__file__).resolve().parents[3] / "shared" / "reference" / "kserve" / KSERVE_CRD.name[:-3]
    copy = gzip.decompress(KSERVE_CRD.read_bytes())
    assert b"kind: CustomResourceDefinition" in copy[:2000]
    if reference.exists():
        assert copy == reference.read_bytes()
