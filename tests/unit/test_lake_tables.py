"""``TableStore`` on a local folder: versions, atomic publish, abort, crash
leftovers, garbage collection, and the errors it raises."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from autoroi.errors import LakeError
from autoroi.lake import TableStore, open_lake
from autoroi.lake.tables import MANIFEST, TableManifest
from tests.leftovers_support import dead_writer_id, live_writer, temporaries, version_numbers

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.int64())])


def _rows(version: int, n: int = 100) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "v": pa.array([version] * n, pa.int64())})


def _store(lake_dir: Path, table: str = "t", keep_versions: int = 2) -> TableStore:
    return TableStore(open_lake(str(lake_dir)), "raw", table, keep_versions=keep_versions)


def _publish(
    store: TableStore, table: pa.Table, files: int = 1, state: dict[str, Any] | None = None
) -> TableManifest:
    writer = store.begin()
    step = max(1, -(-table.num_rows // files))
    for start in range(0, table.num_rows, step):
        writer.write_table(table.slice(start, step), key="id")
    return writer.commit(table.schema, state)


def _version(store: TableStore) -> int:
    manifest = store.manifest()
    assert manifest is not None
    return manifest.version


def _reader_view(lake_dir: Path, table: str = "t") -> pa.Table:
    """What any Parquet reader sees: a dataset on the folder."""
    return pads.dataset(str(lake_dir / "raw" / table), format="parquet").to_table()


def test_commit_publishes_a_version_through_a_symlink(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.manifest() is None
    m1 = _publish(store, _rows(1), files=3, state={"watermark": "w1"})
    link = tmp_path / "raw" / "t"
    assert link.is_symlink()
    assert re.fullmatch(r"_versions/t/v000001-w[0-9a-f]{8}p\d+s\d+", os.readlink(link))
    assert m1.version == 1 and m1.rows == 100 and len(m1.files) == 3
    assert _reader_view(tmp_path).sort_by("id").equals(_rows(1))
    assert store.read().sort_by("id").equals(_rows(1))
    # the manifest travels with the data and is skipped by Parquet readers
    assert (link / MANIFEST).is_file()
    manifest = store.manifest()
    assert manifest is not None and manifest.state == {"watermark": "w1"}
    assert manifest.schema.equals(SCHEMA)

    m2 = _publish(store, _rows(2, 50))
    assert m2.version == 2
    assert re.fullmatch(r"_versions/t/v000002-w[0-9a-f]{8}p\d+s\d+", os.readlink(link))
    assert _reader_view(tmp_path).sort_by("id").equals(_rows(2, 50))
    # the older version is still complete for readers in flight
    assert store.read(m1).sort_by("id").equals(_rows(1))


def test_nothing_is_visible_before_commit(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _publish(store, _rows(1))
    writer = store.begin()
    writer.write_table(_rows(2), key="id")
    assert _reader_view(tmp_path).equals(_rows(1))
    assert _version(store) == 1
    writer.commit(SCHEMA)
    assert _reader_view(tmp_path).equals(_rows(2))


def _signature(t: pa.Table) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(zip(t.column("id").to_pylist(), t.column("v").to_pylist(), strict=True)))


def test_readers_that_resolve_the_link_once_always_see_one_whole_version(tmp_path: Path) -> None:
    """Readers racing with publishes (several files per version, half of them
    carried over from the previous version as an incremental run does) always
    see exactly one complete published version, and never fail, when they
    resolve ``<zone>/<table>`` once and read that version folder (version
    folders are immutable). GC is kept out of the race: ``keep_versions`` is
    the allowance for slow readers."""
    store = _store(tmp_path, keep_versions=1_000)
    current = _publish(store, _rows(1), files=4)
    published = {_signature(_rows(1))}
    stop = threading.Event()
    seen: list[tuple[tuple[int, int], ...]] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                t = pads.dataset(os.path.realpath(tmp_path / "raw" / "t"), format="parquet").to_table()
                seen.append(_signature(t))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        for version in range(2, 40):
            writer = store.begin()
            for i, entry in enumerate(current.files):
                if i % 2 == 0 and version % 3:
                    writer.keep(entry)
                else:
                    assert entry.key_min is not None
                    writer.write_table(_rows(version).slice(entry.key_min, entry.rows), key="id")
            current = writer.commit(SCHEMA)
            published.add(_signature(store.read(current)))
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert not errors, errors[:3]
    assert len(seen) > 10
    assert len(published) == 39
    foreign = [sig for sig in seen if sig not in published]
    assert not foreign, f"{len(foreign)} reads matched no published version, e.g. {len(foreign[0])} rows"


def test_abort_leaves_the_current_version(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _publish(store, _rows(1))
    before = sorted(p.name for p in (tmp_path / "raw" / "_versions" / "t").iterdir())
    writer = store.begin()
    writer.write_table(_rows(2), key="id")
    staged = Path(writer.dir)
    assert staged.is_dir()
    writer.abort()
    assert not staged.exists()
    assert _version(store) == 1
    assert _reader_view(tmp_path).equals(_rows(1))
    assert sorted(p.name for p in (tmp_path / "raw" / "_versions" / "t").iterdir()) == before
    # the next version number is free again
    assert _publish(store, _rows(3)).version == 2


def test_leftovers_of_a_crashed_publish_are_removed_at_the_next_begin(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _publish(store, _rows(1))
    vdir = tmp_path / "raw" / "_versions" / "t"
    dead = dead_writer_id()
    # a writer that died after writing data (no commit, no abort) ...
    crashed = vdir / f"v000002-{dead}"
    crashed.mkdir()
    (crashed / f"part-000002-00001-{dead}-abcdef.parquet").write_bytes(b"partial")
    # ... one that died after writing its manifest, just after making its swap link
    half = vdir / f"v000003-{dead}"
    half.mkdir()
    (half / MANIFEST).write_text("{}")
    (half / f".{MANIFEST}.{dead}-abcdef.tmp").write_text("{")
    os.symlink(os.path.relpath(half, tmp_path / "raw"), tmp_path / "raw" / f".t.{dead}-abcdef.swap")
    assert _reader_view(tmp_path).equals(_rows(1))

    with live_writer() as alive:
        # a run still writing is left alone
        busy = vdir / f"v000002-{alive}"
        busy.mkdir()
        busy_link = tmp_path / "raw" / f".t.{alive}-abcdef.swap"
        os.symlink(os.path.relpath(busy, tmp_path / "raw"), busy_link)
        writer = store.begin()
        assert version_numbers(vdir) == [1, 2, 2]
        assert busy.is_dir() and os.path.lexists(busy_link)
        assert temporaries(tmp_path / "raw") == [busy_link.name]
    writer.abort()
    writer = store.begin()  # the writer that was alive is gone now
    assert version_numbers(vdir) == [1, 2] and temporaries(tmp_path) == []
    assert writer.version == 2 and not list(Path(writer.dir).iterdir())
    writer.write_table(_rows(5), key="id")
    writer.commit(SCHEMA)
    assert _reader_view(tmp_path).equals(_rows(5))
    assert store.read().equals(_rows(5))


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_old_versions_are_garbage_collected(tmp_path: Path, keep: int) -> None:
    store = _store(tmp_path, keep_versions=keep)
    for v in range(1, 6):
        _publish(store, _rows(v))
    vdir = tmp_path / "raw" / "_versions" / "t"
    assert version_numbers(vdir) == list(range(6 - keep, 6))
    assert _reader_view(tmp_path).equals(_rows(5))


def test_kept_files_are_shared_not_copied(tmp_path: Path) -> None:
    store = _store(tmp_path)
    m1 = _publish(store, _rows(1), files=2)
    writer = store.begin()
    writer.keep(m1.files[0])
    writer.write_table(_rows(2).slice(50), key="id")
    m2 = writer.commit(SCHEMA)
    assert m2.rows == 100
    old = Path(store.file_path(m1, m1.files[0].name))
    new = Path(store.file_path(m2, m1.files[0].name))
    assert old.stat().st_ino == new.stat().st_ino
    got = store.read().sort_by("id")
    assert got.column("v").to_pylist() == [1] * 50 + [2] * 50


def test_file_entries_describe_the_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    m = _publish(store, _rows(1, 300), files=3)
    assert [(f.rows, f.key_min, f.key_max) for f in m.files] == [
        (100, 0, 99),
        (100, 100, 199),
        (100, 200, 299),
    ]
    for f in m.files:
        assert f.bytes == Path(store.file_path(m, f.name)).stat().st_size > 0


def test_empty_version(tmp_path: Path) -> None:
    store = _store(tmp_path)
    m = store.begin().commit(SCHEMA)
    assert m.rows == 0 and m.files == []
    got = store.read()
    assert got.num_rows == 0 and got.schema.equals(SCHEMA)


def test_reading_an_absent_table_is_a_lake_error(tmp_path: Path) -> None:
    store = _store(tmp_path, "nothing_here")
    assert store.manifest() is None
    with pytest.raises(LakeError, match="nothing_here"):
        store.read()


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "_versions", ".hidden", "sales;drop", "a b", "t\n"])
def test_invalid_table_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(LakeError, match="invalid table name"):
        TableStore(open_lake(str(tmp_path)), "raw", name)
    assert not (tmp_path / "raw").exists()


def test_a_real_folder_in_place_of_the_link_is_not_overwritten(tmp_path: Path) -> None:
    """Someone copied data into ``raw/t`` by hand: publishing must refuse
    rather than replace it."""
    folder = tmp_path / "raw" / "t"
    folder.mkdir(parents=True)
    (folder / "data.parquet").write_bytes(b"x")
    store = _store(tmp_path)
    writer = store.begin()
    writer.write_table(_rows(1), key="id")
    with pytest.raises(LakeError, match="not a published table"):
        writer.commit(SCHEMA)
    assert (folder / "data.parquet").read_bytes() == b"x"


def test_background_gc_removes_old_versions_after_the_publish(tmp_path: Path) -> None:
    store = _store(tmp_path, keep_versions=2)
    for v in range(1, 4):
        _publish(store, _rows(v))
    writer = store.begin()
    writer.write_table(_rows(4), key="id")
    m4 = writer.commit(SCHEMA, background_gc=True)
    # published at once: the link already points at the new version
    assert _version(store) == m4.version == 4
    assert _reader_view(tmp_path).sort_by("id").equals(_rows(4))
    store.wait_gc()
    vdir = tmp_path / "raw" / "_versions" / "t"
    assert version_numbers(vdir) == [3, 4]
    store.wait_gc()  # nothing left to wait for


def test_begin_waits_for_a_background_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path, keep_versions=1)
    _publish(store, _rows(1))
    started, release = threading.Event(), threading.Event()
    real_gc = store._gc_local

    def slow_gc(current_version: int, current_dir: str) -> None:
        started.set()
        release.wait(5)
        real_gc(current_version, current_dir)

    monkeypatch.setattr(store, "_gc_local", slow_gc)
    writer = store.begin()
    writer.write_table(_rows(2), key="id")
    writer.commit(SCHEMA, background_gc=True)
    assert started.wait(5)
    done = threading.Event()

    def begin_again() -> None:
        store.begin().abort()
        done.set()

    t = threading.Thread(target=begin_again)
    t.start()
    assert not done.wait(0.2)  # begin waits for the old version's removal
    release.set()
    t.join(5)
    assert done.is_set()
    vdir = tmp_path / "raw" / "_versions" / "t"
    assert version_numbers(vdir) == [2]
    assert _reader_view(tmp_path).sort_by("id").equals(_rows(2))


def test_old_versions_left_by_an_interrupted_background_gc_go_at_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that ends while its gc thread runs leaves old versions; they
    are invisible to readers and removed by the next commit."""
    store = _store(tmp_path, keep_versions=1)
    _publish(store, _rows(1))
    monkeypatch.setattr(store, "_gc_local", lambda current_version, current_dir: None)  # the thread never ran
    writer = store.begin()
    writer.write_table(_rows(2), key="id")
    writer.commit(SCHEMA, background_gc=True)
    store.wait_gc()
    vdir = tmp_path / "raw" / "_versions" / "t"
    assert version_numbers(vdir) == [1, 2]
    assert _reader_view(tmp_path).sort_by("id").equals(_rows(2))
    fresh = _store(tmp_path, keep_versions=1)  # the next run
    _publish(fresh, _rows(3))
    assert version_numbers(vdir) == [3]
