"""Serving benchmark: the ``roi`` model server against the floors of its stack.

Servers, each a subprocess of its own, all started first and then measured
in turn on each cell (protocol x batch x concurrency), for ``--rounds``
rounds that are pooled, so that a change in a shared machine's load falls on
all of them alike:

* **roi**: ``python -m serving.roi_server`` on a small trained artifact (the
  tests' ``trained_model()``, saved once to ``--work-dir``, or ``--model-dir``),
  scoring through the fast path (``autoroi.model.fastpath``);
* **roi, reference path** ("before"): the same server with ``--fast-path
  off``, i.e. ``RoiModel.predict`` per request, as it answered before the fast
  path (concurrency 1 only: tens of milliseconds per request);
* **kserve-constant**: a ``kserve.ModelServer`` whose model returns a constant
  (one ``0.0`` per scenario, v1 and v2): the floor of the framework;
* **asgi**: a bare ASGI app on uvicorn (the event loop and HTTP parser KServe
  uses) that reads the body and returns constant JSON: the floor of the HTTP
  stack.

Logging: with ``--logging quiet`` (default) every KServe server runs without
per-request lines (uvicorn's access log and KServe's ``kserve.trace`` timing
lines off: the roi server's ``--access-log false`` and its default
``--enable_latency_logging false``); ``--logging default`` turns both on in
both KServe servers (KServe's own defaults). Server logs go to files in
``--work-dir``.

Cores: the servers are pinned to one core (``taskset -c``, the last core this
process may use) and the load generator (this process) to another (the first)
with ``os.sched_setaffinity``; on a one-core machine nothing is pinned. The
machine may be shared: every measurement notes the cores other processes used
meanwhile ("others' cores": the machine's busy CPU time minus the server's and
this process's, per second of wall time, from ``/proc``).

Load: an asyncio client (aiohttp, keep-alive: one connection per concurrent
worker, each sending its next request when the previous answer is read) at
concurrency 1 and 8, batches of 1 and 256 scenarios, v1 (``instances``) and v2
(one tensor per field) bodies; latency is client-side (request written to
answer read), so it includes the client's own overhead, which the asgi row
shows. Then a steady load at concurrency 8 for ``--steady-s`` seconds (60 by
default) against the roi server, mixing v1 and v2 and batches of 1, 16 and 256,
counting every answer that is not a 200 and every connection error.

Usage::

    .venv/bin/python bench/serving.py                 # 3 rounds of 2 s per cell, 60 s steady load (~6 min)
    .venv/bin/python bench/serving.py --quick         # 1 round of 1 s per cell, 10 s steady load (~1 min)
    .venv/bin/python bench/serving.py --json var/bench/serving.json --logging default --model-dir PATH

Targets (printed PASS/FAIL): p50 at batch 1 within 3x of the constant KServe
model (v1 and v2, concurrency 1); a 256-row batch under 10 ms p50 (v1 and v2,
concurrency 1); zero errors in the steady load.

``--prediction-log`` (issue 15) measures only what the prediction log costs:
the roi server behind two local endpoints (``python -m serving.router``), one
without logging and one posting to a prediction sink (``python -m
serving.prediction_sink``), measured in turn at concurrency 1 for batches of 1
and 256 (v1 and v2, p50 and p95, logging on / off); then the no-loss check:
``--log-requests`` requests (each with its own ``Ce-Id``) through the logging
endpoint at concurrency 4, the sink SIGKILLed halfway and started again on its
journal, and the rows in the lake counted against the answered requests.
Targets: logging adds at most 10 % to the p50 at batch 1; every answered
request is in the lake exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cpuload import (  # bench/, the script's own folder
    machine_busy_s,
    machine_info,
    own_cpu_s,
    proc_cpu_s,
    table,
)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL = "roi"
V1_PATH = f"/v1/models/{MODEL}:predict"
V2_PATH = f"/v2/models/{MODEL}/infer"
JSON_HEADERS = {"content-type": "application/json"}
BATCHES = (1, 256)
CONCURRENCY = (1, 8)
REPLICA_CONCURRENCY = 16  # issue 16: the scale-out check
PROTOCOLS = ("v1", "v2")
TARGET_RATIO = 3.0
TARGET_BATCH_MS = 10.0
READY_TIMEOUT_S = 300.0
ASGI_BODY = b'{"predictions":[0.0]}'
PACKAGES = ("kserve", "uvicorn", "fastapi", "tensorflow", "keras", "aiohttp")
FIELDS = ("region", "vehicle_model", "week_start", "incentive_type", "incentive_amount")


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =========================================================================== the servers' own code


def serve_asgi(port: int) -> None:
    """The bare ASGI app: reads the request body, answers constant JSON."""
    import uvicorn

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ASGI_BODY)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ASGI_BODY})

    uvicorn.run(app, host="0.0.0.0", port=port, access_log=False, log_level="warning", lifespan="off")


def serve_constant(port: int, quiet: bool) -> None:
    """A KServe model server whose model ``roi`` answers one 0.0 per scenario."""
    import logging
    import uuid

    from kserve import Model, ModelServer
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class Constant(Model):
        def __init__(self) -> None:
            super().__init__(MODEL)
            self.ready = True

        def predict(
            self,
            payload: Any,
            headers: dict[str, str] | None = None,
            response_headers: dict[str, str] | None = None,
        ) -> Any:
            if isinstance(payload, InferRequest):
                n = int(payload.inputs[0].shape[0]) if payload.inputs else 1
                out = InferOutput(name="roi", shape=[n], datatype="FP64", data=[0.0] * n)
                return InferResponse(
                    response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[out]
                )
            n = len(payload.get("instances", ())) if isinstance(payload, dict) else 1
            return {"predictions": [0.0] * n}

    server = ModelServer(http_port=port, enable_grpc=False, enable_latency_logging=not quiet)
    level = logging.WARNING if quiet else logging.INFO
    logging.getLogger("uvicorn.access").setLevel(level)
    logging.getLogger("kserve.trace").setLevel(level)
    server.start([Constant()])


def train_to(path: Path) -> None:
    """The tests' small trained model, saved as an artifact at ``path``."""
    from autoroi.model.artifact import save_model
    from tests.model_tables import trained_model

    save_model(path, trained_model(), overwrite=True)


# =========================================================================== processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    start_s: float = 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"<no log: {e}>"


def pinning() -> tuple[str | None, int | None]:
    """(the server's core for taskset, the client's core), or Nones on one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None, None
    return str(cores[-1]), cores[0]


def start_server(name: str, cmd: list[str], port: int, work: Path, core: str | None, ready: str) -> Server:
    log_path = work / f"{name}.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    full = (["taskset", "-c", core] if core is not None else []) + cmd
    started = time.perf_counter()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            full, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(server.url + ready, timeout=2) as r:
            if r.status == 200:
                server.start_s = time.perf_counter() - started
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:.0f} s:\n{server.tail()}")


def start_roi(name: str, model_dir: Path, work: Path, core: str | None, quiet: bool, fast: str) -> Server:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "serving.roi_server",
        "--model-dir",
        str(model_dir),
        "--http_port",
        str(port),
        "--enable_grpc",
        "false",
        "--fast-path",
        fast,
        "--access-log",
        "false" if quiet else "true",
        "--enable_latency_logging",
        "false" if quiet else "true",
    ]
    return start_server(name, cmd, port, work, core, "/v2/health/ready")


def start_constant(work: Path, core: str | None, quiet: bool) -> Server:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", "kserve-constant", "--port", str(port)]
    if not quiet:
        cmd.append("--server-logging")
    return start_server("kserve-constant", cmd, port, work, core, "/v2/health/ready")


def start_asgi(work: Path, core: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", "asgi", "--port", str(port)]
    return start_server("asgi", cmd, port, work, core, "/")


def start_router(work: Path, state_dir: Path, sink_url: str | None = None, name: str = "router") -> Server:
    """The local endpoint (``python -m serving.router``) over ``state_dir``'s
    endpoint.json; with ``sink_url`` it logs every answer there."""
    port = free_port()
    cmd = [sys.executable, "-m", "serving.router", "--state-dir", str(state_dir), "--port", str(port)]
    if sink_url:
        cmd += ["--sink-url", sink_url]
    return start_server(name, cmd, port, work, None, "/healthz")


def sink_command(lake: Path, journal: Path, port: int) -> list[str]:
    """The prediction sink as ``autoroi.deploy.local.start_sink`` runs it
    (niced), with the config's defaults (500 rows, 5 s)."""
    from autoroi.deploy.local import SINK_NICE

    return [
        sys.executable,
        "-m",
        "serving.prediction_sink",
        "--lake",
        str(lake),
        "--journal-dir",
        str(journal),
        "--port",
        str(port),
        "--nice",
        str(SINK_NICE),
    ]


def run_replicas(
    n: int,
    model_dir: Path,
    work: Path,
    pool: list[dict[str, Any]],
    seconds: float,
    rounds: int,
    warm_s: float,
    quiet: bool,
) -> list[Measurement]:
    """v1 batch-1 requests at concurrency 16: straight to one server, then
    through the router to 1 and to ``n`` servers of the same artifact (the
    router's endpoint file rewritten between measurements), in rounds."""
    from autoroi.deploy.local import ENDPOINT_FILE
    from autoroi.lake.storage import write_json_local

    state = work / "replicas"
    state.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    parts: dict[str, list[Measurement]] = {}
    try:
        for i in range(n):
            log(f"starting roi-{i + 1}")
            servers.append(start_roi(f"roi-{i + 1}", model_dir, work, None, quiet, "on"))
        router = start_router(work, state)
        servers.append(router)
        bodies = bodies_for(pool, "v1", 1)
        for r in range(rounds):
            for k in (0, 1, n):
                if k == 0:
                    target, label = servers[0], "one server, no router"
                else:
                    urls = [s.url for s in servers[:k]]
                    write_json_local(
                        state / ENDPOINT_FILE, {"version": "bench", "url": urls[0], "urls": urls}
                    )
                    target, label = router, f"router -> {k} server{'s' if k > 1 else ''}"
                m = measure(target, "v1", 1, REPLICA_CONCURRENCY, bodies, seconds, warm_s)
                m.server = label
                parts.setdefault(label, []).append(m)
                log(
                    f"round {r + 1}/{rounds} {label}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms,"
                    f" p99 {m.p99_ms:.2f} ms, errors {m.errors}, others' cores {m.others:.2f}"
                )
    finally:
        for server in servers:
            server.stop()
    return [merge(ms) for ms in parts.values()]


def render_replicas(results: list[Measurement], n: int, info: dict[str, Any]) -> str:
    base = next(m for m in results if m.server == "router -> 1 server")
    rows = [
        [
            m.server,
            f"{m.rps:,.0f}",
            f"{m.p50_ms:.2f}",
            f"{m.p99_ms:.2f}",
            str(m.errors),
            f"{m.rps / base.rps:.2f}",
        ]
        for m in results
    ]
    head = ["v1, batch 1, concurrency 16", "req/s", "p50 ms", "p99 ms", "errors", "vs 1 replica"]
    note = (
        f"{info['cores']} cores shared by every process (the load generator, the router and {n} servers;"
        " nothing pinned): the ratio is what a second replica adds on this machine, not on a node of its own"
    )
    return "\n".join([table(head, rows), note])


# =========================================================================== the prediction log

LOG_TARGET_RATIO = 1.10
LOG_CELLS = [(proto, batch) for batch in BATCHES for proto in PROTOCOLS]


def run_prediction_log(
    model_dir: Path,
    work: Path,
    pool: list[dict[str, Any]],
    seconds: float,
    rounds: int,
    warm_s: float,
    quiet: bool,
    server_core: str | None,
    requests_n: int,
) -> dict[str, Any]:
    """Logging off and on through the local endpoint, then the no-loss check
    (module docstring). The roi server is pinned like the main run's; the
    endpoints and the sink share the machine with it and the load generator."""
    from autoroi.deploy.local import ENDPOINT_FILE
    from autoroi.lake.storage import write_json_local

    base = work / "prediction-log"
    shutil.rmtree(base, ignore_errors=True)
    state = base / "state"
    state.mkdir(parents=True)
    servers: list[Server] = []
    parts: dict[tuple[str, str, int], list[Measurement]] = {}
    cpu: dict[tuple[str, str, int], dict[str, float]] = {}  # CPU seconds of each process, requests, per cell
    try:
        roi = start_roi("roi", model_dir, work, server_core, quiet, "on")
        servers.append(roi)
        write_json_local(state / ENDPOINT_FILE, {"version": "bench", "url": roi.url})
        sink_port = free_port()
        servers.append(
            start_server(
                "sink",
                sink_command(base / "lake", base / "journal", sink_port),
                sink_port,
                work,
                None,
                "/healthz",
            )
        )
        off = start_router(work, state, name="router-off")
        on = start_router(work, state, f"http://127.0.0.1:{sink_port}", name="router-on")
        servers += [off, on]
        for r in range(rounds):
            for proto, batch in LOG_CELLS:
                bodies = bodies_for(pool, proto, batch)
                for label, router in (("off", off), ("on", on)) if r % 2 == 0 else (("on", on), ("off", off)):
                    pids = {
                        "server": roi.process.pid,
                        "router": router.process.pid,
                        "sink": servers[1].process.pid,
                    }
                    before = {k: proc_cpu_s(pid) for k, pid in pids.items()}
                    m = measure(router, proto, batch, 1, bodies, seconds, warm_s)
                    used = cpu.setdefault((label, proto, batch), dict.fromkeys([*pids, "requests"], 0.0))
                    for k, pid in pids.items():
                        used[k] += proc_cpu_s(pid) - before[k]
                    used["requests"] += m.rps * (m.wall_s + warm_s)  # the warm-up's too (same rate)
                    m.server = f"logging {label}"
                    parts.setdefault((label, proto, batch), []).append(m)
                    log(
                        f"round {r + 1}/{rounds} logging {label:3s} {proto} batch {batch:3d}:"
                        f" p50 {m.p50_ms:.3f} ms, p95 {percentile(m.latencies_ms, 0.95):.3f} ms,"
                        f" {m.rps:,.0f} req/s, errors {m.errors}, others' cores {m.others:.2f}"
                    )
        results = {k: merge(v) for k, v in parts.items()}
        for server in (off, on, servers[1]):
            server.stop()  # the endpoints post what they hold, then the sink writes it
        logged = count_logged(base / "lake")
        answered = sum(m.requests for (label, _, _), m in results.items() if label == "on")
        loss = no_loss_check(roi, base / "loss", work, requests_n, pool)
    finally:
        for server in servers:
            server.stop()
    return {
        "results": results,
        "cpu_us": {
            k: {p: 1e6 * c[p] / c["requests"] for p in ("server", "router", "sink")} for k, c in cpu.items()
        },
        "measured_logged": logged,
        "measured_answered_on": answered,
        "loss": loss,
    }


def count_logged(lake: Path) -> dict[str, int]:
    """Rows and distinct requests in a lake's prediction log."""
    from autoroi.lake.storage import open_lake
    from autoroi.monitoring.predictions import read_predictions

    table = read_predictions(open_lake(str(lake)))
    ids = table.column("request_id").to_pylist()
    keys = set(zip(ids, table.column("row").to_pylist(), strict=True))
    return {"rows": table.num_rows, "requests": len(set(ids)), "duplicates": table.num_rows - len(keys)}


def no_loss_check(roi: Server, base: Path, work: Path, n: int, pool: list[dict[str, Any]]) -> dict[str, Any]:
    """``n`` requests (1 to 3 scenarios, v1 and v2, each with its own Ce-Id)
    through a logging endpoint at concurrency 4; the sink is SIGKILLed when
    half have been answered and started again on its journal."""
    import httpx

    from autoroi.deploy.local import ENDPOINT_FILE
    from autoroi.lake.storage import write_json_local

    (base / "state").mkdir(parents=True)
    write_json_local(base / "state" / ENDPOINT_FILE, {"version": "bench", "url": roi.url})
    port = free_port()
    cmd = sink_command(base / "lake", base / "journal", port)
    sink = start_server("sink-loss", cmd, port, work, None, "/healthz")
    router = start_router(work, base / "state", sink.url, name="router-loss")
    answered: dict[str, int] = {}
    statuses: Counter[str] = Counter()
    restart: dict[str, float] = {}
    try:
        counter = iter(range(n))

        async def load() -> None:
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as c:

                async def worker() -> None:
                    nonlocal sink
                    for i in counter:
                        rows = [pool[(i * 7 + k) % len(pool)] for k in range(1 + i % 3)]
                        path, body = (V1_PATH, v1_body(rows)) if i % 2 else (V2_PATH, v2_body(rows))
                        h = {**JSON_HEADERS, "ce-id": f"loss-{i:06d}"}
                        r = await c.post(path, content=body, headers=h)
                        statuses[str(r.status_code)] += 1
                        if r.status_code == 200:
                            answered[f"loss-{i:06d}"] = len(rows)
                        if len(answered) == n // 2 and not restart:
                            restart["at"] = time.perf_counter()
                            sink.process.kill()  # SIGKILL
                            sink.process.wait()
                            sink = await asyncio.to_thread(
                                start_server, "sink-loss-restarted", cmd, port, work, None, "/healthz"
                            )
                            restart["down_s"] = time.perf_counter() - restart["at"]

                await asyncio.gather(*(worker() for _ in range(4)))

        started = time.perf_counter()
        asyncio.run(load())
        load_s = time.perf_counter() - started
        router.stop()  # SIGTERM: it posts what it still holds
        sink.stop()  # SIGTERM: the last batch
    finally:
        router.stop()
        sink.stop()
    got = count_logged(base / "lake")
    expected = sum(answered.values())
    return {
        "sent": n,
        "answered": len(answered),
        "answered_rows": expected,
        "statuses": dict(statuses),
        "logged": got,
        "sink_down_s": round(restart.get("down_s", float("nan")), 2),
        "load_s": round(load_s, 1),
        "ok": got["rows"] == expected and got["requests"] == len(answered) and got["duplicates"] == 0,
    }


def render_prediction_log(out: dict[str, Any], info: dict[str, Any], setup: dict[str, Any]) -> str:
    res = out["results"]
    lines = [
        "Prediction log: the roi server through the local endpoint, logging off and on (issue 15)",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']};"
        f" load average at start {', '.join(f'{x:.2f}' for x in info['load_avg'])}",
        f"roi server pinned to core {setup['server_core']}, load generator to core {setup['client_core']};"
        " the endpoints and the sink unpinned"
        if setup["server_core"] is not None
        else "one core: nothing pinned",
        f"{setup['rounds']} round(s) of {setup['seconds']:g} s per measurement (after {setup['warm_s']:g} s"
        " warm-up), off and on alternating, pooled; concurrency 1",
        "",
    ]
    rows = []
    for proto, batch in LOG_CELLS:
        off, on = res[("off", proto, batch)], res[("on", proto, batch)]
        p95_off, p95_on = percentile(off.latencies_ms, 0.95), percentile(on.latencies_ms, 0.95)
        rows.append(
            [
                proto,
                str(batch),
                f"{off.p50_ms:.3f}",
                f"{on.p50_ms:.3f}",
                f"{on.p50_ms / off.p50_ms:.3f}",
                f"{p95_off:.3f}",
                f"{p95_on:.3f}",
                f"{p95_on / p95_off:.3f}",
                f"{off.requests:,} / {on.requests:,}",
                f"{off.errors + on.errors}",
                f"{(off.others + on.others) / 2:.2f}",
            ]
        )
    head = ["proto", "batch", "p50 off", "p50 on", "ratio", "p95 off", "p95 on", "ratio", "requests off/on"]
    lines.append(table([*head, "errors", "others' cores"], rows))
    lines.append("latency in ms, client-side; ratio: logging on over off")
    lines.append("")
    cpu_rows = []
    for proto, batch in LOG_CELLS:
        off, on = out["cpu_us"][("off", proto, batch)], out["cpu_us"][("on", proto, batch)]
        cpu_rows.append(
            [proto, str(batch)]
            + [f"{c[p]:,.0f}" for c in (off, on) for p in ("server", "router")]
            + [f"{on['sink']:,.0f}", f"{on['router'] + on['sink'] - off['router']:,.0f}"]
        )
    head = [
        "proto",
        "batch",
        "server off",
        "router off",
        "server on",
        "router on",
        "sink on",
        "logging costs",
    ]
    lines.append(table(head, cpu_rows))
    lines.append(
        "CPU microseconds per request (warm-up included); logging costs: the logging endpoint's and the"
        " sink's CPU less the plain endpoint's"
    )
    lines.append(
        f"rows the sink wrote for the logged measurements: {out['measured_logged']['rows']:,}"
        f" of {out['measured_logged']['requests']:,} requests ({out['measured_answered_on']:,} answered with"
        " logging on, warm-up requests not counted there)"
    )
    loss = out["loss"]
    lines += [
        "",
        f"No-loss check: {loss['sent']:,} requests (v1/v2, 1-3 scenarios, concurrency 4), {loss['load_s']} s;"
        f" the sink SIGKILLed after {loss['answered'] // 2:,} answers and back after {loss['sink_down_s']} s:"
        f" {loss['answered']:,} answered ({loss['answered_rows']:,} scenarios, statuses {loss['statuses']}),"
        f" {loss['logged']['rows']:,} rows logged for {loss['logged']['requests']:,} requests,"
        f" {loss['logged']['duplicates']} duplicates",
        "",
        "Targets",
    ]
    for proto in PROTOCOLS:
        off, on = res[("off", proto, 1)], res[("on", proto, 1)]
        r = on.p50_ms / off.p50_ms
        lines.append(
            f"  {'PASS' if r <= LOG_TARGET_RATIO else 'FAIL'}  {proto} batch 1 p50 with logging within"
            f" {LOG_TARGET_RATIO:g}x of without  [{on.p50_ms:.3f} ms vs {off.p50_ms:.3f} ms = {r:.3f}x]"
        )
    lines.append(
        f"  {'PASS' if loss['ok'] else 'FAIL'}  every answered request logged once across a SIGKILLed sink"
        f"  [{loss['logged']['rows']:,} rows of {loss['answered_rows']:,}]"
    )
    return "\n".join(lines)


# =========================================================================== request bodies


def scenario_pool(model_dir: Path, n: int) -> list[dict[str, Any]]:
    """``n`` valid scenarios of the artifact: its cells, weeks in and after
    the data, every incentive type it was trained on (and none)."""
    import pandas as pd

    ctx = pd.read_parquet(model_dir / "context.parquet", columns=["region", "vehicle_model", "week_start"])
    doc = json.loads((model_dir / "preprocessing.json").read_text())
    kinds = [str(t) for t in doc.get("metadata", {}).get("incentive_types_seen") or ["cash_rebate"]]
    cells = ctx.groupby(["region", "vehicle_model"])["week_start"].agg(["min", "max"]).reset_index()
    out = []
    for i in range(n):
        c = cells.iloc[i % len(cells)]
        lo, hi = pd.Timestamp(c["min"]), pd.Timestamp(c["max"])
        week = [hi, hi + pd.Timedelta(weeks=30), lo + (hi - lo) / 2][i % 3]
        week = week - pd.Timedelta(days=week.dayofweek)
        kind = "none" if i % 7 == 6 else kinds[i % len(kinds)]
        amount = 0.0 if kind == "none" else float(250 * (1 + i % 12))
        out.append(
            {
                "region": str(c["region"]),
                "vehicle_model": str(c["vehicle_model"]),
                "week_start": week.date().isoformat(),
                "incentive_type": kind,
                "incentive_amount": amount,
            }
        )
    return out


def v1_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def v2_body(rows: list[dict[str, Any]]) -> bytes:
    inputs = []
    for f in FIELDS:
        datatype = "FP64" if f == "incentive_amount" else "BYTES"
        inputs.append({"name": f, "datatype": datatype, "shape": [len(rows)], "data": [r[f] for r in rows]})
    return json.dumps({"inputs": inputs}).encode()


def bodies_for(
    pool: list[dict[str, Any]], protocol: str, batch: int, variants: int = 16
) -> list[tuple[str, bytes]]:
    """``variants`` different request bodies of ``batch`` scenarios."""
    out = []
    for v in range(variants):
        rows = [pool[(v * 37 + i) % len(pool)] for i in range(batch)]
        out.append((V1_PATH, v1_body(rows)) if protocol == "v1" else (V2_PATH, v2_body(rows)))
    return out


# =========================================================================== load


@dataclass
class Measurement:
    server: str
    protocol: str
    batch: int
    concurrency: int
    requests: int = 0
    wall_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    rps: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    others: float = 0.0  # cores other processes used meanwhile
    server_cores: float = 0.0  # the server's CPU per second of wall time
    error_examples: list[str] = field(default_factory=list)
    rounds: int = 1
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("latencies_ms")
        return out


def merge(parts: list[Measurement]) -> Measurement:
    """Rounds of one measurement as one: latencies pooled, counts summed."""
    first = parts[0]
    m = Measurement(first.server, first.protocol, first.batch, first.concurrency, rounds=len(parts))
    lat = sorted(x for p in parts for x in p.latencies_ms)
    m.latencies_ms = lat
    m.requests = len(lat)
    m.wall_s = sum(p.wall_s for p in parts)
    m.p50_ms = percentile(lat, 0.50)
    m.p99_ms = percentile(lat, 0.99)
    m.rps = m.requests / m.wall_s if m.wall_s > 0 else 0.0
    statuses: Counter[str] = Counter()
    for p in parts:
        statuses.update(p.statuses)
    m.statuses = dict(statuses)
    m.errors = sum(p.errors for p in parts)
    m.error_examples = [e for p in parts for e in p.error_examples][:5]
    m.others = sum(p.others * p.wall_s for p in parts) / m.wall_s if m.wall_s > 0 else 0.0
    m.server_cores = sum(p.server_cores * p.wall_s for p in parts) / m.wall_s if m.wall_s > 0 else 0.0
    return m


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def _drive(
    url: str, bodies: list[tuple[str, bytes]], concurrency: int, seconds: float, warm_s: float
) -> tuple[list[float], Counter[str], list[str], float]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    examples: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(path: str, body: bytes) -> str:
            try:
                async with session.post(url + path, data=body, headers=JSON_HEADERS) as r:
                    await r.read()
                    if r.status != 200 and len(examples) < 5:
                        examples.append(f"{r.status}: {(await r.text())[:200]}")
                    return str(r.status)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                if len(examples) < 5:
                    examples.append(f"{type(e).__name__}: {e}")
                return type(e).__name__

        async def worker(k: int, until: float, record: bool) -> None:
            i = k
            while time.perf_counter() < until:
                path, body = bodies[i % len(bodies)]
                i += concurrency
                t = time.perf_counter()
                status = await one(path, body)
                if record:
                    latencies.append(time.perf_counter() - t)
                    statuses[status] += 1

        if warm_s > 0:
            until = time.perf_counter() + warm_s
            await asyncio.gather(*(worker(k, until, False) for k in range(concurrency)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(k, until, True) for k in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, statuses, examples, wall


def measure(
    server: Server,
    protocol: str,
    batch: int,
    concurrency: int,
    bodies: list[tuple[str, bytes]],
    seconds: float,
    warm_s: float,
) -> Measurement:
    busy0, own0, srv0 = machine_busy_s(), own_cpu_s(), proc_cpu_s(server.process.pid)
    latencies, statuses, examples, wall = asyncio.run(
        _drive(server.url, bodies, concurrency, seconds, warm_s)
    )
    busy, own, srv = (
        machine_busy_s() - busy0,
        own_cpu_s() - own0,
        proc_cpu_s(server.process.pid) - srv0,
    )
    total = wall + warm_s
    lat = sorted(x * 1e3 for x in latencies)
    m = Measurement(server.name, protocol, batch, concurrency)
    m.latencies_ms = lat
    m.requests = len(lat)
    m.wall_s = wall
    m.p50_ms = percentile(lat, 0.50)
    m.p99_ms = percentile(lat, 0.99)
    m.rps = len(lat) / wall if wall > 0 else 0.0
    m.statuses = dict(statuses)
    m.errors = sum(v for k, v in statuses.items() if k != "200")
    m.error_examples = examples
    m.others = max(0.0, busy - own - srv) / total if total > 0 else 0.0
    m.server_cores = srv / total if total > 0 else 0.0
    return m


# =========================================================================== report


def key(m: Measurement) -> tuple[str, int, int]:
    return (m.protocol, m.batch, m.concurrency)


def render(
    results: list[Measurement],
    steady: Measurement | None,
    info: dict[str, Any],
    setup: dict[str, Any],
) -> str:
    const = {key(m): m for m in results if m.server == "kserve-constant"}
    out = [
        "Serving benchmark: roi model server vs a constant KServe model vs a bare ASGI app",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']};"
        f" load average at start {', '.join(f'{x:.2f}' for x in info['load_avg'])}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"servers pinned to core {setup['server_core']}, load generator to core {setup['client_core']}"
        if setup["server_core"] is not None
        else "one core: nothing pinned",
        f"logging: {setup['logging']}; {setup['rounds']} round(s) of {setup['seconds']:g} s per measurement"
        f" (after {setup['warm_s']:g} s warm-up), pooled; model artifact {setup['model_dir']}",
        "",
    ]
    rows = []
    for m in results:
        base = const.get(key(m))
        ratio = f"{m.p50_ms / base.p50_ms:.2f}x" if base and base.p50_ms > 0 else "-"
        rows.append(
            [
                m.server,
                m.protocol,
                str(m.batch),
                str(m.concurrency),
                f"{m.requests:,}",
                f"{m.p50_ms:.3f}",
                f"{m.p99_ms:.3f}",
                f"{m.rps:,.0f}",
                ratio,
                str(m.errors),
                f"{m.server_cores:.2f}",
                f"{m.others:.2f}",
            ]
        )
    out.append(
        table(
            [
                "server",
                "proto",
                "batch",
                "conc",
                "requests",
                "p50 ms",
                "p99 ms",
                "req/s",
                "p50/constant",
                "errors",
                "server cores",
                "others' cores",
            ],
            rows,
        )
    )
    out.append("")
    out.append("latency: client-side, request written to answer read; p50/constant: against kserve-constant")
    out.append("with the same protocol, batch and concurrency; server cores: the server's CPU per second;")
    out.append("others' cores: CPU other processes used meanwhile (the machine's busy time less server")
    out.append("and client, per second).")
    if steady is not None:
        out.append("")
        out.append(
            f"Steady load: roi, concurrency {steady.concurrency}, {steady.wall_s:.0f} s, v1 and v2 mixed,"
            f" batches 1/16/256: {steady.requests:,} requests, {steady.rps:,.0f} req/s,"
            f" p50 {steady.p50_ms:.3f} ms, p99 {steady.p99_ms:.3f} ms, errors {steady.errors}"
            f" (statuses {steady.statuses});"
            f" others' cores {steady.others:.2f}"
        )
        for e in steady.error_examples:
            out.append(f"  error: {e}")
    out.append("")
    out.append("Targets")
    roi = {key(m): m for m in results if m.server == "roi"}
    for proto in PROTOCOLS:
        one, base = roi.get((proto, 1, 1)), const.get((proto, 1, 1))
        if one and base:
            r = one.p50_ms / base.p50_ms
            out.append(
                f"  {'PASS' if r <= TARGET_RATIO else 'FAIL'}  {proto} batch 1 p50 within {TARGET_RATIO:g}x"
                f" of the constant KServe model  [{one.p50_ms:.3f} ms vs {base.p50_ms:.3f} ms = {r:.2f}x]"
            )
    for proto in PROTOCOLS:
        big = roi.get((proto, 256, 1))
        if big:
            out.append(
                f"  {'PASS' if big.p50_ms < TARGET_BATCH_MS else 'FAIL'}  {proto} batch 256 p50 under"
                f" {TARGET_BATCH_MS:g} ms  [{big.p50_ms:.3f} ms]"
            )
    if steady is not None:
        out.append(
            f"  {'PASS' if steady.errors == 0 and steady.requests > 0 else 'FAIL'}  zero errors in"
            f" {steady.wall_s:.0f} s at concurrency {steady.concurrency}"
            f"  [{steady.errors} of {steady.requests:,}]"
        )
    errors = sum(m.errors for m in results)
    if errors:
        out.append(f"  note: {errors} errors in the measurements above")
        for m in results:
            for e in m.error_examples:
                out.append(f"    {m.server} {m.protocol} batch {m.batch}: {e}")
    return "\n".join(out)


# =========================================================================== main


def prepare_model(work: Path, model_dir: Path | None) -> Path:
    if model_dir is not None:
        return model_dir
    path = work / "model"
    if (path / "preprocessing.json").is_file():
        log(f"reusing the artifact {path}")
        return path
    log(f"training the small test model into {path}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, __file__, "--train-to", str(path)], cwd=REPO, env=env, check=True)
    return path


def cells(reference: bool) -> list[tuple[str, str, int, int]]:
    """(server, protocol, batch, concurrency) in measuring order: every server
    on one cell before the next cell, so that a change in the machine's load
    falls on all of them alike."""
    out = []
    for proto in PROTOCOLS:
        for batch in BATCHES:
            for conc in CONCURRENCY:
                for name in SERVERS:
                    if name == "roi-reference" and (not reference or conc != 1):
                        continue
                    out.append((name, proto, batch, conc))
    return out


SERVERS = ("asgi", "kserve-constant", "roi", "roi-reference")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one round of 1 s per measurement, 10 s steady load")
    p.add_argument("--seconds", type=float, help="seconds per measurement and round (default 2; --quick 1)")
    p.add_argument("--rounds", type=int, help="rounds over every measurement, pooled (default 3; --quick 1)")
    p.add_argument("--warm-s", type=float, help="warm-up seconds before each measurement (default 0.5)")
    p.add_argument("--steady-s", type=float, help="steady load seconds (default 60; --quick 10; 0: skip)")
    p.add_argument("--logging", choices=("quiet", "default"), default="quiet", help="per-request log lines")
    p.add_argument("--model-dir", type=Path, help="a model artifact (default: train the tests' small model)")
    p.add_argument("--work-dir", type=Path, default=REPO / "var" / "bench" / "serving")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-path (before) server")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--prediction-log",
        action="store_true",
        help="only what the prediction log costs (logging on/off through the local endpoint), and no loss",
    )
    p.add_argument("--log-requests", type=int, default=2000, help="requests of the no-loss check")
    p.add_argument(
        "--replicas",
        type=int,
        help="only the scale-out check: concurrency 16 through the local router to 1 and to N servers",
    )
    p.add_argument("--serve", choices=("asgi", "kserve-constant"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-logging", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train-to", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve == "asgi":
        serve_asgi(args.port)
        return 0
    if args.serve == "kserve-constant":
        serve_constant(args.port, quiet=not args.server_logging)
        return 0
    if args.train_to:
        train_to(args.train_to)
        return 0

    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 2.0)
    rounds = max(1, args.rounds if args.rounds is not None else (1 if args.quick else 3))
    warm_s = args.warm_s if args.warm_s is not None else (0.3 if args.quick else 0.5)
    steady_s = args.steady_s if args.steady_s is not None else (10.0 if args.quick else 60.0)
    quiet = args.logging == "quiet"
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    info = machine_info(PACKAGES)
    log(f"machine: {info['cores']} cores, load average {info['load_avg']}")
    model_dir = prepare_model(work, args.model_dir)
    if args.replicas:
        if args.replicas < 2:
            p.error("--replicas: at least 2 (the check compares them with one)")
        results = run_replicas(
            args.replicas, model_dir, work, scenario_pool(model_dir, 512), seconds, rounds, warm_s, quiet
        )
        print(render_replicas(results, args.replicas, info))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            doc = {"machine": info, "replicas": [m.summary() for m in results]}
            args.json.write_text(json.dumps(doc, indent=2))
        return 0 if all(m.errors == 0 for m in results) else 1
    server_core, client_core = pinning()
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    pool = scenario_pool(model_dir, 512)
    if args.prediction_log:
        log_setup = {
            "server_core": server_core,
            "client_core": client_core,
            "seconds": seconds,
            "rounds": rounds,
            "warm_s": warm_s,
        }
        plog = run_prediction_log(
            model_dir, work, pool, seconds, rounds, warm_s, quiet, server_core, args.log_requests
        )
        print(render_prediction_log(plog, info, log_setup))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            doc = {
                "machine": info,
                "setup": log_setup,
                "results": [
                    {**m.summary(), "logging": k[0], "p95_ms": percentile(m.latencies_ms, 0.95)}
                    for k, m in plog["results"].items()
                ],
                "loss": plog["loss"],
            }
            args.json.write_text(json.dumps(doc, indent=2, default=str))
        ratios = [
            plog["results"][("on", p, 1)].p50_ms / plog["results"][("off", p, 1)].p50_ms for p in PROTOCOLS
        ]
        return 0 if plog["loss"]["ok"] and max(ratios) <= LOG_TARGET_RATIO else 1
    setup: dict[str, Any] = {
        "server_core": server_core,
        "client_core": client_core,
        "logging": "access log and KServe timing lines off"
        if quiet
        else "KServe defaults (access and timing lines on)",
        "seconds": seconds,
        "rounds": rounds,
        "warm_s": warm_s,
        "model_dir": str(model_dir),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }

    servers: dict[str, Server] = {}
    parts: dict[tuple[str, str, int, int], list[Measurement]] = {}
    steady = None
    try:
        for name in SERVERS:
            if name == "roi-reference" and args.no_reference:
                continue
            log(f"starting {name}")
            if name == "asgi":
                servers[name] = start_asgi(work, server_core)
            elif name == "kserve-constant":
                servers[name] = start_constant(work, server_core, quiet)
            elif name == "roi":
                servers[name] = start_roi(name, model_dir, work, server_core, quiet, "on")
            else:  # the reference path: RoiModel.predict per request
                servers[name] = start_roi(name, model_dir, work, server_core, quiet, "off")
        bodies: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        for r in range(rounds):
            for name, proto, batch, conc in cells(not args.no_reference):
                if (proto, batch) not in bodies:
                    bodies[(proto, batch)] = bodies_for(pool, proto, batch)
                m = measure(servers[name], proto, batch, conc, bodies[(proto, batch)], seconds, warm_s)
                parts.setdefault((name, proto, batch, conc), []).append(m)
                log(
                    f"round {r + 1}/{rounds} {name:16s} {proto} batch {batch:3d} conc {conc}:"
                    f" p50 {m.p50_ms:.3f} ms, p99 {m.p99_ms:.3f} ms, {m.rps:,.0f} req/s,"
                    f" errors {m.errors}, others' cores {m.others:.2f}"
                )
        if steady_s > 0:
            log(f"steady load on roi: {steady_s:g} s at concurrency 8")
            mixed = [
                *bodies_for(pool, "v1", 1, 8),
                *bodies_for(pool, "v2", 1, 8),
                *bodies_for(pool, "v1", 16, 2),
                *bodies_for(pool, "v2", 16, 2),
                *bodies_for(pool, "v1", 256, 1),
                *bodies_for(pool, "v2", 256, 1),
            ]
            steady = measure(servers["roi"], "v1+v2", 0, 8, mixed, steady_s, 0.0)
            steady.server = "roi (steady)"
    finally:
        for server in servers.values():
            server.stop()

    results = [merge(parts[c]) for c in sorted(parts, key=lambda c: (SERVERS.index(c[0]), c[1:]))]
    setup["start_s"] = {k: round(v.start_s, 1) for k, v in servers.items()}
    out = render(results, steady, info, setup)
    print(out)
    print(f"\nserver start-up to ready: {', '.join(f'{k} {v} s' for k, v in setup['start_s'].items())}")
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "machine": info,
                    "setup": setup,
                    "results": [m.summary() for m in results],
                    "steady": steady.summary() if steady else None,
                    "load_avg_end": os.getloadavg(),
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
