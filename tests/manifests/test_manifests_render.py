"""The kustomize overlays render, and every object is one the API server accepts
(the Kubernetes OpenAPI schema of a pinned version; the InferenceService
against KServe's CRD) and fits together: names that are referenced exist,
RBAC stays namespaced and narrow, the config file is valid, the schedule
submits pipelines built from its own images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifest_checks import (
    K8S_VERSION,
    MANIFESTS,
    OVERLAYS,
    RENDERS,
    crd_schema_errors,
    ident,
    k8s_schema_errors,
    pod_specs,
    render,
)

NAMESPACE = "autoroi"
SECRETS_DIR = MANIFESTS / "secrets"
CRON = "autoroi-ingest-schedule"
SINK = "roi-prediction-sink"
# the Prometheus Operator's kinds (components/monitoring): its CRDs are not in
# this repository; test_the_monitors_select_the_model_server_and_the_sink checks them
PROMETHEUS_GROUP = "monitoring.coreos.com/"


def _objects(
    rendered: dict[str, list[dict[str, Any]]], name: str, kind: str | None = None
) -> list[dict[str, Any]]:
    return [o for o in rendered[name] if kind is None or o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def _cron_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cron = _one(objs, "CronJob", CRON)
    (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(c)


# --------------------------------------------------------------------------- schemas


def test_the_schema_validator_catches_mistakes() -> None:
    """The strict schema is really applied: a misspelt field and a wrong type fail."""
    good = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}}
    assert k8s_schema_errors(good) == []
    assert k8s_schema_errors({**good, "automountServiceAccountTokens": False})
    assert k8s_schema_errors({**good, "automountServiceAccountToken": "no"})


@pytest.mark.parametrize("name", RENDERS)
def test_every_object_matches_the_kubernetes_schema(rendered: dict[str, Any], name: str) -> None:
    errors = []
    for obj in rendered[name]:
        if obj["kind"] == "InferenceService" or obj["apiVersion"].startswith(PROMETHEUS_GROUP):
            continue  # custom resources: below
        errors += [f"{ident(obj)}: {e}" for e in k8s_schema_errors(obj)]
    assert not errors, f"against Kubernetes {K8S_VERSION}:\n" + "\n".join(errors)


def test_the_inference_service_matches_the_kserve_crd(
    rendered: dict[str, Any], isvc_schema: dict[str, Any]
) -> None:
    (isvc,) = _objects(rendered, "prod-all-components", "InferenceService")
    assert isvc["metadata"]["name"] == "roi" and isvc["metadata"]["namespace"] == NAMESPACE
    errors = crd_schema_errors(isvc_schema, isvc)
    assert not errors, "\n".join(errors)
    predictor = isvc["spec"]["predictor"]
    assert predictor["automountServiceAccountToken"] is False
    (c,) = predictor["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["image"].endswith(":REPLACE-WITH-GIT-SHA")  # the overlay's image tag reaches the predictor


@pytest.mark.parametrize("name", RENDERS)
def test_everything_is_in_the_restricted_namespace(rendered: dict[str, Any], name: str) -> None:
    objs = rendered[name]
    ns = _one(objs, "Namespace", NAMESPACE)
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    wrong = [
        ident(o) for o in objs if o["kind"] != "Namespace" and o["metadata"].get("namespace") != NAMESPACE
    ]
    assert not wrong, f"not in namespace {NAMESPACE}: {wrong}"


def test_the_optional_pieces_are_optional(rendered: dict[str, Any]) -> None:
    kinds = {name: {ident(o) for o in rendered[name]} for name in RENDERS}
    # the deploy pipeline owns the live InferenceService: kubectl apply must not reset it
    assert not [i for i in kinds["prod"] | kinds["dev"] if i.startswith("InferenceService/")]
    assert "InferenceService/autoroi/roi" in kinds["prod-all-components"]
    assert "Role/autoroi/autoroi-spark-driver" in kinds["prod-all-components"]
    assert "Ingress/autoroi/autoroi-dashboard" in kinds["prod"]
    assert not [i for i in kinds["dev"] if i.startswith("Ingress/")]


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("name", RENDERS)
def test_referenced_objects_exist(rendered: dict[str, Any], name: str) -> None:
    objs = rendered[name]
    have = {(o["kind"], o["metadata"]["name"]) for o in objs}
    secret_templates = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in SECRETS_DIR.glob("*.yaml")}
    missing = []
    for where, pod in (p for o in objs for p in pod_specs(o)):
        sa = pod.get("serviceAccountName")
        if sa and ("ServiceAccount", sa) not in have:
            missing.append(f"{where}: ServiceAccount {sa}")
        for vol in pod.get("volumes") or []:
            cm = (vol.get("configMap") or {}).get("name")
            if cm and ("ConfigMap", cm) not in have:
                missing.append(f"{where}: ConfigMap {cm}")
        for c in pod.get("containers") or []:
            for e in c.get("env") or []:
                ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                if ref and ref not in secret_templates:
                    missing.append(f"{where}: Secret {ref} has no template in manifests/secrets/")
    for o in objs:
        if o["kind"] == "RoleBinding":
            if ("Role", o["roleRef"]["name"]) not in have:
                missing.append(f"{ident(o)}: Role {o['roleRef']['name']}")
            for s in o["subjects"]:
                if ("ServiceAccount", s["name"]) not in have:
                    missing.append(f"{ident(o)}: ServiceAccount {s['name']}")
        if o["kind"] == "Ingress":
            for rule in o["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]["name"]
                    if ("Service", svc) not in have:
                        missing.append(f"{ident(o)}: Service {svc}")
    assert not missing, "\n".join(missing)


def test_secrets_are_templates_outside_the_kustomizations(rendered: dict[str, Any]) -> None:
    """`kubectl apply -k` must never replace a real Secret by a template, and a
    template carries no value."""
    for name in RENDERS:
        assert not _objects(rendered, name, "Secret"), f"{name} renders a Secret"
    templates = sorted(SECRETS_DIR.glob("*.yaml"))
    assert {p.stem for p in templates} >= {
        "autoroi-source-db",
        "autoroi-hmac",
        "autoroi-lake-raw",
        "autoroi-lake-s3",
    }
    for p in templates:
        doc = yaml.safe_load(p.read_text())
        assert doc["kind"] == "Secret" and doc["metadata"]["name"] == p.stem
        assert not k8s_schema_errors(doc), p
        assert "data" not in doc and all(v == "" for v in doc["stringData"].values()), f"{p} holds a value"
        assert "kubectl -n autoroi create secret" in p.read_text(), f"{p} does not say how to create it"


def test_config_names_the_secrets_that_have_templates() -> None:
    from autoroi.config import load_config

    for cfg_file in (MANIFESTS / "base/config/autoroi.yaml", MANIFESTS / "overlays/dev/config/autoroi.yaml"):
        c = load_config(cfg_file).cluster
        names = {c.lake_raw_secret, c.lake_secret, c.db_secret, c.hmac_secret}
        assert names == {"autoroi-lake-raw", "autoroi-lake-s3", "autoroi-source-db", "autoroi-hmac"}
        for n in names:
            assert (SECRETS_DIR / f"{n}.yaml").exists(), n


# --------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("name", RENDERS)
def test_rbac_is_namespaced_and_narrow(rendered: dict[str, Any], name: str) -> None:
    objs = rendered[name]
    assert not [ident(o) for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in _objects(rendered, name, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{ident(role)}: wildcard {key}"
            if "secrets" in rule["resources"]:
                # by name only, and never the raw-zone credentials
                assert rule.get("resourceNames"), f"{ident(role)}: secrets without resourceNames"
                assert set(rule["verbs"]) <= {"get"}
                assert "autoroi-lake-raw" not in rule["resourceNames"]
            assert (
                "escalate" not in rule["verbs"]
                and "bind" not in rule["verbs"]
                and "impersonate" not in rule["verbs"]
            )
    for sa in _objects(rendered, name, "ServiceAccount"):
        runner = sa["metadata"]["name"] == "autoroi-pipeline-runner"
        assert sa.get("automountServiceAccountToken") is runner, ident(sa)


def _runner_can(objs: list[dict[str, Any]], verb: str, resource: str) -> bool:
    roles = {
        b["roleRef"]["name"]
        for b in objs
        if b["kind"] == "RoleBinding" and any(s["name"] == "autoroi-pipeline-runner" for s in b["subjects"])
    }
    return any(
        verb in rule["verbs"] and resource in rule["resources"]
        for o in objs
        if o["kind"] == "Role" and o["metadata"]["name"] in roles
        for rule in o["rules"]
    )


def test_the_runner_creates_pods_only_with_spark_on_kubernetes(rendered: dict[str, Any]) -> None:
    for name in OVERLAYS:
        objs = rendered[name]
        assert not _runner_can(objs, "create", "pods"), name
        assert _runner_can(objs, "patch", "inferenceservices") and _runner_can(
            objs, "create", "inferenceservices"
        )
    assert _runner_can(rendered["prod-all-components"], "create", "pods")


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("name", RENDERS)
def test_network_is_default_deny_plus_what_is_needed(rendered: dict[str, Any], name: str) -> None:
    pols = {o["metadata"]["name"]: o["spec"] for o in _objects(rendered, name, "NetworkPolicy")}
    deny = pols["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    assert pols["allow-dns"]["egress"][0]["ports"][0]["port"] == 53

    def selected(labels: dict[str, str], spec: dict[str, Any]) -> bool:
        sel = spec["podSelector"]
        if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
            return False
        for e in sel.get("matchExpressions") or []:
            if e["operator"] == "Exists" and e["key"] not in labels:
                return False
        return True

    # every workload of the namespace has an egress policy of its own (beyond DNS)
    workloads = {
        "dashboard": {"app.kubernetes.io/name": "autoroi-dashboard"},
        "schedule": {"app.kubernetes.io/name": "autoroi-ingest-schedule"},
        "predictor": {"serving.kserve.io/inferenceservice": "roi", "component": "predictor"},
        "pipeline pod": {"workflows.argoproj.io/workflow": "ingest-abc"},
        "prediction sink": {"app.kubernetes.io/name": SINK},
    }
    for what, labels in workloads.items():
        own = [
            n for n, s in pols.items() if n not in ("default-deny-all", "allow-dns") and selected(labels, s)
        ]
        assert own, f"no policy selects the {what}"
    # the dashboard's pods carry the labels the policies select
    dash = _one(rendered[name], "Deployment", "autoroi-dashboard")
    assert selected(dash["spec"]["template"]["metadata"]["labels"], pols["dashboard"])


# --------------------------------------------------------------------------- config and images


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_schedule_runs_a_valid_config(
    rendered: dict[str, Any], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap's file plus the CronJob's AUTOROI_* variables load as the
    CLI would load them, for the cluster (kserve target, an S3 lake)."""
    from sqlalchemy.engine import make_url

    from autoroi.config import load_config

    objs = rendered[name]
    container = _cron_container(objs)
    cron_pod = _one(objs, "CronJob", CRON)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (vol,) = [v for v in cron_pod["volumes"] if "configMap" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == vol["name"]]
    cm = _one(objs, "ConfigMap", vol["configMap"]["name"])
    args = container["args"]
    assert args[:2] == ["submit", "ingest"]
    config_path = args[args.index("--config") + 1]
    assert Path(config_path).parent == Path(mount["mountPath"])
    cfg_file = tmp_path / "autoroi.yaml"
    cfg_file.write_text(cm["data"][Path(config_path).name])
    for var in [v for v in os.environ if v.startswith("AUTOROI_")]:
        monkeypatch.delenv(var)
    for k, v in _env(container).items():
        if k.startswith("AUTOROI_") and v is not None:
            monkeypatch.setenv(k, v)
    cfg = load_config(cfg_file)
    assert cfg.serving.target == "kserve" and cfg.serving.namespace == NAMESPACE
    assert cfg.lake.uri.startswith("s3://")
    url = make_url(cfg.source.url)
    assert url.drivername.startswith("postgresql") and url.password is None  # the password: a Secret
    # the submitted pipelines run the images of the schedule's own commit
    image = container["image"]
    registry, tag = image.rsplit("/components:", 1)
    for kind in ("components", "spark", "trainer"):
        assert cfg.kfp.image(kind) == f"{registry}/{kind}:{tag}"
    assert cfg.serving.image == f"{registry}/serving:{tag}"
    dash = _one(objs, "Deployment", "autoroi-dashboard")["spec"]["template"]["spec"]["containers"][0]
    assert dash["image"] == f"{registry}/dashboard:{tag}"


def test_image_pins_are_the_same_in_every_overlay() -> None:
    texts = {o: (MANIFESTS / "overlays" / o / "image-pins.yaml").read_text() for o in OVERLAYS}
    assert len(set(texts.values())) == 1, "overlays/*/image-pins.yaml differ"


def test_a_new_image_tag_reaches_the_submitted_pipelines() -> None:
    """What CI and the README do (`kustomize edit set image` in the overlay):
    the CronJob's config follows the image, nothing else has to change."""
    images = [
        {
            "name": f"ghcr.io/autoroi/{k}",
            "newName": f"registry.example.com/acme/autoroi/{k}",
            "newTag": "0123abc",
        }
        for k in ("components", "dashboard", "serving")
    ]
    objs = render("prod", (), images=images)
    env = _env(_cron_container(objs))
    assert env["AUTOROI_KFP__IMAGE_REGISTRY"] == "registry.example.com/acme/autoroi"
    assert env["AUTOROI_KFP__IMAGE_TAG"] == "0123abc"
    assert env["AUTOROI_SERVING__IMAGE"] == "registry.example.com/acme/autoroi/serving:0123abc"


def test_the_kfp_token_is_projected_for_the_pipelines_audience(rendered: dict[str, Any]) -> None:
    objs = rendered["prod"]
    pod = _one(objs, "CronJob", CRON)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "autoroi-scheduler"
    (proj,) = [v["projected"] for v in pod["volumes"] if "projected" in v]
    (token,) = [s["serviceAccountToken"] for s in proj["sources"]]
    assert token["audience"] == "pipelines.kubeflow.org"
    container = _cron_container(objs)
    (mount,) = [
        m for m in container["volumeMounts"] if m["mountPath"].startswith("/var/run/secrets/kubeflow")
    ]
    assert _env(container)["KF_PIPELINES_SA_TOKEN_PATH"] == f"{mount['mountPath']}/{token['path']}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_schedule_command_line_is_one_autoroi_accepts(rendered: dict[str, Any], name: str) -> None:
    """The CronJob's args parse with the real `autoroi submit` (after the
    kubelet's $(VAR) expansion), so a renamed option fails here, not at 3 am."""
    import re

    from autoroi.cli.pipeline_cmds import submit

    container = _cron_container(rendered[name])
    env = _env(container)

    def expand(arg: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: env[str(m.group(1))] or "", arg)

    args = [expand(a) for a in container["args"]]
    assert args[0] == "submit"
    ctx = submit.make_context("autoroi submit", args[1:])
    assert ctx.params["pipeline"] == "ingest"
    assert ctx.params["in_cluster"] is True and ctx.params["host"].startswith("http")
    assert str(ctx.params["config_path"]) == "/etc/autoroi/autoroi.yaml"


# --------------------------------------------------------------------------- prediction log


def _allows(
    pols: list[dict[str, Any]], direction: str, pod: dict[str, str], peer: dict[str, str], port: int
) -> bool:
    """Whether a policy of ``direction`` (ingress/egress) on pods labelled
    ``pod`` lets them reach (or be reached by) pods of this namespace
    labelled ``peer`` on ``port``."""
    key, side = ("egress", "to") if direction == "egress" else ("ingress", "from")
    for p in pols:
        spec = p["spec"]
        sel = spec["podSelector"].get("matchLabels") or {}
        if any(pod.get(k) != v for k, v in sel.items()) or key not in spec:
            continue
        for rule in spec[key]:
            ports = {x["port"] for x in rule.get("ports") or []}
            peers = [  # pods of this namespace (a namespaceSelector names others)
                x["podSelector"].get("matchLabels") or {}
                for x in rule.get(side) or []
                if "podSelector" in x and "namespaceSelector" not in x
            ]
            if port in ports and any(all(peer.get(k) == v for k, v in m.items()) for m in peers):
                return True
    return False


@pytest.mark.parametrize("name", RENDERS)
def test_the_prediction_sink_is_reachable_from_the_predictor_only(
    rendered: dict[str, Any], name: str
) -> None:
    """KServe's agent (in the predictor's pods) reaches the sink's Service and
    pods; the sink is one replica of the serving image with the lake's
    curated-only credentials and the config file."""
    objs = rendered[name]
    svc = _one(objs, "Service", SINK)
    dep = _one(objs, "Deployment", SINK)
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    (sport,) = svc["spec"]["ports"]
    assert sport["port"] == 80 and ports[sport["targetPort"]] == 8091
    assert c["args"][c["args"].index("--port") + 1] == "8091"
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert c["command"][:3] == ["python", "-m", "serving.prediction_sink"]
    assert c["image"].rsplit(":", 1)[0].endswith("/serving")
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
    assert secrets == {"autoroi-lake-s3"}
    config = c["args"][c["args"].index("--config") + 1]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    cm = volumes[mounts[str(Path(config).parent)]]["configMap"]["name"]
    assert cm.startswith("autoroi-config")
    journal = c["args"][c["args"].index("--journal-dir") + 1]
    assert "emptyDir" in volumes[mounts[journal]]
    pols = _objects(rendered, name, "NetworkPolicy")
    predictor = {"serving.kserve.io/inferenceservice": "roi", "component": "predictor"}
    sink = pod["metadata"]["labels"]
    assert _allows(pols, "egress", predictor, sink, 8091)
    assert _allows(pols, "ingress", sink, predictor, 8091)
    assert not _allows(pols, "ingress", sink, {"app.kubernetes.io/name": "autoroi-dashboard"}, 8091)


def test_the_inference_service_logs_to_the_prediction_sink(
    rendered: dict[str, Any], isvc_schema: dict[str, Any]
) -> None:
    """The declarative InferenceService's logger stanza (KServe's CRD checks
    its fields above) names the sink's Service of this namespace."""
    from urllib.parse import urlparse

    objs = rendered["prod-all-components"]
    (isvc,) = _objects(rendered, "prod-all-components", "InferenceService")
    logger = isvc["spec"]["predictor"]["logger"]
    assert logger["mode"] == "all"
    url = urlparse(logger["url"])
    assert url.scheme == "http" and url.port is None  # the Service's port 80
    assert url.hostname == f"{SINK}.{NAMESPACE}.svc.cluster.local"
    _one(objs, "Service", SINK)
    assert not crd_schema_errors(isvc_schema, isvc)


def test_the_monitors_select_the_model_server_and_the_sink(rendered: dict[str, Any]) -> None:
    """components/monitoring: the PodMonitor selects the predictor's pods by
    the labels KServe gives them and scrapes the port Knative names
    ``user-port`` (the model server's 8080); the ServiceMonitor selects the
    sink's Service and one of its named ports. Only there."""
    objs = rendered["prod-all-components"]
    assert not [o for n in OVERLAYS for o in rendered[n] if o["apiVersion"].startswith(PROMETHEUS_GROUP)]
    pm = _one(objs, "PodMonitor", "roi-model-server")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "roi",
        "component": "predictor",
    }
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert (ep["port"], ep["path"]) == ("user-port", "/metrics")
    (isvc,) = _objects(rendered, "prod-all-components", "InferenceService")
    (c,) = isvc["spec"]["predictor"]["containers"]
    assert [p["containerPort"] for p in c["ports"]] == [8080]
    sm = _one(objs, "ServiceMonitor", SINK)
    svc = _one(objs, "Service", SINK)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (sep,) = sm["spec"]["endpoints"]
    assert sep["path"] == "/metrics" and sep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    for obj in (pm, sm):
        spec = obj["spec"]
        assert set(spec) <= {"selector", "podMetricsEndpoints", "endpoints"}, ident(obj)
    scrape = {o["metadata"]["name"] for o in _objects(rendered, "prod-all-components", "NetworkPolicy")}
    assert {"prometheus-scrape-model-server", "prometheus-scrape-prediction-sink"} <= scrape
