"""The prediction sink over real HTTP (``python -m serving.prediction_sink``
processes) and the local endpoint that feeds it: batches by rows and by time,
unknown fields refused by name and never kept, no answered request lost or
written twice across a SIGKILL, a SIGTERM that writes the last batch, and the
router posting v1 and v2 answers of the real model server (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoroi.lake.storage import open_lake
from autoroi.monitoring.predictions import (
    BATCH_CONTENT_TYPE,
    Event,
    batch_body,
    read_predictions,
)
from serving.prediction_sink.store import PredictionStore
from tests.conftest import free_port
from tests.prediction_events import headers, pair, scenarios, v1_request
from tests.serving.conftest import RunningServer
from tests.serving.test_serving_http import SCENARIOS, V1, V2, v2_body

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what} (last: {value!r})")
        time.sleep(every_s)


@dataclass
class Sink:
    """One sink's lake, journal and port, and the process serving them now."""

    lake: Path
    journal: Path
    log: Path
    batch_rows: int
    flush_s: float
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sink:
        cmd = [sys.executable, "-m", "serving.prediction_sink", "--journal-dir", str(self.journal)]
        cmd += ["--lake", str(self.lake), "--port", str(self.port), "--log-level", "INFO"]
        cmd += ["--batch-rows", str(self.batch_rows), "--flush-s", str(self.flush_s)]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._ready, f"the sink answers on {self.url}\n{self.tail()}", START_TIMEOUT_S, 0.1)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the sink exited with {self.process.returncode}:\n{self.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        return False

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/healthz", timeout=5).json())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM and wait: uvicorn shuts down gracefully (the sink writes
        its waiting rows), then ends by the signal it caught."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in self.tail(), self.tail()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def rows(self) -> list[dict[str, Any]]:
        return list(read_predictions(open_lake(str(self.lake))).to_pylist())

    def files(self) -> list[Path]:
        return sorted((self.lake / "predictions" / "roi").glob("date=*/part-*.parquet"))

    def post(self, event: Event) -> httpx.Response:
        """One event in binary mode, as KServe's agent posts it."""
        h = {**headers(event.id, "request" if event.is_request else "response"), "ce-time": ""}
        h = {k: v for k, v in h.items() if v}
        if event.time is not None:
            h["ce-time"] = event.time.isoformat().replace("+00:00", "Z")
        return httpx.post(f"{self.url}/", content=event.data, headers=h, timeout=10)

    def post_batch(self, events: list[Event]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/",
            content=batch_body(events),
            headers={"content-type": BATCH_CONTENT_TYPE},
            timeout=10,
        )


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    made: list[Sink] = []

    def make(batch_rows: int = 500, flush_s: float = 60.0) -> Sink:
        n = len(made)
        sink = Sink(
            tmp_path / f"lake{n}", tmp_path / f"journal{n}", tmp_path / f"sink{n}.log", batch_rows, flush_s
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        if sink.process is not None and sink.process.poll() is None:
            sink.process.kill()
            sink.process.wait(timeout=10)


def _ok(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- batches


def test_rows_go_out_in_batches_of_batch_rows_and_a_sigterm_writes_the_rest(make_sink) -> None:
    sink = make_sink(batch_rows=4, flush_s=60).start()
    for i in range(5):  # 5 requests of 2 scenarios: 10 rows
        req, resp = pair(f"r{i}", scenarios(2, start=2 * i))
        _ok(sink.post(req))
        _ok(sink.post(resp))
    wait_for(lambda: sink.stats()["files_written"] == 2, "two full files")
    assert [len(read_predictions(open_lake(str(sink.lake))).to_pylist())] == [8]
    assert sink.stats()["buffered_rows"] == 2  # the fifth request waits for its batch
    sink.terminate()
    rows = sink.rows()
    assert len(sink.files()) == 3 and len(rows) == 10
    assert sorted((r["request_id"], r["row"]) for r in rows) == [
        (f"r{i}", k) for i in range(5) for k in (0, 1)
    ]
    assert (sink.journal / "journal.jsonl").read_bytes() == b""  # nothing waits


def test_a_batch_is_written_flush_s_after_its_first_row(make_sink) -> None:
    sink = make_sink(batch_rows=1000, flush_s=1.5).start()
    req0, resp0 = pair("t0", scenarios(1))
    req1, resp1 = pair("t1", scenarios(2, start=5))
    _ok(sink.post(resp0))  # the answer may come first (the agent's workers race)
    paired_at = time.monotonic()
    _ok(sink.post(req0))
    _ok(sink.post_batch([req1, resp1]))
    if time.monotonic() - paired_at < 1.0:  # (a stalled machine could not tell)
        assert sink.stats()["files_written"] == 0
    wait_for(lambda: sink.stats()["rows_written"] == 3, "the three rows written", timeout_s=20)
    assert time.monotonic() - paired_at >= 1.5
    assert len(sink.files()) == 1
    assert sorted(r["request_id"] for r in sink.rows()) == ["t0", "t1", "t1"]


# --------------------------------------------------------------------------- refusals


def test_unknown_fields_are_refused_by_name_and_never_kept(make_sink) -> None:
    sink = make_sink(batch_rows=1000, flush_s=0.2).start()
    leaky = [{**scenarios(1)[0], "customer_email": "jane@example.com"}]
    req = pair("bad", scenarios(1))[0]
    r = sink.post(replace(req, data=v1_request(leaky)))
    assert r.status_code == 400
    assert r.json()["field"] == "data.instances[0].customer_email"
    # an event without its id: the header is named
    h = {k: v for k, v in headers("x", "request").items() if k != "ce-id"}
    r = httpx.post(f"{sink.url}/", content=v1_request(scenarios(1)), headers=h, timeout=10)
    assert (r.status_code, r.json()["field"]) == (400, "ce-id")
    # in a batch, the good events are kept and the bad one named by its index
    good_req, good_resp = pair("good", scenarios(2))
    bad = replace(good_req, id="bad2", data=v1_request(leaky))
    r = sink.post_batch([good_req, bad, good_resp])
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == 2 and [x["index"] for x in body["refused"]] == [1]
    assert body["refused"][0]["field"] == "data.instances[0].customer_email"
    # a data-less request (a GET through the agent: metadata, health) and its answer are not predictions
    _ok(sink.post(replace(good_req, id="meta", data=b"")))
    _ok(sink.post(replace(good_resp, id="meta", data=b'{"name": "roi", "versions": []}')))
    wait_for(lambda: sink.stats()["rows_written"] == 2, "the good request's rows")
    metrics = httpx.get(f"{sink.url}/metrics", timeout=5).text
    assert 'autoroi_prediction_sink_events_total{outcome="refused",type="request"} 2.0' in metrics
    assert 'autoroi_prediction_sink_events_total{outcome="ignored",type="response"} 1.0' in metrics
    sink.terminate()
    assert {r["request_id"] for r in sink.rows()} == {"good"}
    kept = b"".join(p.read_bytes() for p in [*sink.files(), *sink.journal.iterdir()])
    assert b"jane@example.com" not in kept and b"customer_email" not in kept


# --------------------------------------------------------------------------- restarts


def test_a_killed_sink_loses_no_answered_request_and_writes_none_twice(make_sink) -> None:
    sink = make_sink(batch_rows=7, flush_s=60).start()
    sent: dict[str, int] = {}  # answered request -> scenarios
    held: list[Event] = []  # answers that come after the restart

    def send(i: int, after_kill: bool = False) -> None:
        n = 1 + i % 3
        req, resp = pair(f"k{i}", scenarios(n, start=i), "v1" if i % 2 else "v2")
        if i % 5 == 0 and not after_kill:
            _ok(sink.post(req))
            held.append(resp)  # its answer comes after the restart
        elif i % 4 == 0:
            _ok(sink.post_batch([resp, req]))
        else:
            _ok(sink.post(req))
            _ok(sink.post(resp))
        sent[req.id] = n

    for i in range(24):
        send(i)
    wait_for(lambda: sink.stats()["files_written"] >= 2, "some full files before the kill")
    sink.kill()  # SIGKILL: rows waiting in memory, events waiting for their pair
    sink.start()  # the same journal: replayed
    for resp in held:
        _ok(sink.post(resp))
    for i in range(24, 34):
        send(i, after_kill=True)
    sink.terminate()
    rows = sink.rows()
    keys = [(r["request_id"], r["row"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert sorted(keys) == sorted((rid, k) for rid, n in sent.items() for k in range(n))
    assert "replayed" in sink.tail()


def test_a_crash_between_a_file_and_the_journal_rewrite_writes_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit record names the file: a replay that finds it skips its
    events; one that does not (the crash came before the file) writes them."""
    lake = open_lake(str(tmp_path / "lake"))
    journal = tmp_path / "journal"

    async def crash_after(stage: str) -> None:
        store = PredictionStore(lake, journal, batch_rows=2, flush_s=60)
        await store.start()
        for i in range(2):
            assert await store.accept(list(pair(f"{stage}{i}", scenarios(1, start=i)))) == [None, None]

        async def skipped() -> None:
            return None

        monkeypatch.setattr(store, "_compact", skipped)
        if stage == "before-file":

            def refuse(*args: Any) -> None:
                raise OSError("the lake is gone")

            monkeypatch.setattr(store, "_write_file", refuse)
        await store.flush()
        await store.stop_writer()  # the process dies here: no close, no rewrite
        store._file.close()

    async def restart() -> dict[str, int]:
        store = PredictionStore(lake, journal, batch_rows=2, flush_s=60)
        await store.start()
        stats = store.stats()
        await store.close()
        return stats

    asyncio.run(crash_after("after-file"))
    assert asyncio.run(restart())["buffered_rows"] == 0  # the file exists: its events are done
    asyncio.run(crash_after("before-file"))
    assert asyncio.run(restart())["buffered_rows"] == 2  # no file: written again at this start
    ids = sorted(read_predictions(lake).column("request_id").to_pylist())
    assert ids == ["after-file0", "after-file1", "before-file0", "before-file1"]


def test_an_event_delivered_again_is_kept_once(tmp_path: Path) -> None:
    """At-least-once delivery: a sender that did not see the 200 (the sink
    died after the journal, before the answer) sends again; the rows are
    written once, before and after the restart, before and after the file."""
    lake = open_lake(str(tmp_path / "lake"))
    journal = tmp_path / "journal"
    req, resp = pair("again", scenarios(2))

    async def first() -> None:
        store = PredictionStore(lake, journal, batch_rows=100, flush_s=60)
        await store.start()
        assert await store.accept([req, resp]) == [None, None]
        assert await store.accept([resp, req]) == [None, None]
        assert store.stats()["buffered_rows"] == 2
        await store.stop_writer()  # killed: no close
        store._file.close()

    async def second() -> None:
        store = PredictionStore(lake, journal, batch_rows=100, flush_s=60)
        await store.start()
        assert await store.accept([req, resp]) == [None, None]  # replayed: known
        assert await store.flush(everything=True)
        assert await store.accept([resp]) == [None]  # written: still known
        assert store.stats() == {"unpaired": 0, "buffered_rows": 0, "rows_written": 2, "files_written": 1}
        duplicates = store.metrics.registry.get_sample_value(
            "autoroi_prediction_sink_events_total", {"type": "response", "outcome": "duplicate"}
        )
        assert duplicates is not None and duplicates >= 1
        await store.close()

    asyncio.run(first())
    asyncio.run(second())
    assert read_predictions(lake).column("request_id").to_pylist() == ["again", "again"]


def test_an_answer_that_contradicts_its_request_is_refused_before_it_is_kept(tmp_path: Path) -> None:
    """Within one batch too (the local endpoint posts both events together):
    an answer with fewer scenarios than its request is refused (422, named);
    the request waits for a right answer."""
    lake = open_lake(str(tmp_path / "lake"))
    req, _ = pair("c", scenarios(3))
    _, short = pair("c", scenarios(2))
    _, right = pair("c", scenarios(3))

    async def go() -> dict[str, int]:
        store = PredictionStore(lake, tmp_path / "journal", batch_rows=100, flush_s=60)
        await store.start()
        first, refused = await store.accept([req, short])
        assert first is None and refused is not None
        assert (refused.status, refused.field) == (422, "data.predictions")
        assert store.stats()["unpaired"] == 1
        assert await store.accept([right]) == [None]
        stats = store.stats()
        await store.close()
        return stats

    assert asyncio.run(go())["buffered_rows"] == 3
    assert len(read_predictions(lake).to_pylist()) == 3


# --------------------------------------------------------------------------- the local endpoint


def _start_router(state: Path, sink_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "serving.router", "--state-dir", str(state), "--port", str(port)]
    cmd += ["--sink-url", sink_url, "--log-level", "INFO"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the router exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        return False

    wait_for(ready, "the router answers", START_TIMEOUT_S, 0.1)
    return proc, url


def test_the_endpoint_logs_v1_and_v2_answers_even_when_the_sink_comes_late(
    make_sink, roi_server: RunningServer, tmp_path: Path
) -> None:
    """The router answers at once while the sink is down, keeps the events,
    and delivers them once the sink is up; refused requests are not logged."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "endpoint.json").write_text(json.dumps({"version": "vtest", "url": roi_server.url}))
    sink = make_sink(batch_rows=1000, flush_s=0.3)
    router, url = _start_router(state, sink.url, tmp_path / "router.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            v1 = c.post(V1, json={"instances": SCENARIOS[:3]}, headers={"ce-id": "client-v1"})
            v2 = c.post(V2, json=v2_body(SCENARIOS[:2], outputs=[{"name": "roi"}]))
            refused = c.post(V1, json={"instances": [{**SCENARIOS[0], "region": "Atlantis"}]})
        assert (v1.status_code, v2.status_code, refused.status_code) == (200, 200, 400)
        sink.start()  # late: the router has been retrying
        rows = wait_for(lambda: len(sink.rows()) == 5 and sink.rows(), "the five answered scenarios", 30)
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=30)
    by_protocol = {p: [r for r in rows if r["protocol"] == p] for p in ("v1", "v2")}
    assert [r["request_id"] for r in by_protocol["v1"]] == ["client-v1"] * 3  # the request's Ce-Id
    answer = v1.json()["predictions"]
    for r, p in zip(sorted(by_protocol["v1"], key=lambda r: r["row"]), answer, strict=True):
        assert r["predicted_units"] == pytest.approx(p["predicted_units"])
        assert (r["region"], r["model_version"], r["cell_level"]) == (
            p["region"],
            p["model_version"],
            p["cell_level"],
        )
    v2_rows = sorted(by_protocol["v2"], key=lambda r: r["row"])
    assert [r["incentive_amount"] for r in v2_rows] == [float(s["incentive_amount"]) for s in SCENARIOS[:2]]
    roi = v2.json()["outputs"][0]["data"]
    assert [r["roi"] for r in v2_rows] == pytest.approx(roi)
    assert all(r["predicted_units"] is None for r in v2_rows)  # not asked for
    assert {r["inference_service"] for r in rows} == {"roi"} and {r["endpoint"] for r in rows} == {"default"}
    assert all(r["answered_at"] >= r["requested_at"] for r in rows)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_local_endpoint_starts_its_sink_and_stops_it(tmp_path: Path) -> None:
    """``start_endpoint`` with logging on starts the sink first (pid in the
    state dir) and hands the router its URL; a dead sink comes back on its
    port; ``stop_endpoint`` stops both, the sink writing what it holds."""
    from autoroi.config import MonitoringConfig
    from autoroi.deploy.local import SINK_PID_FILE, pid_alive, start_endpoint, stop_endpoint

    state = tmp_path / "serving"
    monitoring = MonitoringConfig(sink_port=free_port(), flush_s=60)
    lake = str(tmp_path / "lake")
    router = start_endpoint(state, "127.0.0.1", free_port(), lake_uri=lake, monitoring=monitoring)
    try:
        sink = json.loads((state / SINK_PID_FILE).read_text())
        assert sink["url"] == f"http://127.0.0.1:{monitoring.sink_port}" and pid_alive(sink["pid"])
        args = _cmdline(router["pid"])
        assert args[args.index("--sink-url") + 1] == sink["url"]
        # the sink took events and holds their rows (flush_s 60) when it is killed
        req, resp = pair("kept", scenarios(2))
        _ok(
            httpx.post(
                f"{sink['url']}/",
                content=batch_body([req, resp]),
                headers={"content-type": BATCH_CONTENT_TYPE},
            )
        )
        os.kill(sink["pid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(sink["pid"]), "the sink is gone")
        again = start_endpoint(state, "127.0.0.1", 1, lake_uri=lake, monitoring=monitoring)
        assert again == router  # the endpoint was running: reused
        restarted = json.loads((state / SINK_PID_FILE).read_text())
        assert restarted["url"] == sink["url"] and restarted["pid"] != sink["pid"]
    finally:
        stop_endpoint(state)
    assert not (state / SINK_PID_FILE).exists()
    wait_for(lambda: not pid_alive(router["pid"]) and not pid_alive(restarted["pid"]), "both stopped")
    rows = read_predictions(open_lake(lake)).to_pylist()
    assert [r["request_id"] for r in rows] == ["kept", "kept"]  # replayed, then written at the stop
