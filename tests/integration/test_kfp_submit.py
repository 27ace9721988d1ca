"""``autoroi submit`` and ``autoroi schedule`` through ``kfp.Client`` against a
local HTTP server that speaks the parts of the KFP v2beta1 REST API they use
(healthz, experiments, runs, recurring runs), with bearer-token auth."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from autoroi.cli.main import main as cli_main

TOKEN = "t0ken-for-tests"


class FakeKfp:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.experiments: dict[str, dict[str, Any]] = {}

    def handle(self, method: str, path: str, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
        self.requests.append(
            {"method": method, "path": path, "body": body, "auth": headers.get("Authorization")}
        )
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "unauthenticated", "code": 16}
        route = path.split("?")[0]
        if route == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if route == "/apis/v2beta1/experiments" and method == "GET":
            return 200, {"experiments": list(self.experiments.values()), "total_size": len(self.experiments)}
        if route == "/apis/v2beta1/experiments" and method == "POST":
            exp = {"experiment_id": f"exp-{len(self.experiments) + 1}", "display_name": body["display_name"]}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if route == "/apis/v2beta1/runs" and method == "POST":
            return 200, {**body, "run_id": "run-1", "state": "PENDING"}
        if route == "/apis/v2beta1/recurringruns" and method == "POST":
            return 200, {**body, "recurring_run_id": "job-1", "status": "ENABLED"}
        return 404, {"error": f"not implemented: {method} {route}"}

    def posted(self, route: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"].startswith(route)]


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, FakeKfp]]:
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            status, doc = fake.handle(method, self.path, self.headers, json.loads(raw) if raw else None)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", fake
    server.shutdown()


def test_submit_sends_the_compiled_pipeline_with_pinned_images_and_no_secrets(
    kfp_api, monkeypatch: pytest.MonkeyPatch, capsys
):
    url, fake = kfp_api
    monkeypatch.setenv("AUTOROI_KFP_TOKEN", TOKEN)
    monkeypatch.setenv("AUTOROI_GIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("AUTOROI_SOURCE__URL", "postgresql://bob:hunter2@db.example/dms")
    args = ["submit", "ingest", "--host", url, "--experiment", "nightly", "--param", "train_on_change=false"]
    assert cli_main(args) is None
    assert "run run-1" in capsys.readouterr().out
    [exp] = fake.posted("/apis/v2beta1/experiments")
    assert exp["display_name"] == "nightly"
    [run] = fake.posted("/apis/v2beta1/runs")
    # with a platform spec (kfp-kubernetes), kfp sends both documents
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert "autoroi-lake-raw" in json.dumps(platform)
    assert spec["pipelineInfo"]["name"] == "autoroi-ingest"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {
        "ghcr.io/autoroi/components:0123456789abcdef0123456789abcdef01234567",
        "ghcr.io/autoroi/spark:0123456789abcdef0123456789abcdef01234567",
        "ghcr.io/autoroi/trainer:0123456789abcdef0123456789abcdef01234567",
    }
    params = run["runtime_config"]["parameters"]
    assert params["source_url"] == "postgresql://bob@db.example/dms" and params["train_on_change"] is False
    assert "hunter2" not in json.dumps(run)
    assert run["experiment_id"] == "exp-1"
    assert run["service_account"] == "autoroi-pipeline-runner"  # the RBAC manifests/base grants
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in fake.requests)


def test_schedule_creates_a_recurring_run_with_a_six_field_cron(kfp_api, capsys):
    url, fake = kfp_api
    assert cli_main(["schedule", "ingest", "--cron", "0 2 * * *", "--host", url, "--token", TOKEN]) is None
    assert "recurring run job-1" in capsys.readouterr().out
    [job] = fake.posted("/apis/v2beta1/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert job["max_concurrency"] == "1" or job["max_concurrency"] == 1
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "autoroi-ingest"
    assert set(job["runtime_config"]["parameters"]) >= {"source_url", "lake_uri", "config_json"}


def test_bad_auth_unreachable_host_and_bad_cron_are_clear(kfp_api, capsys, monkeypatch):
    url, fake = kfp_api
    monkeypatch.delenv("AUTOROI_KFP_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        cli_main(["submit", "train", "--host", url, "--token", "wrong"])
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401)" in err and "--token" in err
    assert not fake.posted("/apis/v2beta1/runs")

    with pytest.raises(SystemExit):
        cli_main(["submit", "train", "--host", "http://127.0.0.1:9", "--token", TOKEN])
    assert "cannot reach the Kubeflow Pipelines API at http://127.0.0.1:9" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        cli_main(["schedule", "ingest", "--cron", "every night", "--host", url, "--token", TOKEN])
    assert "not a cron expression" in capsys.readouterr().err
    assert not fake.posted("/apis/v2beta1/recurringruns")


def test_compiled_pipelines_wire_secrets_per_zone_resources_and_retries(tmp_path):
    """The raw zone's credentials reach replicate and anonymize only; every
    secret is an environment variable from a Secret, never a parameter."""
    from autoroi.config import load_config
    from pipelines.run import compile_all

    paths = {p.stem: p for p in compile_all(load_config(), tmp_path)}
    docs = {name: list(yaml.safe_load_all(p.read_text())) for name, p in paths.items()}
    ingest_platform = docs["ingest"][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def secrets(executor: dict) -> dict[str, set[str]]:
        return {
            s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in executor.get("secretAsEnv", [])
        }

    raw_users = {e for e, ex in ingest_platform.items() if "autoroi-lake-raw" in secrets(ex)}
    assert raw_users == {"exec-replicate", "exec-anonymize"}
    assert secrets(ingest_platform["exec-replicate"])["autoroi-source-db"] == {"AUTOROI_SOURCE_PASSWORD"}
    assert secrets(ingest_platform["exec-scan-pii"]) == {"autoroi-hmac": {"AUTOROI_HMAC_KEY"}}
    assert secrets(ingest_platform["exec-publish"]) == {
        "autoroi-lake-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    }
    for name in ("train", "deploy"):
        platform = docs[name][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert platform and all("autoroi-lake-raw" not in secrets(ex) for ex in platform.values())
    spec = docs["ingest"][0]
    replicate = spec["deploymentSpec"]["executors"]["exec-replicate"]["container"]
    assert replicate["resources"]["cpuRequest"] == 1.0
    retry = spec["root"]["dag"]["tasks"]["replicate"]["retryPolicy"]
    assert retry["maxRetryCount"] == 2
    assert "AUTOROI_SOURCE_PASSWORD" not in json.dumps(spec["root"]["inputDefinitions"])
    # restricted Pod Security: every step of every pipeline runs as a non-root uid
    for name in ("ingest", "train", "deploy"):
        for executor in docs[name][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
            assert executor["securityContext"] == {"runAsUser": "10001", "runAsNonRoot": True} or executor[
                "securityContext"
            ] == {"runAsUser": 10001, "runAsNonRoot": True}


def test_spark_on_kubernetes_wires_the_driver_only_when_asked(tmp_path):
    from autoroi.config import load_config
    from pipelines.run import compile_all

    def preprocess(cfg):
        [path] = [
            p
            for p in compile_all(cfg, tmp_path / cfg.master.spark.master.replace("/", "_"))
            if p.stem == "ingest"
        ]
        spec, platform = yaml.safe_load_all(path.read_text())
        ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-preprocess"]
        env = {
            e["name"]: e.get("value")
            for e in spec["deploymentSpec"]["executors"]["exec-preprocess"]["container"].get("env", [])
        }
        return ex, env

    local, local_env = preprocess(load_config())
    assert "configMapAsVolume" not in local and "SPARK_CONF_DIR" not in local_env
    k8s, env = preprocess(
        load_config(overrides={"master": {"spark": {"master": "k8s://https://kubernetes.default.svc:443"}}})
    )
    assert k8s["configMapAsVolume"][0]["configMapName"] == "autoroi-spark"
    assert k8s["configMapAsVolume"][0]["mountPath"] == env["SPARK_CONF_DIR"] == "/etc/autoroi/spark"
    assert {f["name"]: f["fieldPath"] for f in k8s["fieldPathAsEnv"]}[
        "SPARK_LOCAL_HOSTNAME"
    ] == "status.podIP"
    assert env["AUTOROI_SPARK_EXECUTOR_IMAGE"].startswith("ghcr.io/autoroi/spark:")


def test_compiled_yaml_loads_with_kfps_loader_with_caching_where_inputs_decide(tmp_path):
    from kfp import components

    from autoroi.config import load_config
    from pipelines.run import compile_all

    paths = {p.stem: p for p in compile_all(load_config(), tmp_path)}
    again = {p.stem: p for p in compile_all(load_config(), tmp_path / "again")}
    for name, path in paths.items():
        loaded = components.load_component_from_file(str(path))
        assert loaded.name == f"autoroi-{name}"
        assert path.read_bytes() == again[name].read_bytes()  # deterministic
    spec = next(yaml.safe_load_all(paths["ingest"].read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    caching = {n: t.get("cachingOptions", {}).get("enableCache", False) for n, t in tasks.items()}
    assert caching["preprocess"] is True  # a function of its input artifact and config
    assert not any(caching[n] for n in ("replicate", "anonymize", "validate-master", "scan-pii", "publish"))


def test_gpu_trainer_puts_tune_and_fit_on_gpu_nodes(tmp_path):
    from autoroi.config import load_config
    from pipelines.run import compile_all

    cfg = load_config(overrides={"cluster": {"gpu_trainer": True}})
    [path] = [p for p in compile_all(cfg, tmp_path) if p.stem == "train"]
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("exec-tune-hyperparameters", "exec-fit-model"):
        assert executors[step]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert executors[step]["tolerations"][0]["key"] == "nvidia.com/gpu"
        container = spec["deploymentSpec"]["executors"][step]["container"]
        assert container["resources"]["accelerator"]["resourceCount"] in ("1", 1)
    assert "nodeSelector" not in executors["exec-validate-model"]  # the backtest stays on CPU nodes
