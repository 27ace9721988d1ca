"""The sink's state: a write-ahead journal, the pairing of requests and
answers, and batches of rows written as Parquet files.

Durability. Every event the sink accepts is appended to
``<journal_dir>/journal.jsonl`` and fsynced before the sink answers 200, so an
event its sender saw accepted survives a SIGKILL. Answered requests' rows wait
in memory until a batch holds ``batch_rows`` rows or its first row is
``flush_s`` old; then each day's rows go to one Parquet file
(:func:`autoroi.monitoring.predictions.write_predictions`). Before a file is
written the journal gets a commit record naming the file and the events it
holds. Once the journal has grown past :data:`COMPACT_BYTES` (and twice what
still waits), and at every start and stop, it is rewritten (temporary name,
fsync, rename) with only what still waits: unpaired events and rows not yet
written.
At start the journal is replayed: the events of a commit record whose file
exists are done, every other event is paired again. So a crash between a file
and the rewrite writes no row twice, and a crash before the file loses none.
A graceful stop (SIGTERM) writes every waiting row first.

Pairing. KServe's agent sends the request event before the model answers and
the answer event only for a 200, from concurrent workers, so either may come
first. An event waits for its pair (in memory and in the journal) for
``pair_timeout_s`` of the sink's running time, then is dropped: a request
without an answer is one the server refused (counted); an answer whose
request never came is named in a warning. A request event without data (a
``GET`` of metadata or health that passed the agent) is not a prediction: it
is acknowledged and not kept, nor is the answer to it.

Delivery is at least once: a sender whose POST the sink journaled but could
not answer (killed in between) sends it again. An event identical to one this
process has already taken or replayed (same id, type, time and data length)
is acknowledged and not kept twice; the last :data:`SEEN_EVENTS` are
remembered.

One sink per journal: the pairing needs both events of a request in the same
process (one replica on a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.concurrency import run_in_threadpool

from autoroi.errors import AutoroiError
from autoroi.lake.leftovers import sweep_local, temp_name
from autoroi.lake.storage import Lake, fsync_dir
from autoroi.monitoring.predictions import (
    REQUEST,
    RESPONSE,
    Checked,
    Event,
    EventError,
    check_event,
    event_from_json,
    pair_rows,
    part_name,
    predictions_path,
    to_table,
    write_predictions,
)

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
RETRY_MAX_S = 60.0
IGNORED_IDS = 10_000  # ids of data-less requests remembered, so that their answers are not kept either
SEEN_EVENTS = 200_000
COMPACT_BYTES = 16 * 1024 * 1024  # rewriting the journal after every file would cost more than the files


class Metrics:
    """The sink's Prometheus metrics (``GET /metrics``), in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        p = "autoroi_prediction_sink"
        r = self.registry
        self.events = Counter(f"{p}_events", "events received", ["type", "outcome"], registry=r)
        self.rows = Counter(f"{p}_rows_written", "prediction rows written to the lake", registry=r)
        self.files = Counter(f"{p}_files_written", "Parquet files written to the lake", registry=r)
        self.write_errors = Counter(f"{p}_write_errors", "failed attempts to write a file", registry=r)
        self.expired = Counter(
            f"{p}_expired", "events dropped after waiting for their pair", ["type"], registry=r
        )
        self.waiting = Gauge(f"{p}_unpaired_events", "events waiting for their pair", registry=r)
        self.buffered = Gauge(f"{p}_buffered_rows", "answered rows waiting for their file", registry=r)


@dataclass
class Waiting:
    """An accepted event whose pair has not come yet."""

    seq: int
    event: Event
    checked: Checked
    line: bytes
    since: float  # monotonic: the pair timeout counts the sink's running time only


@dataclass
class Answered:
    """An answered request's rows, waiting for their file."""

    seqs: tuple[int, int]
    lines: tuple[bytes, bytes]
    rows: dict[str, list[Any]]
    day: dt.date
    n: int
    since: float  # monotonic


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _type(event: Event) -> str:
    return "request" if event.is_request else "response"


def _rows(
    a: Event, a_checked: Checked, b: Event, b_checked: Checked, logged_at: dt.datetime
) -> dict[str, list[Any]]:
    if a.is_request:
        return pair_rows(a, a_checked, b, b_checked, logged_at)
    return pair_rows(b, b_checked, a, a_checked, logged_at)


Hint = tuple[Event, dict[str, list[Any]]] | None  # the mate an event was checked with, and the rows


class _Mates:
    """The pairs one POST makes, before it is journaled: its events meet the
    waiting ones, or each other (a batch carries both events of a request),
    so that an event contradicting its mate is refused (422) before it is
    kept, and the rows are made once."""

    def __init__(self, waiting: dict[tuple[str, str], deque[Waiting]]) -> None:
        self.waiting = waiting
        self.claimed: set[int] = set()
        self.local: dict[tuple[str, str], deque[tuple[Event, Checked]]] = {}

    def pair(self, event: Event, checked: Checked, logged_at: dt.datetime) -> Hint:
        other = (event.id, RESPONSE if event.is_request else REQUEST)
        local = self.local.get(other)
        if local:
            mate_event, mate_checked = local[0]
            rows = _rows(event, checked, mate_event, mate_checked, logged_at)
            local.popleft()
            return mate_event, rows
        for w in self.waiting.get(other, ()):
            if id(w) not in self.claimed:
                rows = _rows(event, checked, w.event, w.checked, logged_at)
                self.claimed.add(id(w))
                return w.event, rows
        self.local.setdefault((event.id, event.type), deque()).append((event, checked))
        return None


def _key(event: Event) -> tuple[str, str, str, int]:
    """What tells a delivery of the same event again from another event."""
    return (event.id, event.type, event.time.isoformat() if event.time else "", len(event.data))


class PredictionStore:
    """The journal, the pairing and the batches (module docstring)."""

    def __init__(
        self,
        lake: Lake,
        journal_dir: str | Path,
        *,
        batch_rows: int = 500,
        flush_s: float = 5.0,
        pair_timeout_s: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        if batch_rows < 1 or flush_s <= 0 or pair_timeout_s <= 0:
            raise ValueError("batch_rows, flush_s and pair_timeout_s must be positive")
        self.lake = lake
        self.dir = Path(journal_dir)
        self.path = self.dir / JOURNAL
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.pair_timeout_s = pair_timeout_s
        self.metrics = metrics or Metrics()
        self._file: Any = None
        self._seq = 0
        self._waiting: dict[tuple[str, str], deque[Waiting]] = {}
        self._answered: deque[Answered] = deque()
        self._answered_rows = 0
        self._ignored: OrderedDict[str, None] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str, str, int], None] = OrderedDict()
        self._swept: set[str] = set()
        self._stale = False  # the journal holds events no longer waiting (expired): rewrite it
        self._journal_bytes = 0  # appended since the last rewrite, and what that rewrite kept
        self._io = asyncio.Lock()  # journal writes, with the memory changes they make durable
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.rows_written = 0
        self.files_written = 0

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Replay the journal (module docstring), then write batches in the background."""
        self.dir.mkdir(parents=True, exist_ok=True)
        sweep_local([self.dir])
        records = await run_in_threadpool(self._read_journal)
        await run_in_threadpool(self._replay, records)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the process's life
        await self._compact()
        self._task = asyncio.create_task(self._run(), name="prediction-sink-flusher")

    async def stop_writer(self) -> None:
        """Stop the background writer (a file it is writing is finished first)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()  # a sleep between retries; asyncio.wait_for may swallow it, hence the flag
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        """Stop the background writer, write every waiting row, close the journal."""
        await self.stop_writer()
        try:
            await self.flush(everything=True)
            await self._compact()
        except (OSError, pa.ArrowException, AutoroiError) as e:  # the journal keeps them for the next start
            log.warning("could not write the waiting rows at stop (kept in the journal): %s", e)
        if self._file is not None:
            self._file.close()
            self._file = None

    def stats(self) -> dict[str, int]:
        return {
            "unpaired": sum(len(q) for q in self._waiting.values()),
            "buffered_rows": self._answered_rows,
            "rows_written": self.rows_written,
            "files_written": self.files_written,
        }

    # -- accepting events -----------------------------------------------------------
    async def accept(self, events: Sequence[Event]) -> list[EventError | None]:
        """Check, journal (durably) and pair ``events``; per event ``None`` when
        accepted, else the error that refused it (the others are still kept)."""
        results: list[EventError | None] = []
        todo: list[tuple[Event, Checked, Hint]] = []
        keys = set()
        logged_at = dt.datetime.now(dt.UTC)
        mates = _Mates(self._waiting)
        for event in events:
            if self._ignore(event):
                self.metrics.events.labels(_type(event), "ignored").inc()
                results.append(None)
                continue
            key = _key(event)
            if key in self._seen or key in keys:  # delivered again: already kept
                self.metrics.events.labels(_type(event), "duplicate").inc()
                results.append(None)
                continue
            keys.add(key)
            try:
                checked = check_event(event)
                hint = mates.pair(event, checked, logged_at)
            except EventError as e:
                self.metrics.events.labels(_type(event), "refused").inc()
                log.warning("refused a %s event (id %s): %s", _type(event), event.id, e)
                results.append(e)
                continue
            results.append(None)
            todo.append((event, checked, hint))
        if todo:
            async with self._io:
                lines = []
                at = json.dumps(logged_at.isoformat())
                for event, _, _ in todo:
                    self._seq += 1
                    line = f'{{"seq":{self._seq},"at":{at},"event":'.encode() + event.json_bytes() + b"}\n"
                    lines.append((self._seq, line))
                await run_in_threadpool(self._append, [line for _, line in lines])
                for (event, checked, hint), (seq, line) in zip(todo, lines, strict=True):
                    self._remember(event)
                    self._apply(seq, event, checked, logged_at, line, hint)
                    self.metrics.events.labels(_type(event), "accepted").inc()
        return results

    def _remember(self, event: Event) -> None:
        self._seen[_key(event)] = None
        while len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)

    def _ignore(self, event: Event) -> bool:
        if event.data and not event.data.isspace():
            return not event.is_request and event.id in self._ignored
        if event.is_request:
            self._ignored[event.id] = None
            while len(self._ignored) > IGNORED_IDS:
                self._ignored.popitem(last=False)
        return True

    def _apply(
        self, seq: int, event: Event, checked: Checked, logged_at: dt.datetime, line: bytes, hint: Hint = None
    ) -> None:
        """Pair a durable event with its waiting mate (``hint``: the rows
        :class:`_Mates` made for it, when that mate is the one), or let it wait."""
        key = (event.id, RESPONSE if event.is_request else REQUEST)
        queue = self._waiting.get(key)
        if not queue:
            self._waiting.setdefault((event.id, event.type), deque()).append(
                Waiting(seq, event, checked, line, time.monotonic())
            )
            self.metrics.waiting.inc()
            return
        mate = queue.popleft()
        if not queue:
            del self._waiting[key]
        self.metrics.waiting.dec()
        try:
            if hint is not None and hint[0] is mate.event:
                rows = hint[1]
            else:  # another POST took the mate meanwhile (a duplicate id), or a replay
                rows = _rows(event, checked, mate.event, mate.checked, logged_at)
        except EventError as e:
            log.warning("events %s do not pair (dropped): %s", event.id, e)
            self._stale = True
            return
        n = len(rows["row"])
        answered_at = (event if not event.is_request else mate.event).time or logged_at
        day = answered_at.astimezone(dt.UTC).date()
        first = not self._answered
        self._answered.append(Answered((mate.seq, seq), (mate.line, line), rows, day, n, time.monotonic()))
        self._answered_rows += n
        self.metrics.buffered.set(self._answered_rows)
        if first or self._answered_rows >= self.batch_rows:
            self._wake.set()

    # -- the journal ------------------------------------------------------------------
    def _live_bytes(self) -> int:
        waiting = sum(len(w.line) for q in self._waiting.values() for w in q)
        return waiting + sum(len(ln) for a in self._answered for ln in a.lines)

    def _append(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        self._journal_bytes += len(data)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _rewrite(self, lines: list[bytes]) -> None:
        tmp = self.dir / temp_name(JOURNAL)
        data = b"".join(lines)
        self._journal_bytes = len(data)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(str(self.dir))
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open until the next rewrite

    async def _compact(self) -> None:
        async with self._io:
            live = [(w.seq, w.line) for q in self._waiting.values() for w in q]
            live += [(s, ln) for a in self._answered for s, ln in zip(a.seqs, a.lines, strict=True)]
            live.sort()
            await run_in_threadpool(self._rewrite, [ln for _, ln in live])
            self._stale = False

    def _read_journal(self) -> list[dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        lines = raw.split(b"\n")
        for i, text in enumerate(lines):
            if not text.strip():
                continue
            try:
                out.append(json.loads(text))
            except ValueError:
                # the last line of a crash mid-write was never acknowledged; another is damage
                where = "an unfinished last line" if i >= len(lines) - 2 else f"a damaged line {i + 1}"
                log.warning("journal %s: skipped %s", self.path, where)
        return out

    def _replay(self, records: list[dict[str, Any]]) -> None:
        done: set[int] = set()
        events = []
        for rec in records:
            if "commit" in rec:
                if self.lake.exists(str(rec["commit"])):
                    done.update(int(s) for s in rec.get("seqs") or [])
            elif "seq" in rec:
                events.append(rec)
        replayed = 0
        for rec in sorted(events, key=lambda r: int(r["seq"])):
            seq = int(rec["seq"])
            self._seq = max(self._seq, seq)
            try:
                event = event_from_json(rec["event"])
                self._remember(event)  # a sender may deliver it again
                if seq in done:
                    continue
                checked = check_event(event)
                logged_at = dt.datetime.fromisoformat(str(rec["at"]))
            except (EventError, KeyError, ValueError) as e:
                log.warning("journal %s: event %s cannot be read again (dropped): %s", self.path, seq, e)
                continue
            self._apply(seq, event, checked, logged_at, _line(rec))
            replayed += 1
        if records:
            log.info(
                "journal %s: %d events replayed (%d already in the lake), %d rows waiting, %d unpaired",
                self.path,
                replayed,
                len(done),
                self._answered_rows,
                self.stats()["unpaired"],
            )

    # -- batches and files -------------------------------------------------------------
    def _due(self, everything: bool) -> bool:
        if not self._answered:
            return False
        if everything or self._answered_rows >= self.batch_rows:
            return True
        return time.monotonic() - self._answered[0].since >= self.flush_s

    def _take(self) -> list[Answered]:
        batch: list[Answered] = []
        rows = 0
        while self._answered and (not batch or rows + self._answered[0].n <= self.batch_rows):
            a = self._answered.popleft()
            batch.append(a)
            rows += a.n
        self._answered_rows -= rows
        return batch

    async def flush(self, everything: bool = False) -> bool:
        """Write the batches that are due (``everything``: all rows); False
        when the lake refused one (its rows wait for the next try)."""
        async with self._flushing:
            wrote = False
            while self._due(everything):
                if not await self._write(self._take()):
                    return False
                wrote = True
            if self._stale or (
                wrote and self._journal_bytes > COMPACT_BYTES and self._journal_bytes > 2 * self._live_bytes()
            ):
                await self._compact()
            self.metrics.buffered.set(self._answered_rows)
            return True

    async def _write(self, batch: list[Answered]) -> bool:
        by_day: dict[dt.date, list[Answered]] = {}
        for a in batch:
            by_day.setdefault(a.day, []).append(a)
        written: list[dt.date] = []
        for day, group in by_day.items():
            folder = predictions_path(self.lake, day)
            path = f"{folder}/{part_name()}"
            commit = _line({"commit": path, "seqs": [s for a in group for s in a.seqs]})
            async with self._io:
                await run_in_threadpool(self._append, [commit])
            try:
                await run_in_threadpool(self._write_file, folder, path, group)
            except (OSError, pa.ArrowException, AutoroiError) as e:
                self.metrics.write_errors.inc()
                log.warning("could not write %s (its rows wait for the next try): %s", path, e)
                left = [a for a in batch if a.day not in written]
                self._answered.extendleft(reversed(left))
                self._answered_rows += sum(a.n for a in left)
                return False
            n = sum(a.n for a in group)
            self.rows_written += n
            self.files_written += 1
            self.metrics.rows.inc(n)
            self.metrics.files.inc()
            written.append(day)
            log.info("wrote %d prediction rows to %s", n, self.lake.display(path))
        return True

    def _write_file(self, folder: str, path: str, group: list[Answered]) -> None:
        if folder not in self._swept:
            self.lake.sweep(folder)  # temporaries a killed sink left in this day's folder
            self._swept.add(folder)
        try:
            write_predictions(self.lake, path, to_table(a.rows for a in group))
        except (OSError, pa.ArrowException):
            if not self.lake.exists(path):  # an S3 PUT can land and still report an error
                raise

    def _expire(self) -> None:
        now = time.monotonic()
        for key in list(self._waiting):
            queue = self._waiting[key]
            while queue and now - queue[0].since > self.pair_timeout_s:
                w = queue.popleft()
                self._stale = True
                self.metrics.waiting.dec()
                self.metrics.expired.labels(_type(w.event)).inc()
                if w.event.is_request:
                    log.info("request %s: no answer within %g s (refused?)", w.event.id, self.pair_timeout_s)
                else:
                    log.warning(
                        "the answer to request %s came without its request within %g s: not logged",
                        w.event.id,
                        self.pair_timeout_s,
                    )
            if not queue:
                del self._waiting[key]

    async def _run(self) -> None:
        retry_s = 0.0
        while not self._stopping:
            if retry_s:  # the lake refused a file: wait, whatever comes in meanwhile
                await asyncio.sleep(retry_s)
            else:
                if self._answered:
                    timeout = max(0.0, self.flush_s - (time.monotonic() - self._answered[0].since))
                else:
                    timeout = min(self.flush_s, self.pair_timeout_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            if self._stopping:
                return
            self._wake.clear()
            self._expire()
            try:
                ok = await self.flush()
            except Exception:  # the writer outlives any one failure: the journal keeps the rows
                log.exception("the prediction sink's writer failed; trying again")
                ok = False
            retry_s = 0.0 if ok else min(RETRY_MAX_S, max(1.0, retry_s * 2))
