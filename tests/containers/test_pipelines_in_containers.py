"""The pipelines in their containers: ``ingest`` with ``train`` nested, then
``deploy``, through ``kfp.local.DockerRunner``, every step in the image the
compiled pipeline names, as uid 10001, on the host's loopback (the tests'
PostgreSQL source and moto S3 lake), secrets only as environment variables (as
the kfp-kubernetes wiring hands them to pods). ``ingest`` must match a
``SubprocessRunner`` run of the same source; ``deploy`` uses the docker target
(the model server a container of the serving image, started by the roll-out
step through the Docker Engine API) and must leave a deployment record and a
promoted server that answers."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from autoroi.config import load_config
from autoroi.lake.storage import open_lake
from autoroi.registry import list_versions
from autoroi.source.db import connect_engine, parse_url
from autoroi.source.generate import generate_source
from pipelines.run import run_local
from tests.pipeline.test_deploy_pipeline import SCENARIO, _register
from tests.pipeline.test_train_pipeline import TINY_TRAINING

pytestmark = [pytest.mark.containers, pytest.mark.postgres, pytest.mark.s3]

HMAC_KEY = "k" * 48
UID = "10001:10001"


def _cfg(url: str, lake: dict[str, Any], root: Path, sha: str) -> Any:
    return load_config(
        overrides={
            "source": {"url": url},
            "lake": lake,
            "kfp": {"pipeline_root": str(root), "image_tag": sha},
            "training": TINY_TRAINING,
        }
    )


def test_ingest_with_train_in_containers_matches_the_subprocess_run(
    tmp_path: Path,
    pg_url: str,
    s3_lake: Any,
    images: dict[str, str],
    sha: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kfp import local

    engine = connect_engine(parse_url(pg_url))
    try:
        generate_source(engine, seed=3, sales_rows=30_000)
    finally:
        engine.dispose()
    password = parse_url(pg_url).password
    assert password

    # the reference: the same source through the subprocess runner, into a local lake
    monkeypatch.setenv("AUTOROI_HMAC_KEY", HMAC_KEY)
    ref_cfg = _cfg(pg_url, {"uri": str(tmp_path / "lake")}, tmp_path / "kfp-sub", sha)
    ref = run_local("ingest", ref_cfg, tmp_path / "subprocess.log")
    assert ref["master_changed"] is True

    # the containers: the secrets as environment variables only (the URL has no password)
    env = {
        "AUTOROI_HMAC_KEY": HMAC_KEY,
        "AUTOROI_SOURCE_PASSWORD": password,
        "AWS_ACCESS_KEY_ID": s3_lake.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_lake.secret_key,
        "AWS_DEFAULT_REGION": s3_lake.region,
    }
    url = re.sub(r"://([^:@/]+):[^@]*@", r"://\1@", pg_url)
    root = tmp_path / "kfp-docker"
    root.mkdir()
    root.chmod(0o777)  # the steps (uid 10001) write their outputs under the mounted root
    lake = {"uri": s3_lake.uri, "s3_endpoint_url": s3_lake.endpoint_url, "s3_region": s3_lake.region}
    cfg = _cfg(url, lake, root, sha)
    # On Kubernetes, KFP sets each step's `command`, which replaces the image's
    # ENTRYPOINT (autoroi); docker-py's `command` only replaces CMD, so the
    # runner gets an entrypoint that runs the step's command as given.
    runner = local.DockerRunner(network_mode="host", user=UID, environment=env, entrypoint=["/usr/bin/env"])
    log = tmp_path / "docker.log"
    old = os.umask(0)  # folders kfp.local makes on the host for a step stay writable for uid 10001
    try:
        out = run_local("ingest", cfg, log, runner=runner)
    finally:
        os.umask(old)
    text = log.read_text()

    assert out["master_changed"] is True
    assert out["master_version"] == ref["master_version"]
    versions = list_versions(open_lake(cfg.lake.uri, cfg.lake))
    assert [v.master_version for v in versions] == [ref["master_version"]]
    assert versions[0].status in {"pending_approval", "rejected_by_gate"}
    # every step ran in the image the compiled pipeline names, and nothing was pulled
    found = set(re.findall(r"Found image '([^']+)'", text))
    assert found == {images["components"], images["spark"], images["trainer"]}, found
    assert "Pulling image" not in text
    run_dir = next(root.glob("autoroi-ingest-*"))
    steps = {p.name for p in run_dir.rglob("executor_output.json")}
    assert steps, "no step wrote its outputs"
    owners = {p.stat().st_uid for p in run_dir.rglob("executor_output.json")}
    assert owners == {10001}, owners

    # ------------------------------------------------------------------ deploy
    # an approved version with recorded smoke samples (the tiny search above may be gated out)
    version = _register(cfg.lake.uri, tmp_path, "deployed", lake=open_lake(cfg.lake.uri, cfg.lake))
    state = tmp_path / "serving"
    state.mkdir()
    state.chmod(0o777)
    sock = "/var/run/docker.sock"
    from docker.types import Mount

    deploy_runner = local.DockerRunner(
        network_mode="host",
        user=UID,
        environment=env,
        entrypoint=["/usr/bin/env"],
        # what the roll-out steps need beside the pipeline root: the Engine API
        # (as a cluster's deploy steps need the Kubernetes API) and the state the
        # local endpoint follows
        group_add=[str(os.stat(sock).st_gid)],
        mounts=[Mount(sock, sock, type="bind"), Mount(str(state), str(state), type="bind")],
    )
    serving = {
        "target": "docker",
        "image": images["serving"],
        "state_dir": str(state),
        "ready_timeout_s": 180,
    }
    dcfg = load_config(
        overrides={"lake": lake, "kfp": {"pipeline_root": str(root), "image_tag": sha}, "serving": serving}
    )
    from autoroi.deploy.targets import make_target

    target = make_target(dcfg, dcfg.lake.uri)
    try:
        old = os.umask(0)
        try:
            run_local(
                "deploy", dcfg, tmp_path / "deploy.log", params={"version": version}, runner=deploy_runner
            )
        finally:
            os.umask(old)
        text = (tmp_path / "deploy.log").read_text()
        assert set(re.findall(r"Found image '([^']+)'", text)) == {images["components"]}
        endpoint = json.loads((state / "endpoint.json").read_text())
        assert endpoint["version"] == version and endpoint["image"] == images["serving"]
        records = [k for k in s3_lake.list_keys("lake/deployments/roi/") if k.endswith(".json")]
        assert len(records) == 1
        body = s3_lake.client.get_object(Bucket=s3_lake.bucket, Key=records[0])["Body"].read()
        assert json.loads(body)["outcome"] == "promoted"
        import httpx

        r = httpx.post(f"{endpoint['url']}/v1/models/roi:predict", json={"instances": [SCENARIO]}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["predicted_units"] > 0
        inspect = target.api.call("GET", f"/containers/{endpoint['container']}/json")  # type: ignore[attr-defined]
        host = inspect["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"] and inspect["Config"]["User"] == "1000:1000"
    finally:
        stopped = target.stop_all()  # type: ignore[attr-defined]
    assert stopped == [version]
