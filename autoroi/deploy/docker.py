"""The docker rollout target: model servers as containers of the serving image.

The local target's bookkeeping (``endpoint.json`` that the local endpoint
follows, a candidate beside the serving version, promotion by one file
replace), with each version's server a container of ``serving.image`` started
through the Docker Engine API, hardened as the InferenceService's predictor
runs: read-only root, a tmpfs ``/tmp``, uid 1000, every capability dropped, no
new privileges, on the host's network (it listens on a free loopback port).
What the ``deploy`` steps do on a machine where they themselves run in
containers (``kfp.local.DockerRunner``; ``make test-containers``): a server
process would die with the step's container, a server container does not.
The Engine API is spoken over its unix socket with the standard library, so
the components image needs no Docker client.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import struct
import urllib.parse
from pathlib import Path
from typing import Any

from autoroi.deploy.local import LocalTarget
from autoroi.deploy.rollout import DeployError
from autoroi.lake.leftovers import writer_id

log = logging.getLogger(__name__)

# what the server needs from the step's environment: the lake's S3 credentials
# and endpoint (handed to the steps as Secrets), nothing else
PASSED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
)
LABEL = "io.autoroi.model-server"


class DockerError(DeployError):
    """The Docker Engine refused a request or cannot be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class EngineAPI:
    """The few Docker Engine API calls the target makes (API 1.41, Docker 20.10+)."""

    def __init__(self, socket_path: str = "/var/run/docker.sock", timeout_s: float = 60.0):
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout_s)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, f"/v1.41{path}", body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise DockerError(f"the Docker Engine at {self.socket_path} cannot be reached: {e}") from e
        finally:
            conn.close()
        if resp.status not in ok:
            try:
                message = json.loads(data).get("message", data.decode(errors="replace"))
            except ValueError:
                message = data.decode(errors="replace")
            raise DockerError(f"docker {method} {path}: HTTP {resp.status}: {message}")
        if resp.getheader("Content-Type", "").startswith("application/json") and data:
            return json.loads(data)
        return data

    def running(self, container: str) -> bool:
        try:
            doc = self.call("GET", f"/containers/{container}/json")
        except DockerError:
            return False
        return bool(doc.get("State", {}).get("Running"))

    def logs(self, container: str, tail: int = 20) -> str:
        try:
            raw = self.call("GET", f"/containers/{container}/logs?stdout=1&stderr=1&tail={tail}")
        except DockerError as e:
            return str(e)
        out, i = [], 0
        while i + 8 <= len(raw):  # the multiplexed stream: 8-byte frame headers
            (size,) = struct.unpack(">I", raw[i + 4 : i + 8])
            out.append(raw[i + 8 : i + 8 + size].decode(errors="replace"))
            i += 8 + size
        return "".join(out)

    def remove(self, container: str) -> None:
        self.call("DELETE", f"/containers/{container}?force=true", ok=(200, 204, 404))


class DockerTarget(LocalTarget):
    """Model server containers behind the local endpoint (module docstring)."""

    def __init__(
        self,
        state_dir: str | Path,
        lake_uri: str,
        *,
        image: str,
        api: EngineAPI | None = None,
        host: str = "127.0.0.1",
        server_args: tuple[str, ...] = (),
        drain_s: float = 2.0,
        extra_env: dict[str, str] | None = None,
    ):
        super().__init__(state_dir, lake_uri, host=host, server_args=server_args, drain_s=drain_s)
        self.image = image
        self.api = api or EngineAPI()
        # the step's S3 credentials (PASSED_ENV), plus the lake settings the caller gives
        passed = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        self.container_env = passed | (extra_env or {})

    def _launch(self, version: str, args: list[str], log_path: Path) -> dict[str, Any]:
        binds = []
        if "://" not in self.lake_uri:  # a local lake: the same path, read-only
            lake = str(Path(self.lake_uri).resolve())
            binds.append(f"{lake}:{lake}:ro")
        spec = {
            "Image": self.image,
            "Cmd": ["python", "-m", "serving.roi_server", *args],
            "User": "1000:1000",
            "Env": [f"{k}={v}" for k, v in sorted(self.container_env.items())],
            "Labels": {LABEL: version, "io.autoroi.deployer": writer_id()},
            "HostConfig": {
                "NetworkMode": "host",
                "ReadonlyRootfs": True,
                "Tmpfs": {"/tmp": "rw,size=256m"},
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "Binds": binds,
            },
        }
        name = f"autoroi-roi-{version}-{os.getpid()}".lower()
        created = self.api.call("POST", f"/containers/create?name={urllib.parse.quote(name)}", spec)
        container = str(created["Id"])
        try:
            self.api.call("POST", f"/containers/{container}/start")
        except DockerError:
            self.api.remove(container)
            raise
        log_path.write_text(f"docker logs {container[:12]}\n")
        return {"container": container, "image": self.image}

    def _alive(self, doc: dict[str, Any]) -> bool:
        return bool(doc.get("container")) and self.api.running(str(doc["container"]))

    def _stop(self, doc: dict[str, Any]) -> None:
        if doc.get("container"):
            self.api.remove(str(doc["container"]))

    def _ident(self, doc: dict[str, Any]) -> Any:
        return doc.get("container")

    def _name(self, doc: dict[str, Any]) -> str:
        return f"container {str(doc.get('container'))[:12]}"

    def _log_tail(self, doc: dict[str, Any]) -> str:
        return self.api.logs(str(doc.get("container")))
