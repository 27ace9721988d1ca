"""The local rollout target: KServe model server processes on this machine.

Each version runs as its own ``python -m serving.roi_server`` process on a
free port. ``<state_dir>/endpoint.json`` names the one that serves; the local
endpoint (``python -m serving.router``, started by ``autoroi serve`` or the
demo) forwards every request to it, so switching versions is one atomic file
replace. A new version starts beside the old one, which keeps answering until
the new one has passed its smoke test; after promotion the old process is
stopped once in-flight requests have drained.

With ``monitoring.log_predictions`` the endpoint also plays KServe's payload
logger: :func:`start_endpoint` starts the local prediction sink (``python -m
serving.prediction_sink``, its journal in ``<state_dir>/prediction-sink/``,
its pid in ``<state_dir>/prediction-sink.json``) and gives the router its URL;
:func:`stop_endpoint` stops both.
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
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from autoroi.config import MonitoringConfig
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


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` (IPv4 or IPv6) can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


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
SINK_PID_FILE = "prediction-sink.json"
SINK_DIR = "prediction-sink"  # the local sink's write-ahead journal
PORT_WAIT_S = 3.0
SINK_NICE = 10  # the logger yields the CPU to the endpoint and the model servers on this machine


def _start_detached(
    state: Path, name: str, what: str, cmd: list[str], url: str, pid_file: str, timeout_s: float
) -> dict[str, Any]:
    """Start ``cmd`` detached (log: ``<state>/logs/<name>.log``), wait until
    ``<url>/healthz`` answers, record ``{"url", "pid"}`` in ``pid_file``."""
    log_path = state / LOGS / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeployError(f"{what} exited at start:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    else:
        stop_pid(proc.pid)
        raise DeployError(f"{what} did not answer on {url} within {timeout_s:g} s")
    doc = {"url": url, "pid": proc.pid}
    write_json_local(state / pid_file, doc)
    return doc


def _stop_recorded(state: Path, pid_file: str) -> bool:
    doc = _read_json(state / pid_file)
    (state / pid_file).unlink(missing_ok=True)
    if doc and pid_alive(doc.get("pid")):
        stop_pid(doc.get("pid"))
        return True
    return False


def start_sink(
    state_dir: str | Path,
    lake_uri: str,
    host: str,
    port: int,
    *,
    batch_rows: int | None = None,
    flush_s: float | None = None,
    python: str = sys.executable,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Start the local prediction sink detached, unless the one of this state
    dir runs; returns ``{"url", "pid"}``. A dead sink's port is taken again (a
    running endpoint still posts there) and its journal replayed; a port
    another process holds is replaced by a free one."""
    state = Path(state_dir).resolve()
    existing = _read_json(state / SINK_PID_FILE)
    if existing and pid_alive(existing.get("pid")):
        return existing
    previous = urllib.parse.urlparse(str((existing or {}).get("url") or "")).port
    deadline = time.monotonic() + PORT_WAIT_S
    while previous and not port_free(host, previous) and time.monotonic() < deadline:
        time.sleep(0.1)  # a killed sink's socket can outlive it for a moment
    if previous and port_free(host, previous):
        port = previous
    elif not port_free(host, port):
        taken, port = port, free_port(host)
        log.warning("port %d is taken; the local prediction sink uses %d", taken, port)
    cmd = [
        python,
        "-m",
        "serving.prediction_sink",
        "--journal-dir",
        str(state / SINK_DIR),
        "--lake",
        lake_uri,
    ]
    cmd += ["--host", host, "--port", str(port), "--nice", str(SINK_NICE)]
    if batch_rows is not None:
        cmd += ["--batch-rows", str(batch_rows)]
    if flush_s is not None:
        cmd += ["--flush-s", str(flush_s)]
    url = f"http://{host}:{port}"
    return _start_detached(
        state, "prediction-sink", "the local prediction sink", cmd, url, SINK_PID_FILE, timeout_s
    )


def stop_sink(state_dir: str | Path) -> bool:
    """Stop the local prediction sink (SIGTERM: it writes its waiting rows first)."""
    return _stop_recorded(Path(state_dir).resolve(), SINK_PID_FILE)


def prediction_sink_url(
    state_dir: str | Path, lake_uri: str | None, host: str, monitoring: MonitoringConfig | None
) -> str | None:
    """Where the local endpoint posts its CloudEvents: ``monitoring.sink_url``,
    else this state dir's local sink (started unless it runs); ``None`` when
    predictions are not logged (off, or no lake to write)."""
    if monitoring is None or not monitoring.log_predictions:
        return None
    if monitoring.sink_url:
        return monitoring.sink_url
    if lake_uri is None:
        return None
    doc = start_sink(
        state_dir,
        lake_uri,
        host,
        monitoring.sink_port,
        batch_rows=monitoring.batch_rows,
        flush_s=monitoring.flush_s,
    )
    return str(doc["url"])


def start_endpoint(
    state_dir: str | Path,
    host: str,
    port: int,
    *,
    static_dir: str | Path | None = None,
    lake_uri: str | None = None,
    monitoring: MonitoringConfig | None = None,
    python: str = sys.executable,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Start the local endpoint (``python -m serving.router``) detached, unless
    one from this state dir already answers; returns ``{"url", "pid"}``. With
    ``monitoring`` (logging on) the prediction sink first (module docstring)."""
    state = Path(state_dir).resolve()
    sink_url = prediction_sink_url(state, lake_uri, host, monitoring)
    existing = _read_json(state / ROUTER_PID_FILE)
    if existing and pid_alive(existing.get("pid")):
        return existing
    cmd = [python, "-m", "serving.router", "--state-dir", str(state), "--host", host, "--port", str(port)]
    if static_dir is not None:
        cmd += ["--static-dir", str(static_dir)]
    if lake_uri is not None:
        cmd += ["--lake", lake_uri]
    if sink_url is not None:
        cmd += ["--sink-url", sink_url]
    url = f"http://{host}:{port}"
    return _start_detached(state, "router", "the local endpoint", cmd, url, ROUTER_PID_FILE, timeout_s)


def stop_endpoint(state_dir: str | Path) -> bool:
    """Stop the local endpoint (it posts what it still holds to the sink
    first), then the local prediction sink; whether the endpoint ran."""
    stopped = _stop_recorded(Path(state_dir).resolve(), ROUTER_PID_FILE)
    stop_sink(state_dir)
    return stopped
