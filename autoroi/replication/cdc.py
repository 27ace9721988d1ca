"""Replicating one table: full load first, change capture after.

Change capture per table:

1. **Changed rows** by watermark: rows with ``updated_at`` at or after the
   newest ``updated_at`` already replicated minus a look-back window (for
   transactions that commit late), plus rows with no ``updated_at``.
2. **Deletes** by key reconciliation: the server counts rows and sums keys per
   key bucket (only buckets travel); buckets whose figures differ from the
   lake's are compared key by key. This also repairs inserts the watermark
   missed.
3. **Merge** copy-on-write: only Parquet files holding a changed or deleted
   key are rewritten; new keys go to a new (or the last, small) file.

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
    in memory beyond one batch."""
    total = 0
    name: str = ""
    pq_writer: pq.ParquetWriter | None = None
    rows = 0
    kmin: int | None = None
    kmax: int | None = None
    for batch in coalesce(batches):
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
            total += take
            if rows >= file_rows:
                writer.close_file(name, pq_writer, rows, kmin, kmax)
                pq_writer = None
            failpoints.hit("extract.batch", writer.store.table)
        if on_rows:
            on_rows(total)
    if pq_writer is not None:
        writer.close_file(name, pq_writer, rows, kmin, kmax)
    return total


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
    st: SourceTable, watermark: datetime | None, fingerprints: Fingerprints, width: int
) -> dict[str, object]:
    """What the next run starts from; published with the data, in one step."""
    return {
        "key": st.key,
        "watermark": watermark.isoformat() if watermark else None,
        "source_columns": st.columns,
        "key_buckets": (
            {"width": width, "fingerprints": {str(b): list(v) for b, v in sorted(fingerprints.items())}}
            if fingerprints
            else None
        ),
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
        result = TableResult(st.name, "full_load", rows=n, extracted=n, inserted=n)
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
            manifest = writer.commit(st.schema, _watermark_state(st, wm, fp, cfg.key_bucket_width))
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
            col = pq.read_table(
                self.store.file_path(self.current, entry.name),
                columns=[self.key],
                filesystem=self.store.lake.fs,
            ).column(self.key)
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


def incremental(
    reader: SourceReader,
    store: TableStore,
    st: SourceTable,
    cfg: ReplicationConfig,
    current: TableManifest,
) -> TableResult:
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
    known = np.zeros(len(change_keys), dtype=bool)
    for entry in lake.files_overlapping(change_keys):
        known |= member(change_keys, lake.of(entry))
    new_keys = change_keys[~known]

    # 2. deletes (and inserts the watermark missed) by key reconciliation
    lake_fp = _stored_fingerprints(current, width) or bucket_fingerprints(lake.all(), width)
    expected_fp = merge_fingerprints(lake_fp, bucket_fingerprints(new_keys, width))
    deleted, missing = _reconcile(reader, st, lake, new_keys, expected_fp, width)
    if len(missing):
        log.warning("%s: %d rows were not caught by the watermark; fetched by key", st.name, len(missing))
        extra = reader.rows_with_keys(st, missing)
        extracted += extra.num_rows
        changes = pa.concat_tables([changes, extra])
        change_keys = np.sort(changes.column(key).to_numpy().astype(np.int64, copy=False))
    change_col = changes.column(key).to_numpy().astype(np.int64, copy=False)  # row order of `changes`

    # 3. merge, copy-on-write: only files holding a changed or deleted key
    touched = sorted_union(change_keys, deleted)
    writer = store.begin()
    result = TableResult(st.name, "incremental", extracted=extracted)
    try:
        placed = np.zeros(len(change_col), dtype=bool)
        overlapping = {e.name for e in lake.files_overlapping(touched)}
        for entry in current.files:
            if entry.name not in overlapping:
                writer.keep(entry)
                continue
            keys = lake.of(entry)
            hit = member(keys, touched)
            if not hit.any():
                writer.keep(entry)
                continue
            mine = member(change_col, keys)
            placed |= mine
            new_rows = changes.filter(pa.array(mine))
            n_deleted = int(member(keys, deleted).sum())
            path = store.file_path(current, entry.name)
            old_hit = pq.read_table(
                path, filesystem=store.lake.fs, filters=pc.field(key).isin(pa.array(keys[hit]))
            )
            n_updated = _count_changed(old_hit, new_rows, key)
            if n_updated == 0 and n_deleted == 0:
                writer.keep(entry)  # re-read rows identical to the lake's
                continue
            result.updated += n_updated
            result.deleted += n_deleted
            old = pq.read_table(path, filesystem=store.lake.fs, schema=current.schema)
            # kept rows keep their order; changed rows follow (no re-sort of the file)
            merged = pa.concat_tables([old.filter(pa.array(~hit)), new_rows.sort_by(key)])
            if merged.num_rows:
                writer.write_table(merged, key=key)
        inserts = changes.filter(pa.array(~placed))
        result.inserted = inserts.num_rows
        if inserts.num_rows:
            _append(writer, store, current, inserts.sort_by(key), key, cfg.file_rows)
        if result.inserted == result.updated == result.deleted == 0:
            writer.abort()
            result.status, result.version, result.rows = "unchanged", current.version, current.rows
        else:
            wm = max((w for w in (old_wm, _max_updated(changes)) if w is not None), default=None)
            # the lake's fingerprints after this run, for the next one
            fp = merge_fingerprints(
                merge_fingerprints(expected_fp, bucket_fingerprints(missing, width)),
                bucket_fingerprints(deleted, width),
                sign=-1,
            )
            rows = sum(e.rows for e in writer.entries)
            fp_rows = sum(c for c, _, _ in fp.values())
            if fp_rows != rows:  # a bug, not an input problem: recompute next run
                log.warning("%s: fingerprint count %d != rows %d; recomputing", st.name, fp_rows, rows)
                fp = {}
            manifest = writer.commit(st.schema, _watermark_state(st, wm, fp, width))
            result.version, result.rows = manifest.version, manifest.rows
    except BaseException:
        writer.abort()
        raise
    result.seconds = time.perf_counter() - started
    return result


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
        writer.write_table(rows.slice(start, file_rows), key=key)


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
