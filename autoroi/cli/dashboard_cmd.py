"""``autoroi dashboard``: the inference dashboard on this machine.

It runs the local endpoint (``python -m serving.router``) with the dashboard's
static files (``serving/dashboard/``) on ``serving.host:serving.port``: the
page and the REST endpoint share one origin, and the router forwards ``/v1``
and ``/v2`` to whichever model server ``<serving.state_dir>/endpoint.json``
names (the deploy pipeline writes it).

``--background`` starts it detached through ``autoroi.deploy.local``'s
``start_endpoint``: the same process ``autoroi demo`` starts, with its pid in
``<state_dir>/router.json`` and its log in ``<state_dir>/logs/router.log``, so
``autoroi dashboard --stop``, ``autoroi serve --stop`` and ``autoroi demo
--stop`` all stop it. Foreground mode runs the router in this process until
Ctrl-C. Either way, with ``monitoring.log_predictions`` the router logs every
answered prediction to the local prediction sink (started beside it; see
``autoroi.deploy.local``).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load
from autoroi.errors import AutoroiError


def static_dir() -> Path:
    """The dashboard's files: ``serving/dashboard/`` beside the ``serving`` package."""
    import serving

    return Path(serving.__file__).resolve().parent / "dashboard"


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """Status and JSON body (``None`` when not JSON) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, None


def _serving_note(base_url: str) -> str:
    try:
        status, doc = _get(f"{base_url}/endpoint")
    except (urllib.error.URLError, OSError):
        return ""
    if status == 200 and isinstance(doc, dict) and doc.get("version"):
        return f"serving model version {doc['version']}"
    return "no model version is deployed yet: `autoroi approve VERSION --by NAME` deploys one"


def _lake_arg(cfg: Any) -> str | None:
    lake = str(cfg.lake.uri or "")
    if not lake:
        return None
    if "://" not in lake or lake.startswith("file://"):
        return str(Path(lake.removeprefix("file://")).resolve())
    return lake


def router_args(
    cfg: Any, host: str, port: int, config_path: Path | None, sink_url: str | None = None
) -> list[str]:
    """The arguments of ``python -m serving.router`` for the dashboard."""
    args = ["--state-dir", str(Path(cfg.serving.state_dir).resolve()), "--static-dir", str(static_dir())]
    args += ["--host", host, "--port", str(port)]
    lake = _lake_arg(cfg)
    if lake:
        args += ["--lake", lake]
    if config_path is not None:
        args += ["--config", str(Path(config_path).resolve())]
    if sink_url:
        args += ["--sink-url", sink_url]
    return args


def running_endpoint(cfg: Any) -> dict[str, Any] | None:
    """The detached local endpoint of this state dir (``{"url", "pid"}``), if it runs."""
    from autoroi.deploy.local import ROUTER_PID_FILE, pid_alive

    path = Path(cfg.serving.state_dir).resolve() / ROUTER_PID_FILE
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and pid_alive(doc.get("pid")) else None


def start_background(cfg: Any, port: int | None = None) -> str:
    """The detached local endpoint with the dashboard (the same process
    ``autoroi demo`` starts and ``autoroi serve --stop`` stops: its pid is in
    ``<state_dir>/router.json``); the one already running is reused. Returns
    its URL (no trailing slash)."""
    from autoroi.deploy.local import port_free, start_endpoint

    host, port = cfg.serving.host, port or cfg.serving.port
    running = running_endpoint(cfg)
    if running is None and not port_free(host, port):
        raise AutoroiError(f"port {port} on {host} is in use: pick another with --port")
    doc = start_endpoint(
        cfg.serving.state_dir,
        host,
        port,
        static_dir=static_dir(),
        lake_uri=_lake_arg(cfg),
        monitoring=cfg.monitoring,
    )
    url = str(doc["url"]).rstrip("/")
    if running is not None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            if _get(f"{url}/")[0] == 404:
                raise AutoroiError(
                    f"the local endpoint at {url} (pid {doc.get('pid')}) runs without the dashboard:"
                    " stop it (autoroi dashboard --stop) and start the dashboard again"
                )
    return url


def stop_background(cfg: Any) -> str:
    """Stop the detached local endpoint (and so the dashboard); say what happened."""
    from autoroi.deploy.local import stop_endpoint

    running = running_endpoint(cfg)
    if not stop_endpoint(cfg.serving.state_dir):
        return "no dashboard is running in the background"
    url = running.get("url") if running else None
    return f"stopped the dashboard and local endpoint {url or ''}".rstrip() + (
        "; the model servers keep running (autoroi serve --stop stops them)"
    )


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: serving.port).")
@click.option("--background", is_flag=True, help="Start detached; stop it with `autoroi dashboard --stop`.")
@click.option(
    "--stop",
    is_flag=True,
    help="Stop the background dashboard and local endpoint (model servers keep running).",
)
@config_option
@lake_option
def dashboard(
    port: int | None, background: bool, stop: bool, config_path: Path | None, lake_uri: str | None
) -> None:
    """Serve the inference dashboard and the local REST endpoint."""
    from autoroi.cli.render import console

    if stop and background:
        raise click.UsageError("--stop and --background exclude each other")
    cfg = load(config_path, lake_uri=lake_uri)
    if stop:
        console.print(stop_background(cfg))
        return
    if not (static_dir() / "index.html").is_file():
        raise AutoroiError(f"the dashboard's files are missing: {static_dir()}")
    if background:
        url = start_background(cfg, port)
        note = _serving_note(url)
        console.print(f"dashboard: [bold]{url}/[/bold]" + (f" ({note})" if note else ""))
        console.print(
            f"REST endpoint on the same address: {url}/v1/models/roi:predict, {url}/v2/models/roi/infer"
        )
        console.print("stop it with: autoroi dashboard --stop")
        return
    running = running_endpoint(cfg)
    if running is not None:
        raise AutoroiError(
            f"the local endpoint already runs in the background at {running.get('url')}/"
            f" (pid {running.get('pid')}): open that, or stop it first (autoroi dashboard --stop)"
        )
    from autoroi.deploy.local import port_free, prediction_sink_url, stop_sink

    host, port = cfg.serving.host, port or cfg.serving.port
    if not port_free(host, port):
        raise AutoroiError(f"port {port} on {host} is in use: pick another with --port")
    from serving.router.__main__ import main as router_main

    sink = prediction_sink_url(cfg.serving.state_dir, _lake_arg(cfg), cfg.serving.host, cfg.monitoring)
    console.print(f"dashboard: [bold]{_url(host, port)}[/bold] (Ctrl-C stops it)")
    try:
        router_main(router_args(cfg, host, port, config_path, sink))
    finally:
        if sink and not cfg.monitoring.sink_url:
            stop_sink(cfg.serving.state_dir)
