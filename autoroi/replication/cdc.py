"""Replicating one table: full load first, change capture after.

Change capture per table:

1. **Changed rows** by watermark: rows with ``updated_at`` at or after the
   newest ``updated_at`` already replicated minus a look-back window (for
   transactions that commit late), plus rows with no ``updated_at``.
2. **Deletes** from PostgreSQL's logical decoding when the source allows it
   (``logical``: the keys deleted since the table's last position in a
   replication slot), else by key reconciliation: the server counts rows and
   sums keys per key bucket (only buckets travel); buckets whose figures
   differ from the lake's are compared key by key. Reconciliation also
   repairs inserts the watermark missed.
3. **Merge** copy-on-write: only Parquet files holding a changed or deleted
   key are rewritten; new keys go to a new (or the last, small) file.

The layout keeps recent rows together, so that a change of recent rows
rewrites few files: a full load holds back rows whose key lies far outside the
keys around them (rows PostgreSQL stored in free space early in the table) and
writes them last, sorted, in files of their own (``stray_rows``); a rewrite
moves such rows out of an older lake's files once, to go with the inserts.

The watermark, key and schema live in the table's manifest, published in the
same atomic step as the data, so a crash anywhere leaves the previous version
intact and the next run starts from it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autoroi.config import ReplicationConfig
from autoroi.errors import SchemaDriftError
from autoroi.lake import failpoints
from autoroi.lake.tables import FileEntry, TableManifest, TableStore, TableWriter
from autoroi.replication.logical import TablePlan
from autoroi.replication.source import (
    UPDATED_AT,
    Fingerprints,
    SourceReader,
    SourceTable,
    bucket_fingerprints,
    bucket_of,
    bucket_range,
    merge_fingerprints,
    prefetch,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]


@dataclass
class TableResult:
    table: str
    status: str  # full_load | incremental | unchanged | failed
    rows: int = 0  # rows in the lake after the run
    extracted: int = 0  # rows read from the source
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    added_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    version: int | None = None
    message: str = ""
    deletes: str = ""  # how deletes were found: logical | reconcile | reload

    @property
    def rows_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


# -- schema drift ----------------------------------------------------------
_INT_RANK = {pa.int8(): 1, pa.int16(): 2, pa.int32(): 3, pa.int64(): 4}


def _widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Can every value of ``old`` be held by ``new`` unchanged?"""
    if old == new:
        return True
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[new] >= _INT_RANK[old]
    if pa.types.is_integer(old) and pa.types.is_decimal(new):
        return bool(new.precision - new.scale >= 19)
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return new.bit_width >= old.bit_width
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return bool(new.scale == old.scale and new.precision >= old.precision)
    return pa.types.is_string(old) and pa.types.is_large_string(new)


def compare_schemas(table: str, old: pa.Schema, new: pa.Schema) -> tuple[list[str], bool]:
    """(added columns, needs a full reload); raises on a change the lake
    cannot follow without losing or reinterpreting data."""
    problems = []
    for f in old:
        if f.name not in new.names:
            problems.append(f"column {f.name!r} was dropped")
            continue
        nt = new.field(f.name).type
        if not _widens(f.type, nt):
            problems.append(f"column {f.name!r} changed type from {f.type} to {nt}")
    if problems:
        raise SchemaDriftError(
            f"table {table!r}: incompatible schema change ({'; '.join(problems)}); the lake keeps the"
            " previous version. Fix the source or replicate the table afresh (--full-refresh)"
        )
    added = [n for n in new.names if n not in old.names]
    widened = any(old.field(f.name).type != f.type for f in new if f.name in old.names)
    return added, bool(added or widened)


# -- writing ------------------------------------------------------------------
def _write_batches(
    writer: TableWriter,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    key: str | None,
    file_rows: int,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Stream batches into files of at most ``file_rows`` rows; nothing is held
    in memory beyond one batch and the held-back strays (see
    :func:`stray_rows`: fewer than ``file_rows``), which are written last, in
    key order, in files of their own."""
    total = 0
    name: str = ""
    pq_writer: pq.ParquetWriter | None = None
    rows = 0
    kmin: int | None = None
    kmax: int | None = None
    strays = _Strays(writer, key, file_rows)
    for batch in coalesce(batches):
        total += batch.num_rows
        batch = strays.divert(batch)
        offset = 0
        while offset < batch.num_rows:
            if pq_writer is None:
                name, pq_writer = writer.open_file(schema)
                rows, kmin, kmax = 0, None, None
            take = min(file_rows - rows, batch.num_rows - offset)
            part = batch.slice(offset, take)
            pq_writer.write_batch(part)
            if key is not None:
                mm = pc.min_max(part.column(key))
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                kmin = lo if kmin is None else min(kmin, int(lo))
                kmax = hi if kmax is None else max(kmax, int(hi))
            rows += take
            offset += take
            if rows >= file_rows:
                writer.close_file(name, pq_writer, rows, kmin, kmax)
                pq_writer = None
            failpoints.hit("extract.batch", writer.store.table)
        if on_rows:
            on_rows(total)
    if pq_writer is not None:
        writer.close_file(name, pq_writer, rows, kmin, kmax)
    strays.flush()
    return total


# A row is a stray when its key lies this many interquartile ranges beyond the
# quartiles of the keys of its batch (Tukey's far-out fence).
STRAY_FENCE = 3
STRAY_MIN_ROWS = 1_000  # smaller batches are taken as they come


def stray_rows(keys: np.ndarray) -> np.ndarray | None:
    """Which of ``keys`` (in the order a table is read) lie far outside the
    key range of the rest; None when none do, or when there are too few keys
    to tell.

    A full load streams a PostgreSQL table in physical order, which is key
    order for rows inserted in order, except for rows that were inserted into
    free space left by deletes, or moved there by an update. Written where they
    arrive, such a row widens an old file's key range to the newest keys, and
    every later change of a recent row rewrites that old file too (measured:
    120 rows of 250 000 in the first file of a 5 M-row table made each change
    capture rewrite it). Keys spread over the whole batch (a table stored in no
    key order) make a wide fence, and nothing is a stray."""
    n = len(keys)
    if n < STRAY_MIN_ROWS:
        return None
    q1_at, q3_at = n // 4, (3 * n) // 4
    part = np.partition(keys, [q1_at, q3_at])
    q1, q3 = int(part[q1_at]), int(part[q3_at])
    spread = max(q3 - q1, 1)
    lo = max(q1 - STRAY_FENCE * spread, _INT64_MIN)
    hi = min(q3 + STRAY_FENCE * spread, _INT64_MAX)
    mask = (keys < lo) | (keys > hi)
    return mask if mask.any() else None


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


class _Strays:
    """Rows held back from the files they arrived in: written, sorted by key,
    into files of their own, when ``file_rows`` of them are held and at the
    end."""

    def __init__(self, writer: TableWriter, key: str | None, file_rows: int) -> None:
        self.writer, self.key, self.file_rows = writer, key, file_rows
        self.held: list[pa.RecordBatch] = []
        self.count = 0

    def divert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without its strays, which are held."""
        if self.key is None:
            return batch
        mask = stray_rows(batch.column(self.key).to_numpy().astype(np.int64, copy=False))
        if mask is None:
            return batch
        self.held.append(batch.filter(pa.array(mask)))
        self.count += self.held[-1].num_rows
        if self.count >= self.file_rows:
            self.flush()
        return batch.filter(pa.array(~mask))

    def flush(self) -> None:
        if not self.held:
            return
        assert self.key is not None
        rows = pa.Table.from_batches(self.held).sort_by(self.key)
        self.held, self.count = [], 0
        log.debug("%s: %d rows out of key order written apart", self.writer.store.table, rows.num_rows)
        for start in range(0, rows.num_rows, self.file_rows):
            _write(self.writer, rows.slice(start, self.file_rows), self.key)


def coalesce(batches: Iterable[pa.RecordBatch], rows: int = 131_072) -> Iterator[pa.RecordBatch]:
    """Small parser batches joined into row-group-sized ones: each written
    batch becomes a Parquet row group, and tiny row groups read slowly."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _max_updated(table_or_batch: pa.Table | pa.RecordBatch) -> datetime | None:
    if UPDATED_AT not in table_or_batch.schema.names:
        return None
    value = pc.max(table_or_batch.column(UPDATED_AT)).as_py()
    return value if isinstance(value, datetime) else None


def _watermark_state(
    st: SourceTable,
    watermark: datetime | None,
    fingerprints: Fingerprints,
    width: int,
    cdc: dict[str, object] | None = None,
) -> dict[str, object]:
    """What the next run starts from; published with the data, in one step
    (``cdc``: the table's position in the replication slot)."""
    return {
        "key": st.key,
        "watermark": watermark.isoformat() if watermark else None,
        "source_columns": st.columns,
        "key_buckets": (
            {"width": width, "fingerprints": {str(b): list(v) for b, v in sorted(fingerprints.items())}}
            if fingerprints
            else None
        ),
        "cdc": cdc,
    }


def _stored_fingerprints(manifest: TableManifest, width: int) -> Fingerprints:
    """The lake's bucket fingerprints as the last run left them (empty when
    absent or made with another bucket width: then they are recomputed)."""
    kb = manifest.state.get("key_buckets")
    if not kb or kb.get("width") != width:
        return {}
    return {int(b): (int(c), int(s), int(q)) for b, (c, s, q) in kb["fingerprints"].items()}


# -- full load ------------------------------------------------------------------
def full_load(
    reader: SourceReader,
    store: TableStore,
    st: SourceTable,
    cfg: ReplicationConfig,
    progress: Progress | None,
    current: TableManifest | None,
    cdc: dict[str, object] | None = None,
) -> TableResult:
    started = time.perf_counter()
    writer = store.begin()
    watermark: list[datetime] = []
    keys: list[np.ndarray] = []
    fingerprints: list[Fingerprints] = []
    track_keys = current is not None and st.key is not None and current.state.get("key") == st.key

    def tracked() -> Iterator[pa.RecordBatch]:
        for batch in prefetch(reader.stream(st)):
            w = _max_updated(batch)
            if w is not None:
                watermark.append(w)
            if st.key is not None:
                batch_keys = batch.column(st.key).to_numpy().astype(np.int64, copy=False)
                fingerprints.append(bucket_fingerprints(batch_keys, cfg.key_bucket_width))
                if track_keys:
                    keys.append(batch_keys)
            yield batch

    try:
        n = _write_batches(
            writer,
            st.schema,
            tracked(),
            st.key,
            cfg.file_rows,
            on_rows=(lambda r: progress(st.name, r)) if progress else None,
        )
        wm = max(watermark) if watermark else None
        result = TableResult(st.name, "full_load", rows=n, extracted=n, inserted=n, deletes="reload")
        if (
            current is not None
            and current.schema.equals(st.schema)
            and _same_content(store, current, writer, st)
        ):
            writer.abort()
            result.status, result.inserted, result.version = "unchanged", 0, current.version
        else:
            if track_keys:
                assert current is not None and st.key is not None
                # a reload after a schema change still says what changed, by key
                old_keys = store.read(current, columns=[st.key]).column(st.key).to_numpy()
                new_keys = np.concatenate(keys) if keys else np.empty(0, np.int64)
                result.inserted = int((~member(new_keys, old_keys)).sum())
                result.deleted = int((~member(old_keys, new_keys)).sum())
            fp = merge_fingerprints(*fingerprints) if fingerprints else {}
            manifest = writer.commit(st.schema, _watermark_state(st, wm, fp, cfg.key_bucket_width, cdc))
            result.version = manifest.version
            if current is not None:
                result.added_columns = [c for c in st.columns if c not in current.schema.names]
    except BaseException:
        writer.abort()
        raise
    result.seconds = time.perf_counter() - started
    return result


def _same_content(store: TableStore, current: TableManifest, writer: TableWriter, st: SourceTable) -> bool:
    """For tables reloaded in full every run: publish only when rows differ."""
    if current.rows != sum(e.rows for e in writer.entries):
        return False
    old = store.read(current)
    new = (
        pa.concat_tables(
            [pq.read_table(f"{writer.dir}/{e.name}", filesystem=store.lake.fs) for e in writer.entries]
        )
        if writer.entries
        else st.schema.empty_table()
    )
    order = [(c, "ascending") for c in ([st.key] if st.key else st.columns[:1])]
    return bool(old.sort_by(order).equals(new.cast(old.schema).sort_by(order))) if order else False


# -- incremental ------------------------------------------------------------------
class _LakeKeys:
    """Keys of the current version's files, read only for files whose key
    range can matter, and only the key column."""

    def __init__(self, store: TableStore, current: TableManifest, key: str):
        self.store, self.current, self.key = store, current, key
        self._cache: dict[str, np.ndarray] = {}

    def of(self, entry: FileEntry) -> np.ndarray:
        if entry.name not in self._cache:
            # ParquetFile, not read_table: no dataset set-up for one column of one file
            col = (
                pq.ParquetFile(self.store.file_path(self.current, entry.name), filesystem=self.store.lake.fs)
                .read(columns=[self.key], use_threads=False)
                .column(self.key)
            )
            self._cache[entry.name] = col.to_numpy().astype(np.int64, copy=False)
        return self._cache[entry.name]

    def files_meeting(self, lo: np.ndarray, hi: np.ndarray) -> list[FileEntry]:
        """Files whose [key_min, key_max] meets at least one interval [lo, hi];
        a file without a recorded range always counts."""
        out = []
        for e in self.current.files:
            if e.key_min is None or e.key_max is None or ((lo <= e.key_max) & (hi >= e.key_min)).any():
                out.append(e)
        return out

    def files_overlapping(self, keys: np.ndarray) -> list[FileEntry]:
        return self.files_meeting(keys, keys)

    def files_overlapping_buckets(self, buckets: list[int], width: int) -> list[FileEntry]:
        lo = np.array([bucket_range(b, width)[0] for b in buckets], dtype=np.int64)
        return self.files_meeting(lo, lo + (width - 1))

    def all(self) -> np.ndarray:
        parts = [self.of(e) for e in self.current.files]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)


class TableTruncated(Exception):
    """The replication slot says the table was truncated: reload it."""


def incremental(
    reader: SourceReader,
    store: TableStore,
    st: SourceTable,
    cfg: ReplicationConfig,
    current: TableManifest,
    plan: TablePlan | Callable[[], TablePlan | None] | None = None,
    cdc: dict[str, object] | Callable[[], dict[str, object] | None] | None = None,
) -> TableResult:
    """Change capture for one table. ``plan``: deletes from the replication
    slot (``plan.deletes == "logical"``), else key reconciliation; ``cdc``:
    the table's new position in the slot, kept in its manifest. Either may be
    a function, called only once the changed rows are read, so that the
    server decodes the slot (``LogicalCapture.collect_async``) while the rows
    are read; raises :class:`TableTruncated` when the plan says the table was
    truncated."""
    started = time.perf_counter()
    assert st.key is not None
    key, width = st.key, cfg.key_bucket_width
    wm_text = current.state.get("watermark")
    old_wm = datetime.fromisoformat(wm_text) if wm_text else None
    lake = _LakeKeys(store, current, key)

    # 1. changed rows by watermark
    if old_wm is not None:
        since = old_wm - timedelta(seconds=cfg.lookback_seconds)
        changes = pa.Table.from_batches(list(reader.changed_since(st, since)), schema=st.schema)
    else:
        changes = reader.read(st)
    extracted = changes.num_rows
    change_keys = np.sort(changes.column(key).to_numpy().astype(np.int64, copy=False))
    if len(change_keys) > 1 and (np.diff(change_keys) == 0).any():
        raise SchemaDriftError(f"table {st.name!r}: primary key {key!r} is not unique in the source")
    if callable(plan):
        plan = plan()
    if plan is not None and plan.truncated:
        raise TableTruncated(st.name)
    logical = plan is not None and plan.deletes == "logical" and plan.deleted is not None

    # 2. deletes: from the replication slot, or (with inserts the watermark
    # missed) by key reconciliation
    stored_fp = _stored_fingerprints(current, width)
    extra: pa.Table | None = None
    if logical:
        assert plan is not None and plan.deleted is not None
        deleted, extra = _deletes_from_log(reader, st, plan.deleted, change_keys)
        base_fp = stored_fp  # may be empty: then recomputed when a reconciliation needs it
    else:
        known = np.zeros(len(change_keys), dtype=bool)
        for entry in lake.files_overlapping(change_keys):
            known |= member(change_keys, lake.of(entry))
        new_keys = change_keys[~known]
        base_fp = stored_fp or bucket_fingerprints(lake.all(), width)
        expected_fp = merge_fingerprints(base_fp, bucket_fingerprints(new_keys, width))
        deleted, missing = _reconcile(reader, st, lake, new_keys, expected_fp, width)
        if len(missing):
            log.warning("%s: %d rows were not caught by the watermark; fetched by key", st.name, len(missing))
            extra = reader.rows_with_keys(st, missing)
    if extra is not None and extra.num_rows:
        extracted += extra.num_rows
        changes = pa.concat_tables([changes, extra])
        change_keys = np.sort(changes.column(key).to_numpy().astype(np.int64, copy=False))
    change_col = changes.column(key).to_numpy().astype(np.int64, copy=False)  # row order of `changes`

    # 3. merge, copy-on-write: only files holding a changed or deleted key
    touched = sorted_union(change_keys, deleted)
    writer = store.begin()
    result = TableResult(
        st.name, "incremental", extracted=extracted, deletes=plan.deletes if plan else "reconcile"
    )
    try:
        placed, gone, moved = _merge(
            writer, store, current, lake, changes, change_col, touched, deleted, result
        )
        inserts = changes.filter(pa.array(~placed))
        result.inserted = inserts.num_rows
        if inserts.num_rows or moved:
            rows = pa.concat_tables([inserts, *(m.cast(inserts.schema) for m in moved)])
            _append(writer, store, current, rows.sort_by(key), key, cfg.file_rows)
        if result.inserted == result.updated == result.deleted == 0:
            writer.abort()
            result.status, result.version, result.rows = "unchanged", current.version, current.rows
        else:
            wm = max((w for w in (old_wm, _max_updated(changes)) if w is not None), default=None)
            # the lake's fingerprints after this run, for the next reconciliation
            fp: Fingerprints = {}
            if base_fp:
                new_keys = inserts.column(key).to_numpy().astype(np.int64, copy=False)
                fp = merge_fingerprints(
                    merge_fingerprints(base_fp, bucket_fingerprints(new_keys, width)),
                    bucket_fingerprints(gone, width),
                    sign=-1,
                )
                rows = sum(e.rows for e in writer.entries)
                fp_rows = sum(c for c, _, _ in fp.values())
                if fp_rows != rows:  # a bug, not an input problem: recompute next time
                    log.warning("%s: fingerprint count %d != rows %d; recomputing", st.name, fp_rows, rows)
                    fp = {}
            position = cdc() if callable(cdc) else cdc
            manifest = writer.commit(
                st.schema, _watermark_state(st, wm, fp, width, position), background_gc=True
            )
            result.version, result.rows = manifest.version, manifest.rows
    except BaseException:
        writer.abort()
        raise
    result.seconds = time.perf_counter() - started
    return result


def _deletes_from_log(
    reader: SourceReader, st: SourceTable, logged: np.ndarray, change_keys: np.ndarray
) -> tuple[np.ndarray, pa.Table | None]:
    """(keys to delete, rows to upsert) from the keys the slot says were
    deleted. A key that is in this run's snapshot after all (deleted, then
    inserted again) is a row to upsert, not a delete: the rows of the
    candidates not already among the changed rows are fetched by key, which
    also tells which of them exist."""
    if len(logged) == 0:
        return np.empty(0, np.int64), None
    candidates = sorted_union(logged, np.empty(0, np.int64))
    candidates = candidates[~member(candidates, change_keys)]
    if len(candidates) == 0:
        return candidates, None
    assert st.key is not None
    present = reader.rows_with_keys(st, candidates)
    if present.num_rows == 0:
        return candidates, None
    back = present.column(st.key).to_numpy().astype(np.int64, copy=False)
    log.info("%s: %d keys deleted and inserted again since the last run", st.name, len(back))
    return candidates[~member(candidates, back)], present


def _merge(
    writer: TableWriter,
    store: TableStore,
    current: TableManifest,
    lake: _LakeKeys,
    changes: pa.Table,
    change_col: np.ndarray,
    touched: np.ndarray,
    deleted: np.ndarray,
    result: TableResult,
) -> tuple[np.ndarray, np.ndarray, list[pa.Table]]:
    """Rewrite the files that hold a changed or deleted key; keep the others.
    Returns (which rows of ``changes`` went into a rewritten file, the keys
    actually deleted, rows moved out of rewritten files: strays, far outside
    the rest of their file's keys, which a full load of an earlier version
    wrote where it found them; they are written with the inserts, so that a
    file is rewritten for them once, not on every change of a recent row).
    One file at a time, decoded by Arrow's own threads:
    rewriting files in parallel Python threads was slower on a shared 2-core
    machine (1.0-1.8 s against 0.7-0.8 s for two 250k-row files), the threads
    queueing for the GIL whenever another process held the cores."""
    key = lake.key
    overlapping = {e.name for e in lake.files_overlapping(touched)}
    candidates = [e for e in current.files if e.name in overlapping]
    # which files really hold a touched key: their key columns only (cached)
    hits = {e.name: member(lake.of(e), touched) for e in candidates}
    todo = [e for e in candidates if hits[e.name].any()]

    moved: list[pa.Table] = []

    def rewrite(entry: FileEntry) -> tuple[str | None, np.ndarray, int, np.ndarray]:
        t0 = time.perf_counter()
        keys, hit = lake.of(entry), hits[entry.name]
        mine = member(change_col, keys)
        new_rows = changes.filter(pa.array(mine))
        gone = keys[member(keys, deleted)]
        old = _RowGroups(store.file_path(current, entry.name), store, current.schema)
        # without a delete, the file may hold only re-read rows identical to
        # the lake's: then only its row groups with such rows are read
        old_hit = old.rows(hit, whole=len(gone) > 0)
        n_updated = _count_changed(old_hit, new_rows, key)
        if n_updated == 0 and len(gone) == 0:
            log.debug("%s: %s kept (%.3fs)", store.table, entry.name, time.perf_counter() - t0)
            return None, mine, 0, gone  # the file is kept
        # kept rows keep their order; changed rows follow (no re-sort of the file)
        merged = pa.concat_tables([old.rows(~hit, whole=True), new_rows.sort_by(key)])
        far = stray_rows(merged.column(key).to_numpy().astype(np.int64, copy=False))
        if far is not None:
            moved.append(merged.filter(pa.array(far)))
            merged = merged.filter(pa.array(~far))
        t1 = time.perf_counter()
        name = _write(writer, merged, key) if merged.num_rows else None
        log.debug(
            "%s: %s rewritten, %d rows (read %.3fs, write %.3fs)",
            store.table,
            entry.name,
            merged.num_rows,
            t1 - t0,
            time.perf_counter() - t1,
        )
        return name, mine, n_updated, gone

    done = {e.name: rewrite(e) for e in todo}

    placed = np.zeros(len(change_col), dtype=bool)
    gone_parts: list[np.ndarray] = []
    written = {e.name: e for e in writer.entries}  # put back in the order of the files they replace
    writer.entries.clear()
    for entry in current.files:
        outcome = done.get(entry.name)
        if outcome is None:
            writer.keep(entry)
            continue
        new_name, mine, n_updated, gone = outcome
        placed |= mine
        if n_updated == 0 and len(gone) == 0:
            writer.keep(entry)
            continue
        result.updated += n_updated
        result.deleted += len(gone)
        gone_parts.append(gone)
        if new_name is not None:
            writer.entries.append(written.pop(new_name))
    assert not written, written
    return placed, (np.concatenate(gone_parts) if gone_parts else np.empty(0, np.int64)), moved


ROW_GROUP_ROWS = 131_072


class _RowGroups:
    """One lake file, read by row group on demand: rows by a mask over the
    file's rows (which ``_LakeKeys.of`` gives in file order)."""

    def __init__(self, path: str, store: TableStore, schema: pa.Schema) -> None:
        self.file = pq.ParquetFile(path, filesystem=store.lake.fs)
        self.schema = schema
        meta = self.file.metadata
        self.ends = np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        self.groups: dict[int, pa.Table] = {}

    def _read(self, groups: list[int]) -> None:
        todo = [g for g in groups if g not in self.groups]
        if not todo:
            return
        table = self.file.read_row_groups(todo)
        if table.schema != self.schema:
            table = table.cast(self.schema)
        offset = 0
        for g in todo:
            n = int(self.ends[g] - (self.ends[g - 1] if g else 0))
            self.groups[g] = table.slice(offset, n)
            offset += n

    def rows(self, mask: np.ndarray, whole: bool) -> pa.Table:
        """The rows where ``mask`` holds, in file order; ``whole``: read every
        row group (the file is being rewritten), else only those needed."""
        if whole:
            groups = list(range(len(self.ends)))
        else:
            groups = sorted({int(g) for g in np.searchsorted(self.ends, np.flatnonzero(mask), side="right")})
        self._read(groups)
        parts = []
        for g in groups:
            sub = mask[int(self.ends[g - 1]) if g else 0 : int(self.ends[g])]
            if sub.all():
                parts.append(self.groups[g])  # no copy
            elif sub.any():
                parts.append(self.groups[g].filter(pa.array(sub)))
        return pa.concat_tables(parts) if parts else self.schema.empty_table()


def _dictionary_columns(table: pa.Table, sample: int = 8_192) -> list[str]:
    """Columns worth dictionary encoding: few distinct values in a sample.
    Parquet writers try a dictionary for every column and fall back to plain
    encoding once it grows past 1 MiB; for keys, timestamps and prices that
    attempt is wasted: without it a 250k-row file of ``sales`` takes about
    40 % less CPU to write and is 19 % smaller."""
    head = table.slice(0, sample)
    limit = max(head.num_rows // 8, 1)
    return [
        f.name
        for f in table.schema
        if pa.types.is_boolean(f.type) or pc.count_distinct(head.column(f.name)).as_py() <= limit
    ]


def _write(writer: TableWriter, table: pa.Table, key: str) -> str:
    """One new file, in row groups of ``ROW_GROUP_ROWS`` (so that a later
    run can read only the row groups it needs); its name."""
    name, pq_writer = writer.open_file(table.schema, use_dictionary=_dictionary_columns(table))
    pq_writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    col = table.column(key)
    writer.close_file(name, pq_writer, table.num_rows, int(pc.min(col).as_py()), int(pc.max(col).as_py()))
    return name


def _append(
    writer: TableWriter, store: TableStore, current: TableManifest, rows: pa.Table, key: str, file_rows: int
) -> None:
    """New keys: topped up into the last file while it is small, so repeated
    small batches do not leave a trail of tiny files."""
    kept = [e for e in writer.entries if e.key_max is not None]
    last = max(kept, key=lambda e: e.key_max or 0) if kept else None
    first_new = pc.min(rows.column(key)).as_py()
    if (
        last is not None
        and last.rows < file_rows // 2
        and last.rows + rows.num_rows <= file_rows
        and (last.key_max or 0) < first_new
        and any(e.name == last.name for e in current.files)
    ):
        writer.entries.remove(last)
        if writer.store.lake.is_local:
            os.unlink(f"{writer.dir}/{last.name}")
        rows = pa.concat_tables([store.read(current, files=[last.name]), rows])
    for start in range(0, rows.num_rows, file_rows):
        _write(writer, rows.slice(start, file_rows), key)


def member(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.isin(a, b)`` by binary search in sorted ``b``: numpy's own takes a
    hash-based ``unique`` that costs seconds at millions of keys."""
    if len(b) == 0 or len(a) == 0:
        return np.zeros(len(a), dtype=bool)
    sb = np.sort(b)
    idx = np.searchsorted(sb, a)
    idx[idx == len(sb)] = 0
    return sb[idx] == a


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.union1d`` without its hash-based ``unique``, which takes seconds
    for millions of keys: one sort and an adjacent-difference mask."""
    both = np.concatenate([a, b])
    both.sort()
    if len(both) < 2:
        return both
    keep = np.empty(len(both), dtype=bool)
    keep[0] = True
    np.not_equal(both[1:], both[:-1], out=keep[1:])
    return both[keep]


def _reconcile(
    reader: SourceReader,
    st: SourceTable,
    lake: _LakeKeys,
    new_keys: np.ndarray,
    expected: Fingerprints,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(keys deleted at the source, keys at the source the lake lacks): the
    server's bucket fingerprints against the lake's, then key by key in the
    buckets that differ."""
    source = reader.bucket_stats(st, width)
    differing = sorted(b for b in set(source) | set(expected) if source.get(b) != expected.get(b))
    if not differing:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    src_keys = reader.keys_in_buckets(st, differing, width)
    candidates = [*(lake.of(e) for e in lake.files_overlapping_buckets(differing, width)), new_keys]
    mine = np.concatenate([k[member(bucket_of(k, width), np.array(differing))] for k in candidates])
    # both sides hold unique keys; isin avoids setdiff1d's hash-based unique
    return mine[~member(mine, src_keys)], src_keys[~member(src_keys, mine)]


def _count_changed(old: pa.Table, new: pa.Table, key: str) -> int:
    """Rows of ``new`` that differ from the row with the same key in ``old``
    (a new key counts as changed only if it was there before: see inserts)."""
    if new.num_rows == 0:
        return 0
    old = old.sort_by(key)
    new = new.sort_by(key).select(old.column_names).cast(old.schema)
    # only keys present on both sides are updates
    both = member(new.column(key).to_numpy(), old.column(key).to_numpy())
    new = new.filter(pa.array(both))
    old = old.filter(pc.is_in(old.column(key), value_set=new.column(key)))
    if new.num_rows != old.num_rows:  # pragma: no cover - guarded by key uniqueness
        return new.num_rows
    differs = np.zeros(new.num_rows, dtype=bool)
    for name in old.column_names:
        a, b = old.column(name), new.column(name)
        eq = pc.fill_null(pc.equal(a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        differs |= ~pc.or_(eq, both_null).to_numpy(zero_copy_only=False)
    return int(differs.sum())
