"""The local router in front of several servers of one version (an endpoint
file with ``urls``): requests go to each in turn, and a replica that is gone
costs no request while another answers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from serving.router.app import build_app


def _upstream(name: str, seen: Counter[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen[name] += 1
            body = json.dumps({"predictions": [name]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def replicas() -> Iterator[tuple[list[ThreadingHTTPServer], Counter[str]]]:
    seen: Counter[str] = Counter()
    servers = [_upstream(name, seen) for name in ("a", "b")]
    yield servers, seen
    for s in servers:
        s.shutdown()
        s.server_close()


def _post_many(app: object, n: int) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            return [await c.post("/v1/models/roi:predict", json={"instances": [{}]}) for _ in range(n)]

    return asyncio.run(go())


def test_requests_go_to_the_replicas_in_turn_and_survive_one_gone(tmp_path: Path, replicas) -> None:
    servers, seen = replicas
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    (tmp_path / "endpoint.json").write_text(json.dumps({"version": "v1", "url": urls[0], "urls": urls}))
    app = build_app(tmp_path)
    answers = _post_many(app, 10)
    assert [r.status_code for r in answers] == [200] * 10
    assert seen == Counter({"a": 5, "b": 5})
    assert {r.headers["x-autoroi-model-version"] for r in answers} == {"v1"}

    servers[1].shutdown()
    servers[1].server_close()
    answers = _post_many(app, 6)
    assert [r.status_code for r in answers] == [200] * 6  # each turn of b's goes on to a
    assert seen["a"] == 5 + 6 and seen["b"] == 5


def test_one_url_is_one_replica(tmp_path: Path, replicas) -> None:
    servers, seen = replicas
    url = f"http://127.0.0.1:{servers[1].server_address[1]}"
    (tmp_path / "endpoint.json").write_text(json.dumps({"version": "v1", "url": url}))
    assert [r.json()["predictions"] for r in _post_many(build_app(tmp_path), 3)] == [["b"]] * 3
    assert seen == Counter({"b": 3})
