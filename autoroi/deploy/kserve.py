"""The cluster's rollout target: the KServe ``InferenceService`` ``roi``.

:func:`inference_service` builds the resource (a plain dict, so it can be
printed, diffed and checked against the CRD schema without a cluster);
:class:`KServeTarget` drives KServe's canary rollout through a
``kubernetes.client.CustomObjectsApi``-like object for
:func:`autoroi.deploy.rollout.roll_out`.

How KServe's serverless canary works, and what this module relies on
(KServe's canary docs and its controller, ``ksvc_reconciler.go`` and
``inference_service_status.go``):

- A change of the predictor's pod template makes Knative create a new
  revision. With ``canaryTrafficPercent`` set, the latest ready revision gets
  that share (traffic tag ``latest``) and the last revision that had 100 %
  (``status.components.predictor.latestRolledoutRevision``, tag ``prev``)
  keeps the rest. Without it, the latest ready revision gets everything.
- Promotion removes ``canaryTrafficPercent``; rollback sets it to 0, which
  pins all traffic to the previous revision. Neither changes the template, so
  neither creates a revision.
- Annotations and labels of the InferenceService itself are copied into the
  revision template: changing them creates a revision too. So the version
  bookkeeping below is written only in :meth:`KServeTarget.start`, in the same
  patch as the new predictor, never at promotion or rollback.
- ``serving.kserve.io/enable-tag-routing: "true"`` gives the latest revision
  its own URL (tag ``latest``), so the smoke test reaches the candidate alone,
  not the traffic split.

With ``ServingOptions.logger_url`` the predictor gets KServe's payload logger
(``predictor.logger``, ``mode: all``): KServe's agent beside the model server
posts each request and its answer as CloudEvents to the prediction sink
(``serving/prediction_sink``, the Service :data:`SINK_SERVICE`), which writes
``<lake>/predictions/roi/``.

The model server fetches the registry version from the lake itself
(``--lake``/``--version``, digest-checked), so the resource carries no
``storageUri`` (KServe's storage initializer would download it a second
time); S3 credentials come from a Secret by reference, never as values.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from kubernetes.client.exceptions import ApiException

from autoroi.deploy.rollout import DeployError
from autoroi.errors import ConfigError
from autoroi.registry.store import ARTIFACT_DIR, MODEL_NAME, MODELS_ZONE

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"

VERSION_KEY = "autoroi.io/model-version"  # annotation and label: the version the predictor spec runs
PREVIOUS_VERSION_KEY = "autoroi.io/previous-version"  # the version serving when that one started
PREVIOUS_REVISION_KEY = "autoroi.io/previous-revision"  # ... and its Knative revision
MODEL_URI_KEY = "autoroi.io/model-uri"
ROLLOUT_ID_KEY = "autoroi.io/rollout-id"  # unique per start: every rollout gets a fresh revision
TAG_ROUTING_KEY = "serving.kserve.io/enable-tag-routing"
DEPLOYMENT_MODE_KEY = "serving.kserve.io/deploymentMode"  # canary rollouts need Serverless (Knative)
SINK_SERVICE = "roi-prediction-sink"  # manifests/base/prediction-sink.yaml
LOGGER_MODE = "all"  # KServe's logger modes: all, request, response; the log pairs both

CONTAINER_NAME = "kserve-container"  # the name KServe expects for a custom predictor container
HTTP_PORT = 8080
MODEL_URI_ENV = "AUTOROI_MODEL_URI"  # not STORAGE_URI: that name makes KServe inject its storage initializer
TMP_MOUNT = "/tmp"  # the one writable path under a read-only root filesystem

DEFAULT_S3_SECRET = "autoroi-lake-s3"
DEFAULT_S3_SECRET_KEYS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
DEFAULT_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
}

# a Kubernetes label value: at most 63 characters, alphanumeric at both ends
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesConfigError(ConfigError):
    """No usable Kubernetes client configuration (neither in-cluster nor a kubeconfig)."""


class CustomObjectsApi(Protocol):
    """The part of ``kubernetes.client.CustomObjectsApi`` this module calls."""

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kwargs: Any
    ) -> Any: ...

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any, **kwargs: Any
    ) -> Any: ...

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kwargs: Any
    ) -> Any: ...

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kwargs: Any
    ) -> Any: ...


SCALE_METRICS = ("concurrency", "rps")  # Knative's; cpu and memory are RawDeployment's (HPA)


@dataclass(frozen=True)
class ServingOptions:
    """Knobs of the predictor pod that do not change between versions."""

    s3_secret: str | None = DEFAULT_S3_SECRET  # None: credentials from the pod's role (IRSA, ...)
    s3_secret_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_S3_SECRET_KEYS))
    s3_endpoint_url: str | None = None  # an S3-compatible endpoint (MinIO); not a secret
    s3_region: str = "us-east-1"
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    min_replicas: int = 1
    max_replicas: int = 3
    scale_metric: str = "concurrency"  # KServe's scaleMetric: concurrency, rps (Knative), cpu, memory
    scale_target: int = 8  # per pod
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int | None = 1000  # numeric, so the kubelet can check runAsNonRoot whatever the image's USER
    server_args: tuple[str, ...] = ()  # extra ``python -m serving.roi_server`` arguments
    labels: Mapping[str, str] = field(default_factory=dict)  # extra labels (team, cost centre)
    logger_url: str | None = None  # the prediction sink: KServe's payload logger posts there (None: off)


def sink_url(namespace: str) -> str:
    """The prediction sink's Service in ``namespace``, as KServe's agent reaches it."""
    return f"http://{SINK_SERVICE}.{namespace}.svc.cluster.local"


def model_uri(lake_uri: str, version: str) -> str:
    """The registry version's artifact folder, ``<lake>/models/roi/<version>/model``."""
    return f"{lake_uri.rstrip('/')}/{MODELS_ZONE}/{MODEL_NAME}/{version}/{ARTIFACT_DIR}"


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _LABEL_VALUE.fullmatch(version):
        raise DeployError(
            f"model version {version!r} cannot be a Kubernetes label value"
            " (at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends)"
        )
    return version


def _check_lake(lake_uri: str) -> str:
    parsed = urlparse(lake_uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(
            f"the lake {lake_uri!r} cannot be read from a cluster: the model server needs s3://bucket/prefix"
        )
    return lake_uri


def _check_canary(percent: int | None) -> int | None:
    if percent is not None and (isinstance(percent, bool) or not 0 <= int(percent) <= 100):
        raise ConfigError(f"canaryTrafficPercent must be between 0 and 100, not {percent!r}")
    return None if percent is None else int(percent)


def _check_scaling(opts: ServingOptions) -> None:
    """The autoscaler's settings, as the Serverless mode (Knative) takes them."""
    if opts.min_replicas < 0 or opts.max_replicas < max(opts.min_replicas, 1):
        raise ConfigError(
            f"replicas: minReplicas {opts.min_replicas} and maxReplicas {opts.max_replicas}"
            " (need 0 <= min <= max, max >= 1)"
        )
    if opts.scale_metric not in SCALE_METRICS:
        raise ConfigError(
            f"scaleMetric {opts.scale_metric!r}: the Serverless mode scales on {' or '.join(SCALE_METRICS)}"
        )
    if opts.scale_target < 1:
        raise ConfigError(f"scaleTarget must be at least 1, not {opts.scale_target}")


def inference_service(
    version: str,
    *,
    image: str,
    lake_uri: str,
    name: str = MODEL_NAME,
    namespace: str | None = None,
    canary_percent: int | None = None,
    previous_version: str | None = None,
    previous_revision: str | None = None,
    rollout_id: str | None = None,
    options: ServingOptions | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` that serves ``version`` (first deployment:
    ``canary_percent=None``, all traffic once ready). ``previous_*`` record
    what served before, which :meth:`KServeTarget.serving` needs after a
    rollback."""
    opts = options or ServingOptions()
    _check_version(version)
    _check_lake(lake_uri)
    canary = _check_canary(canary_percent)
    _check_scaling(opts)
    if not _DNS_LABEL.fullmatch(name):
        raise ConfigError(f"InferenceService name {name!r} is not a DNS label")
    if not image:
        raise ConfigError("the model server image is empty")
    uri = model_uri(lake_uri, version)

    env: list[dict[str, Any]] = [
        {"name": MODEL_URI_ENV, "value": uri},
        {"name": "AUTOROI_LAKE__URI", "value": lake_uri},
        {"name": "AUTOROI_LAKE__S3_REGION", "value": opts.s3_region},
        {"name": "TMPDIR", "value": TMP_MOUNT},
        {"name": "HOME", "value": TMP_MOUNT},  # Keras and boto look for a writable home
    ]
    if opts.s3_endpoint_url:
        env.append({"name": "AUTOROI_LAKE__S3_ENDPOINT_URL", "value": opts.s3_endpoint_url})
    if opts.s3_secret:
        for env_name, key in opts.s3_secret_keys.items():
            env.append(
                {"name": env_name, "valueFrom": {"secretKeyRef": {"name": opts.s3_secret, "key": key}}}
            )

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": opts.image_pull_policy,
        "args": [
            "python",
            "-m",
            "serving.roi_server",
            "--lake",
            lake_uri,
            "--version",
            version,
            "--http_port",
            str(HTTP_PORT),
            *opts.server_args,
        ],
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": {k: dict(v) for k, v in opts.resources.items()},
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
            "initialDelaySeconds": 30,  # the model loads and warms up before the server answers
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "securityContext": {
            **({"runAsUser": opts.run_as_user} if opts.run_as_user is not None else {}),
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_MOUNT}],
    }

    predictor: dict[str, Any] = {
        "minReplicas": opts.min_replicas,
        "maxReplicas": opts.max_replicas,
        "scaleMetric": opts.scale_metric,
        "scaleTarget": opts.scale_target,
        "automountServiceAccountToken": False,  # the model server never talks to the Kubernetes API
        "labels": {VERSION_KEY: version},
        "annotations": {VERSION_KEY: version, MODEL_URI_KEY: uri},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if rollout_id:
        predictor["annotations"][ROLLOUT_ID_KEY] = rollout_id
    if opts.service_account:
        predictor["serviceAccountName"] = opts.service_account
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if opts.logger_url:
        if urlparse(opts.logger_url).scheme not in ("http", "https"):
            raise ConfigError(f"the prediction sink's URL {opts.logger_url!r} must be http(s)://...")
        predictor["logger"] = {"mode": LOGGER_MODE, "url": opts.logger_url}

    annotations = {
        TAG_ROUTING_KEY: "true",
        DEPLOYMENT_MODE_KEY: "Serverless",
        VERSION_KEY: version,
        MODEL_URI_KEY: uri,
    }
    if previous_version:
        annotations[PREVIOUS_VERSION_KEY] = previous_version
    if previous_revision:
        annotations[PREVIOUS_REVISION_KEY] = previous_revision
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {
            **opts.labels,
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": "autoroi",
            "app.kubernetes.io/component": "model-server",
            VERSION_KEY: version,
        },
        "annotations": annotations,
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


# --------------------------------------------------------------------------- reading the status


def _predictor_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    return dict((status.get("components") or {}).get("predictor") or {})


def _conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): dict(c) for c in conds if isinstance(c, Mapping)}


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _traffic(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(t) for t in _predictor_status(obj).get("traffic") or [] if isinstance(t, Mapping)]


def _latest_target(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for t in _traffic(obj):
        if t.get("latestRevision") is True:
            return dict(t)
    return None


def _serving_revision(obj: Mapping[str, Any]) -> str | None:
    """The revision with the most traffic (ties go to the ``prev`` tag: the
    revision that was fully rolled out)."""
    shares: dict[str, int] = {}
    prev: set[str] = set()
    for t in _traffic(obj):
        rev = t.get("revisionName")
        if not rev:
            continue
        shares[rev] = shares.get(rev, 0) + int(t.get("percent") or 0)
        if t.get("tag") == "prev":
            prev.add(rev)
    if not shares or max(shares.values()) <= 0:
        return None
    return max(shares, key=lambda r: (shares[r], r in prev))


def _describe_conditions(obj: Mapping[str, Any]) -> str:
    """The first condition that is not True, as ``Type=Status (Reason): message``."""
    conds = _conditions(obj)
    order = [
        "PredictorReady",
        "PredictorConfigurationReady",
        "LatestDeploymentReady",
        "IngressReady",
        "Ready",
    ]
    for ctype in order + sorted(set(conds) - set(order)):
        c = conds.get(ctype)
        if c is not None and str(c.get("status")) != "True":
            reason = f" ({c['reason']})" if c.get("reason") else ""
            message = f": {c['message']}" if c.get("message") else ""
            return f"{ctype}={c.get('status')}{reason}{message}"
    return ""


def _api_error(action: str, ns: str, name: str, e: ApiException) -> DeployError:
    """A one-line description of a Kubernetes API error (``str(ApiException)``
    spans lines and carries the response headers)."""
    status, reason, body = e.status, e.reason or "", e.body
    message = ""
    if body:
        try:
            doc = json.loads(body)
            message = str(doc.get("message", "")) if isinstance(doc, dict) else ""
        except (TypeError, ValueError):
            message = ""
    detail = f"HTTP {status} {reason}".strip() if status is not None else " ".join(str(e).split())[:200]
    text = f"{action} InferenceService {ns}/{name} failed: {type(e).__name__} {detail}"
    return DeployError(f"{text}: {message[:300]}" if message else text)


# --------------------------------------------------------------------------- the target


class KServeTarget:
    """:class:`autoroi.deploy.rollout.RolloutTarget` for the cluster: one
    InferenceService whose predictor is patched per version, with KServe's
    canary traffic split, tag routing for the smoke test, and KServe's
    documented promotion (remove ``canaryTrafficPercent``) and rollback
    (``canaryTrafficPercent: 0``)."""

    def __init__(
        self,
        api: CustomObjectsApi,
        namespace: str,
        name: str = MODEL_NAME,
        *,
        image: str,
        lake_uri: str,
        canary_percent: int = 10,
        options: ServingOptions | None = None,
        candidate_endpoint: Literal["tag", "cluster-local"] = "tag",
        poll_s: float = 5.0,
        promote_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        new_rollout_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12],
    ) -> None:
        if not _DNS_LABEL.fullmatch(namespace or ""):
            raise ConfigError(f"Kubernetes namespace {namespace!r} is not a DNS label")
        if not _DNS_LABEL.fullmatch(name):
            raise ConfigError(f"InferenceService name {name!r} is not a DNS label")
        canary = _check_canary(canary_percent)
        if canary is None or not 0 < canary < 100:
            raise ConfigError(f"canary_percent must be between 1 and 99 for a canary, not {canary_percent!r}")
        if candidate_endpoint not in ("tag", "cluster-local"):
            raise ConfigError(
                f"candidate_endpoint must be 'tag' or 'cluster-local', not {candidate_endpoint!r}"
            )
        self.api = api
        self.namespace = namespace
        self.name = name
        self.image = image
        self.lake_uri = _check_lake(lake_uri)
        self.canary_percent = canary
        self.options = options or ServingOptions()
        self.candidate_endpoint = candidate_endpoint
        self.poll_s = poll_s
        self.promote_timeout_s = promote_timeout_s
        self.clock = clock
        self.sleep = sleep
        self.new_rollout_id = new_rollout_id
        # per version started by this object: the latest created revision before
        # the patch (so a stale status is never taken for the new revision), and
        # whether the start created the InferenceService (a first deployment)
        self._baseline: dict[str, str | None] = {}
        self._created: dict[str, bool] = {}
        self._ready_revision: dict[str, str] = {}  # the revision wait_ready saw ready: the one to promote

    def __repr__(self) -> str:
        return f"KServeTarget({self.namespace}/{self.name})"

    # -- API calls -------------------------------------------------------------
    def _get(self) -> dict[str, Any] | None:
        try:
            obj = self.api.get_namespaced_custom_object(GROUP, API_VERSION, self.namespace, PLURAL, self.name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error("reading", self.namespace, self.name, e) from e
        return dict(obj)

    def _patch(self, body: dict[str, Any], action: str) -> None:
        try:
            self.api.patch_namespaced_custom_object(
                GROUP, API_VERSION, self.namespace, PLURAL, self.name, body
            )
        except ApiException as e:
            raise _api_error(action, self.namespace, self.name, e) from e

    def _version_of(self, obj: Mapping[str, Any]) -> str | None:
        return _annotations(obj).get(VERSION_KEY)

    def _require_spec_version(self, obj: Mapping[str, Any] | None, version: str) -> dict[str, Any]:
        if obj is None:
            raise DeployError(f"InferenceService {self.namespace}/{self.name} does not exist")
        spec_version = self._version_of(obj)
        if spec_version != version:
            raise DeployError(
                f"InferenceService {self.namespace}/{self.name} now runs version {spec_version},"
                f" not {version} (another rollout changed it)"
            )
        return dict(obj)

    # -- RolloutTarget ---------------------------------------------------------
    def serving(self) -> str | None:
        """The version of the revision that takes (most of) the traffic: the
        spec's version once its revision has it, else the version recorded as
        serving when the spec last changed (a canary, or a rolled-back one)."""
        obj = self._get()
        return None if obj is None else self._serving_of(obj)

    def _serving_of(self, obj: Mapping[str, Any]) -> str | None:
        ann = _annotations(obj)
        spec_version = ann.get(VERSION_KEY)
        prev_version = ann.get(PREVIOUS_VERSION_KEY)
        prev_revision = ann.get(PREVIOUS_REVISION_KEY)
        pred = _predictor_status(obj)
        top = _serving_revision(obj)
        if top is None:
            return None  # nothing has been ready yet
        if prev_revision and top == prev_revision:
            return prev_version
        if top == pred.get("latestCreatedRevision"):
            return spec_version
        # the latest revision is not the one answering: an older one is
        # (the new one never became ready, or traffic was pinned back)
        log.warning(
            "InferenceService %s/%s: revision %s answers, neither the recorded previous one (%s) nor the"
            " latest (%s)",
            self.namespace,
            self.name,
            top,
            prev_revision,
            pred.get("latestCreatedRevision"),
        )
        return prev_version if top != pred.get("latestReadyRevision") else spec_version

    def start(self, version: str, artifact_uri: str) -> None:
        """Create the InferenceService (first deployment: all traffic once
        ready) or patch its predictor to ``version`` at ``canaryTrafficPercent``."""
        _check_version(version)
        expected = model_uri(self.lake_uri, version)
        if artifact_uri and artifact_uri.rstrip("/") not in (expected, expected.rsplit("/", 1)[0]):
            raise DeployError(
                f"artifact {artifact_uri} is not version {version} of the registry in the lake"
                f" {self.lake_uri} that the model server reads ({expected})"
            )
        existing = self._get()
        rollout_id = self.new_rollout_id()
        if existing is None:
            body = inference_service(
                version,
                image=self.image,
                lake_uri=self.lake_uri,
                name=self.name,
                namespace=self.namespace,
                rollout_id=rollout_id,
                options=self.options,
            )
            self._baseline[version] = None
            try:
                self.api.create_namespaced_custom_object(GROUP, API_VERSION, self.namespace, PLURAL, body)
            except ApiException as e:
                raise _api_error("creating", self.namespace, self.name, e) from e
            self._created[version] = True
            log.info("created InferenceService %s/%s with version %s", self.namespace, self.name, version)
            return

        previous = self._serving_of(existing)
        previous_revision = _serving_revision(existing) if previous else None
        canary = self.canary_percent if previous else None  # nothing serves: no split to make
        desired = inference_service(
            version,
            image=self.image,
            lake_uri=self.lake_uri,
            name=self.name,
            namespace=self.namespace,
            canary_percent=canary,
            previous_version=previous,
            previous_revision=previous_revision,
            rollout_id=rollout_id,
            options=self.options,
        )
        annotations: dict[str, Any] = dict(desired["metadata"]["annotations"])
        for key in (PREVIOUS_VERSION_KEY, PREVIOUS_REVISION_KEY):
            annotations.setdefault(key, None)  # a merge patch deletes what is null
        predictor = dict(desired["spec"]["predictor"])
        predictor.setdefault("canaryTrafficPercent", None)
        predictor.setdefault("logger", None)  # logging turned off: the merge patch removes it
        body = {
            "metadata": {"annotations": annotations, "labels": desired["metadata"]["labels"]},
            "spec": {"predictor": predictor},
        }
        self._baseline[version] = _predictor_status(existing).get("latestCreatedRevision")
        self._created[version] = False
        self._patch(body, "patching")
        log.info(
            "patched InferenceService %s/%s to version %s at canaryTrafficPercent %s (serving: %s, %s)",
            self.namespace,
            self.name,
            version,
            canary,
            previous,
            previous_revision,
        )

    def _readiness(self, obj: Mapping[str, Any], version: str) -> tuple[bool, str]:
        pred = _predictor_status(obj)
        created = pred.get("latestCreatedRevision")
        ready_rev = pred.get("latestReadyRevision")
        old = {self._baseline.get(version), _annotations(obj).get(PREVIOUS_REVISION_KEY)} - {None}
        conditions = _describe_conditions(obj)
        if not created or created in old:
            return False, conditions or "KServe has not created the new revision yet"
        if ready_rev != created:
            return False, conditions or f"revision {created} is not ready (latest ready: {ready_rev})"
        conds = _conditions(obj)
        for ctype in ("PredictorReady", "Ready"):
            if str((conds.get(ctype) or {}).get("status")) != "True":
                return False, conditions or f"{ctype} is not reported yet"
        latest = _latest_target(obj)
        if latest is None or latest.get("revisionName") != created or latest.get("tag") != "latest":
            return False, f"revision {created} is ready but the route has no 'latest' tag for it yet"
        return True, f"revision {created}"

    def wait_ready(self, version: str, timeout_s: float) -> None:
        """Poll the status until a revision created after :meth:`start` is
        ready and routed under the ``latest`` tag; raise :class:`DeployError`
        naming the last condition message when ``timeout_s`` passes."""
        deadline = self.clock() + timeout_s
        last = "no status yet"
        while True:
            try:
                obj = self._require_spec_version(self._get(), version)
            except DeployError as e:
                if e.__cause__ is None or getattr(e.__cause__, "status", None) in (401, 403, 404):
                    raise
                last = str(e)  # a passing API error: try again until the deadline
            else:
                ready, why = self._readiness(obj, version)
                if ready:
                    self._ready_revision[version] = str(_predictor_status(obj)["latestCreatedRevision"])
                    log.info("version %s is ready in %s/%s (%s)", version, self.namespace, self.name, why)
                    return
                last = why
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise DeployError(
                    f"version {version} of InferenceService {self.namespace}/{self.name} was not ready"
                    f" within {timeout_s:g} s: {last}"
                )
            self.sleep(min(self.poll_s, remaining))

    def candidate_url(self, version: str) -> str:
        """The URL of the ``latest`` tag (the candidate revision alone): as the
        status reports it, or its cluster-local form (the Knative tag service
        beside ``<name>-predictor``)."""
        obj = self._require_spec_version(self._get(), version)
        if self.candidate_endpoint == "tag":
            latest = _latest_target(obj)
            url = (latest or {}).get("url")
            if not url or latest is None or latest.get("tag") != "latest":
                raise DeployError(
                    f"InferenceService {self.namespace}/{self.name} reports no URL for the 'latest' tag"
                    f" (annotation {TAG_ROUTING_KEY} missing?)"
                )
            return str(url).rstrip("/")
        pred = _predictor_status(obj)
        address = ((pred.get("address") or {}).get("url")) or (
            f"http://{self.name}-predictor.{self.namespace}.svc.cluster.local"
        )
        parsed = urlparse(str(address))
        return f"{parsed.scheme or 'http'}://latest-{parsed.netloc}".rstrip("/")

    def promote(self, version: str) -> None:
        """Remove ``canaryTrafficPercent`` (KServe's documented promotion) and
        wait until the candidate revision has all traffic and is recorded as
        the rolled-out one."""
        obj = self._require_spec_version(self._get(), version)
        candidate = self._ready_revision.get(version) or _predictor_status(obj).get("latestReadyRevision")
        spec = ((obj.get("spec") or {}).get("predictor")) or {}
        if "canaryTrafficPercent" in spec:
            self._patch({"spec": {"predictor": {"canaryTrafficPercent": None}}}, "promoting")
        deadline = self.clock() + self.promote_timeout_s
        while True:
            obj = self._require_spec_version(self._get(), version)
            pred = _predictor_status(obj)
            latest = _latest_target(obj) or {}
            if (
                latest.get("revisionName") == candidate
                and int(latest.get("percent") or 0) == 100
                and pred.get("latestRolledoutRevision") == candidate
            ):
                log.info("promoted %s (revision %s) in %s/%s", version, candidate, self.namespace, self.name)
                return
            if self.clock() >= deadline:
                raise DeployError(
                    f"promotion of {version} in InferenceService {self.namespace}/{self.name} was not"
                    f" confirmed within {self.promote_timeout_s:g} s: traffic {_traffic(obj)}"
                )
            self.sleep(self.poll_s)

    def rollback(self, version: str) -> None:
        """Pin all traffic to the previous revision (``canaryTrafficPercent:
        0``); the version bookkeeping stays, so :meth:`serving` still names the
        previous version. A first deployment that this object created is
        deleted instead: there is nothing to return to."""
        obj = self._get()
        if obj is None:
            log.info(
                "rollback of %s: InferenceService %s/%s does not exist", version, self.namespace, self.name
            )
            return
        if self._version_of(obj) != version:
            log.info(
                "rollback of %s: the InferenceService still runs %s; nothing of %s was started",
                version,
                self._version_of(obj),
                version,
            )
            return
        if self._created.get(version):
            try:
                self.api.delete_namespaced_custom_object(
                    GROUP, API_VERSION, self.namespace, PLURAL, self.name
                )
            except ApiException as e:
                if e.status == 404:
                    return
                raise _api_error("deleting", self.namespace, self.name, e) from e
            log.info("rolled back the first deployment %s: InferenceService deleted", version)
            return
        if not _annotations(obj).get(PREVIOUS_REVISION_KEY):
            raise DeployError(
                f"InferenceService {self.namespace}/{self.name} has no previous revision to return to;"
                f" version {version} stays in place"
            )
        self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}}, "rolling back")
        log.info(
            "rolled back %s: canaryTrafficPercent 0, all traffic to %s (revision %s)",
            version,
            _annotations(obj).get(PREVIOUS_VERSION_KEY),
            _annotations(obj).get(PREVIOUS_REVISION_KEY),
        )


# --------------------------------------------------------------------------- the client


def kubernetes_api(
    in_cluster: bool | None = None, kubeconfig: str | None = None, context: str | None = None
) -> Any:
    """A ``kubernetes.client.CustomObjectsApi`` from the pod's service account
    (``in_cluster=True``), a kubeconfig (``False``), or whichever works
    (``None``: in-cluster when ``KUBERNETES_SERVICE_HOST`` is set, else the
    kubeconfig). Raises :class:`KubernetesConfigError` naming what was tried."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    attempts: list[str] = []

    def _in_cluster() -> bool:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            attempts.append(f"in-cluster: {e}")
            if in_cluster:
                raise KubernetesConfigError(
                    f"no in-cluster Kubernetes configuration (not running in a pod with a service account"
                    f" token?): {e}"
                ) from e
            return False
        return True

    def _kubeconfig() -> None:
        # read KUBECONFIG now (the library reads it once, at import)
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        where = path or "~/.kube/config"
        try:
            config.load_kube_config(
                config_file=path, context=context, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError) as e:
            what = f"kubeconfig {where}" + (f" (context {context})" if context else "")
            tried = "; ".join([*attempts, f"{what}: {e}"])
            raise KubernetesConfigError(f"no usable Kubernetes configuration: {tried}") from e

    if in_cluster is True:
        _in_cluster()
    elif in_cluster is False:
        _kubeconfig()
    elif not os.environ.get("KUBERNETES_SERVICE_HOST"):
        attempts.append("in-cluster: KUBERNETES_SERVICE_HOST is not set (not in a pod)")
        _kubeconfig()
    elif not _in_cluster():
        _kubeconfig()
    return client.CustomObjectsApi(client.ApiClient(cfg))


__all__ = [
    "DEFAULT_RESOURCES",
    "DEFAULT_S3_SECRET",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION_KEY",
    "KServeTarget",
    "KubernetesConfigError",
    "ServingOptions",
    "inference_service",
    "kubernetes_api",
    "model_uri",
    "sink_url",
]
