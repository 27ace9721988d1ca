"""The docker rollout target against a fake Docker Engine API on a real unix
socket: the hardened container it asks for, the record it keeps, promotion and
stopping, refusals, and the multiplexed log stream. (The target against a real
dockerd: tests/containers/test_pipelines_in_containers.py.)"""

from __future__ import annotations

import json
import socketserver
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from autoroi.config import load_config
from autoroi.deploy.docker import DockerError, DockerTarget, EngineAPI
from autoroi.deploy.targets import make_target


class FakeEngine:
    """Containers by id; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.containers: dict[str, dict[str, Any]] = {}
        self.refuse_start = False


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if raw is not None else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.removeprefix("/v1.41")
            engine.requests.append((method, path, body))
            parts = path.split("?")[0].strip("/").split("/")
            if method == "POST" and parts == ["containers", "create"]:
                cid = "c" * 12 + f"{len(engine.requests):052d}"  # ids that share their first 12 characters
                engine.containers[cid] = {"spec": body, "running": False}
                return self._reply(201, {"Id": cid, "Warnings": []})
            cid = parts[1] if len(parts) > 1 else ""
            if cid not in engine.containers:
                return self._reply(404, {"message": f"No such container: {cid}"})
            c = engine.containers[cid]
            if method == "POST" and parts[2:] == ["start"]:
                if engine.refuse_start:
                    return self._reply(500, {"message": "port is already allocated"})
                c["running"] = True
                return self._reply(204)
            if method == "GET" and parts[2:] == ["json"]:
                return self._reply(200, {"Id": cid, "State": {"Running": c["running"]}})
            if method == "GET" and parts[2:] == ["logs"]:
                frames = b"".join(
                    struct.pack(">BxxxI", stream, len(text)) + text
                    for stream, text in ((1, b"loading model\n"), (2, b"Traceback: boom\n"))
                )
                return self._reply(200, raw=frames)
            if method == "DELETE" and parts[2:] == []:
                del engine.containers[cid]
                return self._reply(204)
            return self._reply(400, {"message": "unexpected"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[FakeEngine, EngineAPI]]:
    fake = FakeEngine()
    path = str(tmp_path / "docker.sock")
    server = socketserver.ThreadingUnixStreamServer(path, _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, EngineAPI(path, timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()


def _target(tmp_path: Path, api: EngineAPI, lake: str = "s3://bucket/lake") -> DockerTarget:
    return DockerTarget(
        tmp_path / "state",
        lake,
        image="ghcr.io/autoroi/serving:abc",
        api=api,
        drain_s=0,
        extra_env={"AUTOROI_LAKE__S3_ENDPOINT_URL": "http://127.0.0.1:9000"},
    )


def test_a_version_starts_as_a_hardened_container_and_is_recorded(
    tmp_path: Path, engine: tuple[FakeEngine, EngineAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, api = engine
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "k" * 48)  # not the server's business: not passed
    target = _target(tmp_path, api)
    target.start("v1", "s3://bucket/lake/models/roi/v1/model")
    [(cid, c)] = fake.containers.items()
    spec = c["spec"]
    assert spec["Image"] == "ghcr.io/autoroi/serving:abc" and spec["User"] == "1000:1000"
    assert spec["Cmd"][:5] == ["python", "-m", "serving.roi_server", "--lake", "s3://bucket/lake"]
    assert spec["Cmd"][5:7] == ["--version", "v1"]
    host = spec["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and "/tmp" in host["Tmpfs"]
    assert host["NetworkMode"] == "host" and host["Binds"] == []
    env = dict(e.split("=", 1) for e in spec["Env"])
    assert env == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AUTOROI_LAKE__S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    record = json.loads((tmp_path / "state" / "candidates" / "v1.json").read_text())
    assert record["container"] == cid and record["url"].startswith("http://127.0.0.1:")
    assert target._alive(record)


def test_promotion_replaces_the_serving_container_and_stop_all_removes_them(
    tmp_path: Path, engine: tuple[FakeEngine, EngineAPI]
) -> None:
    fake, api = engine
    target = _target(tmp_path, api)
    target.start("v1", "a1")
    target.promote("v1")
    assert target.serving() == "v1"
    first = json.loads((tmp_path / "state" / "endpoint.json").read_text())["container"]
    target.start("v2", "a2")
    target.promote("v2")
    assert target.serving() == "v2"
    assert first not in fake.containers and len(fake.containers) == 1  # the old one is gone
    target.start("v3", "a3")
    target.rollback("v3")
    assert target.serving() == "v2" and len(fake.containers) == 1
    assert target.stop_all() == ["v2"]
    assert fake.containers == {}


def test_a_local_lake_is_mounted_read_only_at_its_own_path(
    tmp_path: Path, engine: tuple[FakeEngine, EngineAPI]
) -> None:
    fake, api = engine
    lake = tmp_path / "lake"
    lake.mkdir()
    _target(tmp_path, api, str(lake)).start("v1", "a")
    [c] = fake.containers.values()
    assert c["spec"]["HostConfig"]["Binds"] == [f"{lake}:{lake}:ro"]


def test_a_refused_start_removes_the_container_and_says_why(
    tmp_path: Path, engine: tuple[FakeEngine, EngineAPI]
) -> None:
    fake, api = engine
    fake.refuse_start = True
    with pytest.raises(DockerError, match="port is already allocated"):
        _target(tmp_path, api).start("v1", "a")
    assert fake.containers == {}
    assert not (tmp_path / "state" / "candidates" / "v1.json").exists()


def test_the_log_stream_is_demultiplexed(tmp_path: Path, engine: tuple[FakeEngine, EngineAPI]) -> None:
    fake, api = engine
    target = _target(tmp_path, api)
    target.start("v1", "a")
    [cid] = fake.containers
    assert api.logs(cid) == "loading model\nTraceback: boom\n"


def test_no_engine_is_a_clear_error(tmp_path: Path) -> None:
    api = EngineAPI(str(tmp_path / "absent.sock"), timeout_s=1)
    with pytest.raises(DockerError, match="cannot be reached"):
        _target(tmp_path, api).start("v1", "a")
    assert not api.running("c0")


def test_the_config_selects_the_docker_target(tmp_path: Path) -> None:
    cfg = load_config(
        overrides={
            "serving": {"target": "docker", "image": "reg/serving:sha", "state_dir": str(tmp_path)},
            "lake": {"uri": "s3://b/lake", "s3_endpoint_url": "http://127.0.0.1:9000"},
        }
    )
    target = make_target(cfg, cfg.lake.uri)
    assert isinstance(target, DockerTarget) and target.image == "reg/serving:sha"
    assert target.api.socket_path == "/var/run/docker.sock"
    assert target.container_env["AUTOROI_LAKE__S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
