"""The local rollout target: KServe model server processes on this machine.

Each version runs as its own ``python -m serving.roi_server`` process on a
free port. ``<state_dir>/endpoint.json`` names the one that serves; the local
endpoint (``python -m serving.router``, started by ``autoroi serve`` or the
demo) forwards every request to it, so switching versions is one atomic file
replace. A new version starts beside the old one, which keeps answering until
the new one has passed its smoke test; after promotion the old process is
stopped once in-flight requests have drained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from autoroi.deploy.rollout import DeployError
from autoroi.lake.leftovers import sweep_local, writer_id, writer_state
from autoroi.lake.storage import write_json_local

log = logging.getLogger(__name__)

ENDPOINT_FILE = "endpoint.json"
CANDIDATES = "candidates"
LOGS = "logs"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def read_endpoint(state_dir: str | Path) -> dict[str, Any] | None:
    """What serves now: ``{"version", "url", "pid", ...}`` or ``None``."""
    return _read_json(Path(state_dir) / ENDPOINT_FILE)


def stop_pid(pid: int | None, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    if not pid_alive(pid):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class LocalTarget:
    """Model server processes on this machine (see the module docstring)."""

    def __init__(
        self,
        state_dir: str | Path,
        lake_uri: str,
        *,
        host: str = "127.0.0.1",
        python: str = sys.executable,
        server_args: tuple[str, ...] = (),
        drain_s: float = 2.0,
        env: dict[str, str] | None = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.lake_uri = lake_uri
        self.host = host
        self.python = python
        self.server_args = tuple(server_args)
        self.drain_s = drain_s
        self.env = env

    # -- state ---------------------------------------------------------------
    def _candidate_path(self, version: str) -> Path:
        return self.state_dir / CANDIDATES / f"{version}.json"

    def _candidate(self, version: str) -> dict[str, Any]:
        doc = _read_json(self._candidate_path(version))
        if doc is None:
            raise DeployError(f"no local model server was started for {version}")
        return doc

    def serving(self) -> str | None:
        doc = read_endpoint(self.state_dir)
        if doc is None:
            return None
        if not self._alive(doc):
            log.warning(
                "the local model server of %s (%s) is not running", doc.get("version"), self._name(doc)
            )
            return None
        return str(doc["version"])

    def clean_leftovers(self) -> list[str]:
        """What deploy runs that died left here: temporary state files, and
        candidate servers whose deploy process is gone (nobody will promote or
        roll them back), which are stopped. Returns the versions stopped."""
        sweep_local([self.state_dir, self.state_dir / CANDIDATES])
        stopped = []
        for path in sorted((self.state_dir / CANDIDATES).glob("*.json")):
            cand = _read_json(path) or {}
            if writer_state(cand.get("deployer")) != "dead":
                continue
            self._stop(cand)
            path.unlink(missing_ok=True)
            stopped.append(str(cand.get("version")))
            log.info("stopped the candidate server of %s, left by a deploy that died", cand.get("version"))
        return stopped

    # -- RolloutTarget -------------------------------------------------------
    def start(self, version: str, artifact_uri: str) -> None:
        self.clean_leftovers()
        port = free_port(self.host)
        logs = self.state_dir / LOGS
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{version}-{port}.log"
        args = [
            "--lake",
            self.lake_uri,
            "--version",
            version,
            "--http_port",
            str(port),
            "--grpc_port",
            str(free_port(self.host)),
            *self.server_args,
        ]
        handle = self._launch(version, args, log_path)
        url = f"http://{self.host}:{port}"
        doc = {
            "version": version,
            "url": url,
            **handle,
            "port": port,
            "log": str(log_path),
            "artifact": artifact_uri,
            "deployer": writer_id(),
        }
        write_json_local(self._candidate_path(version), doc)
        log.info("started the model server of %s: %s (%s, log %s)", version, url, self._name(doc), log_path)

    # -- how a server runs: a process here (a container in DockerTarget) ------
    def _launch(self, version: str, args: list[str], log_path: Path) -> dict[str, Any]:
        """Start ``python -m serving.roi_server ARGS``; the handle the record keeps."""
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [self.python, "-m", "serving.roi_server", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the deploy step that started it
                env=self.env,
            )
        return {"pid": proc.pid}

    def _alive(self, doc: dict[str, Any]) -> bool:
        return pid_alive(doc.get("pid"))

    def _stop(self, doc: dict[str, Any]) -> None:
        stop_pid(doc.get("pid"))

    def _ident(self, doc: dict[str, Any]) -> Any:
        return doc.get("pid")

    def _name(self, doc: dict[str, Any]) -> str:
        return f"pid {doc.get('pid')}"

    def _log_tail(self, doc: dict[str, Any]) -> str:
        return _tail(Path(doc["log"]))

    def wait_ready(self, version: str, timeout_s: float) -> None:
        cand = self._candidate(version)
        deadline = time.monotonic() + timeout_s
        url = f"{cand['url']}/v2/models/roi/ready"
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self._alive(cand):
                tail = self._log_tail(cand)
                raise DeployError(f"the model server of {version} exited before it was ready:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.25)
        raise DeployError(f"the model server of {version} was not ready within {timeout_s:g} s ({last})")

    def candidate_url(self, version: str) -> str:
        return str(self._candidate(version)["url"])

    def promote(self, version: str) -> None:
        cand = self._candidate(version)
        old = read_endpoint(self.state_dir)
        write_json_local(
            self.state_dir / ENDPOINT_FILE,
            {
                **cand,
                "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "previous": old.get("version") if old else None,
            },
        )
        self._candidate_path(version).unlink(missing_ok=True)
        if old and self._ident(old) != self._ident(cand):
            time.sleep(self.drain_s)  # requests the endpoint already forwarded to the old server finish
            self._stop(old)
            log.info("stopped the previous model server (%s, %s)", old.get("version"), self._name(old))

    def rollback(self, version: str) -> None:
        doc = _read_json(self._candidate_path(version))
        if doc is None:
            return
        self._stop(doc)
        self._candidate_path(version).unlink(missing_ok=True)
        log.info("rolled back %s: its server is stopped; the endpoint is unchanged", version)

    # -- housekeeping ----------------------------------------------------------
    def stop_all(self) -> list[str]:
        """Stop the serving process and any candidates (``autoroi serve --stop``)."""
        stopped = []
        doc = read_endpoint(self.state_dir)
        if doc and self._alive(doc):
            self._stop(doc)
            stopped.append(str(doc["version"]))
        for path in sorted((self.state_dir / CANDIDATES).glob("*.json")):
            cand = _read_json(path) or {}
            self._stop(cand)
            path.unlink(missing_ok=True)
            stopped.append(str(cand.get("version")))
        return stopped


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


ROUTER_PID_FILE = "router.json"


def start_endpoint(
    state_dir: str | Path,
    host: str,
    port: int,
    *,
    static_dir: str | Path | None = None,
    lake_uri: str | None = None,
    python: str = sys.executable,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Start the local endpoint (``python -m serving.router``) detached, unless
    one from this state dir already answers; returns ``{"url", "pid"}``."""
    state = Path(state_dir).resolve()
    existing = _read_json(state / ROUTER_PID_FILE)
    if existing and pid_alive(existing.get("pid")):
        return existing
    cmd = [python, "-m", "serving.router", "--state-dir", str(state), "--host", host, "--port", str(port)]
    if static_dir is not None:
        cmd += ["--static-dir", str(static_dir)]
    if lake_uri is not None:
        cmd += ["--lake", lake_uri]
    (state / LOGS).mkdir(parents=True, exist_ok=True)
    with open(state / LOGS / "router.log", "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeployError(f"the local endpoint exited at start:\n{_tail(state / LOGS / 'router.log')}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    else:
        stop_pid(proc.pid)
        raise DeployError(f"the local endpoint did not answer on {url} within {timeout_s:g} s")
    doc = {"url": url, "pid": proc.pid}
    write_json_local(state / ROUTER_PID_FILE, doc)
    return doc


def stop_endpoint(state_dir: str | Path) -> bool:
    state = Path(state_dir).resolve()
    doc = _read_json(state / ROUTER_PID_FILE)
    (state / ROUTER_PID_FILE).unlink(missing_ok=True)
    if doc and pid_alive(doc.get("pid")):
        stop_pid(doc.get("pid"))
        return True
    return False
