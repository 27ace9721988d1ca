"""The local endpoint's payload logger: what KServe's agent does beside the
model server on a cluster (``predictor.logger``), done by the router here.

For every v1 ``:predict`` and v2 ``/infer`` request that was answered 200,
once the answer has been sent, the router queues the pair of CloudEvents the
agent would send (``org.kubeflow.serving.inference.request`` and
``.response``, the same ``id``: the request's ``Ce-Id`` header or a fresh
UUID, and KServe's extension attributes; see
``autoroi.monitoring.predictions``). A background task posts the queue to the
prediction sink in batches (``application/cloudevents-batch+json``, up to
:data:`BATCH_EVENTS` events per POST, gathered for :data:`LINGER_S` after the
first): the answer never waits for the sink, and one POST carries the events
of many requests, so logging costs each request little more than the queueing
of two references.

When the sink is down or answers 5xx the events stay queued and the post is
tried again with backoff (0.1 s doubling to 5 s). The queue is bounded
(``max_bytes`` of bodies): a request that finds it full is not logged, and
the drops are counted and named in a warning at most every 10 s. A 4xx from
the sink (an event it refuses, named in its answer) drops that batch's
refused events; the sink kept the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

import httpx

from autoroi.monitoring.predictions import (
    BATCH_CONTENT_TYPE,
    MODEL_NAME,
    REQUEST,
    RESPONSE,
    Event,
    batch_body,
)

log = logging.getLogger(__name__)

BATCH_EVENTS = 512
LINGER_S = 0.2  # a batch gathers this long: a few POSTs a second whatever the request rate
BATCH_BYTES = 1024 * 1024  # a POST is encoded on the endpoint's event loop: keep each one short
MAX_BYTES = 64 * 1024 * 1024
BACKOFF_S = (0.1, 5.0)
WARN_EVERY_S = 10.0
# what the agent of an InferenceService "roi" says of itself (component, endpoint)
EXTENSIONS = {"inferenceservicename": MODEL_NAME, "component": "predictor", "endpoint": "default"}


@dataclass(frozen=True)
class Answered:
    """One answered request as the router saw it."""

    request_id: str
    source: str
    content_type: str | None
    request: bytes
    response: bytes
    asked_at: dt.datetime
    answered_at: dt.datetime

    @property
    def size(self) -> int:
        return len(self.request) + len(self.response)

    def events(self) -> tuple[Event, Event]:
        rid, src, ctype = self.request_id, self.source, self.content_type
        return (
            Event(rid, REQUEST, src, self.request, self.asked_at, ctype, EXTENSIONS),
            Event(rid, RESPONSE, src, self.response, self.answered_at, ctype, EXTENSIONS),
        )


def request_id(ce_id: str | None) -> str:
    """The agent's rule: the request's ``Ce-Id`` header, else a new UUID."""
    return ce_id or str(uuid.uuid4())


class PayloadLogger:
    """The queue and the task that posts it (module docstring)."""

    def __init__(self, sink_url: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = 10.0) -> None:
        self.url = sink_url.rstrip("/") + "/"
        self.max_bytes = max_bytes
        self._queue: deque[Answered] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.sent = 0  # answered requests the sink took
        self.dropped = 0  # not logged: the queue was full
        self.refused = 0  # events the sink refused
        self._warned_at = 0.0

    def record(self, answered: Answered) -> None:
        """Queue one answered request (no I/O; called after the answer is sent)."""
        if self._bytes + answered.size > self.max_bytes:
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "prediction log: the queue for %s is full (%d requests, %d MiB); %d answered requests"
                    " not logged so far",
                    self.url,
                    len(self._queue),
                    self._bytes >> 20,
                    self.dropped,
                )
            return
        self._queue.append(answered)
        self._bytes += answered.size
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="payload-logger")

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _batch(self) -> list[Answered]:
        out: list[Answered] = []
        size = 0
        for a in self._queue:
            if out and (2 * (len(out) + 1) > BATCH_EVENTS or size + a.size > BATCH_BYTES):
                break
            out.append(a)
            size += a.size
        return out

    async def _post(self, batch: list[Answered]) -> bool:
        """True when the batch is done with (taken, or refused for good)."""
        body = batch_body(e for a in batch for e in a.events())
        try:
            r = await self._client.post(self.url, content=body, headers={"content-type": BATCH_CONTENT_TYPE})
        except httpx.HTTPError as e:
            log.debug("prediction log: %s does not answer: %s", self.url, e)
            return False
        if r.status_code >= 500:
            log.debug("prediction log: %s answered %d", self.url, r.status_code)
            return False
        if r.status_code >= 400:
            try:
                doc = r.json()
            except ValueError:
                doc = {"error": r.text[:300]}
            if not isinstance(doc, dict):
                doc = {"error": str(doc)[:300]}
            refused = doc.get("refused")
            self.refused += len(refused) if isinstance(refused, list) else 2 * len(batch)
            log.warning(
                "prediction log: %s refused events (%d): %s", self.url, r.status_code, doc.get("error")
            )
        self.sent += len(batch)
        return True

    async def _run(self) -> None:
        delay = 0.0
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                if not self._closing:
                    await asyncio.sleep(LINGER_S)
            batch = self._batch()
            if await self._post(batch):
                for _ in batch:
                    self._bytes -= self._queue.popleft().size
                delay = 0.0
            else:
                delay = min(BACKOFF_S[1], max(BACKOFF_S[0], delay * 2))
                await asyncio.sleep(delay)

    async def aclose(self, drain_s: float = 5.0) -> None:
        """Post what is queued (for at most ``drain_s``), then stop."""
        self._closing = True
        deadline = time.monotonic() + drain_s
        while (
            self._queue and self._task is not None and not self._task.done() and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue:
            log.warning("prediction log: %d answered requests were not logged at stop", len(self._queue))
        await self._client.aclose()
