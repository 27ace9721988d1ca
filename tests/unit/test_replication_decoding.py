"""The pieces of delete capture by logical decoding that need no server: LSNs,
slot names, the two output formats, and which transactions a snapshot sees."""

from __future__ import annotations

import struct

import pytest

from autoroi.config import load_config
from autoroi.errors import ConfigError
from autoroi.replication.logical import (
    _Invisible,
    _PgOutput,
    _TestDecoding,
    default_slot_name,
    lsn_int,
    lsn_str,
)


def test_lsn_text_round_trip() -> None:
    for text in ("0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert lsn_str(lsn_int(text)) == text
    assert lsn_int("1/0") == 1 << 32
    assert lsn_int("0/16B3748") < lsn_int("1/0")


def test_default_slot_name_is_valid_and_differs_per_lake_and_database() -> None:
    a = default_slot_name("/data/lake", "dms")
    assert a == default_slot_name("/data/lake", "dms")
    assert len({a, default_slot_name("/data/other", "dms"), default_slot_name("/data/lake", "dms2")}) == 3
    cfg = load_config(overrides={"replication": {"slot_name": a}})
    assert cfg.replication.slot_name == a
    with pytest.raises(ConfigError, match="slot_name"):
        load_config(overrides={"replication": {"slot_name": "Not-A-Slot"}})
    with pytest.raises(ConfigError, match="delete_capture"):
        load_config(overrides={"replication": {"delete_capture": "sometimes"}})


def _cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def _relation(oid: int, schema: str, table: str, columns: list[str]) -> bytes:
    out = (
        b"R" + struct.pack("!I", oid) + _cstr(schema) + _cstr(table) + b"d" + struct.pack("!H", len(columns))
    )
    for i, c in enumerate(columns):
        out += struct.pack("!B", 1 if i == 0 else 0) + _cstr(c) + struct.pack("!Ii", 20, -1)
    return out


def _delete(oid: int, values: list[str | None], kind: bytes = b"K") -> bytes:
    out = b"D" + struct.pack("!I", oid) + kind + struct.pack("!H", len(values))
    for v in values:
        out += b"n" if v is None else b"t" + struct.pack("!I", len(v)) + v.encode()
    return out


def test_pgoutput_deletes_and_truncates_by_transaction() -> None:
    begin = b"B" + struct.pack("!QqI", 0x100, 0, 7)
    commit = b"C\0" + struct.pack("!QQq", 0x200, 0x230, 0)
    rows = [
        ("0/100", "7", begin),
        ("0/100", "7", _relation(1, "public", "sales", ["sale_id", "dealer_id", "vin"])),
        ("0/110", "7", _delete(1, ["42", None, None])),
        ("0/120", "7", _relation(2, "public", "notes", ["body", "note_id"])),
        ("0/130", "7", _delete(2, ["x y", "9"], b"O")),  # replica identity full: the whole row
        ("0/140", "7", _relation(3, "other", "sales", ["sale_id"])),
        ("0/150", "7", _delete(3, ["1"])),  # another schema: not followed
        ("0/230", "7", commit),
        ("0/300", "8", b"B" + struct.pack("!QqI", 0x300, 0, 8)),
        ("0/300", "8", b"T" + struct.pack("!IB", 2, 0) + struct.pack("!II", 1, 2)),
        ("0/330", "8", b"C\0" + struct.pack("!QQq", 0x300, 0x330, 0)),
        ("0/400", "9", b"B" + struct.pack("!QqI", 0x400, 0, 9)),  # nothing of ours: left out
        ("0/430", "9", b"C\0" + struct.pack("!QQq", 0x400, 0x430, 0)),
    ]
    txns = _PgOutput({"public.sales": "sale_id", "public.notes": "note_id"}).transactions(rows)
    assert [(t.xid, t.end) for t in txns] == [(7, 0x230), (8, 0x330)]
    assert txns[0].deletes == [("public.sales", 42), ("public.notes", 9)]
    assert txns[1].truncates == {"public.sales", "public.notes"}


def test_test_decoding_lines() -> None:
    rows = [
        ("0/110", "7", "table public.sales: DELETE: sale_id[bigint]:42"),
        ("0/120", "7", 'table public."Odd Name": DELETE: "Key"[integer]:-5'),
        ("0/130", "7", "table public.notes: DELETE: body[text]:'a sale_id[bigint]:1' note_id[integer]:9"),
        ("0/140", "7", "table public.regions: DELETE: region_id[integer]:3"),  # not followed
        ("0/230", "7", "COMMIT"),
        ("0/300", "8", 'table public.sales, public."Odd Name": TRUNCATE: (no-flags)'),
        ("0/330", "8", "COMMIT"),
    ]
    keys = {"public.sales": "sale_id", "public.Odd Name": "Key", "public.notes": "note_id"}
    txns = _TestDecoding(keys).transactions(rows)
    assert [(t.xid, t.end) for t in txns] == [(7, 0x230), (8, 0x330)]
    assert txns[0].deletes == [("public.sales", 42), ("public.Odd Name", -5), ("public.notes", 9)]
    assert txns[1].truncates == {"public.sales", "public.Odd Name"}


def test_snapshot_visibility_of_32_bit_transaction_ids() -> None:
    seen = _Invisible("100:110:103,105")
    assert not seen(99) and not seen(102) and not seen(109)
    assert seen(103) and seen(105)  # in progress when the snapshot was taken
    assert seen(110) and seen(200)  # started after it
    # across a wraparound of the 32-bit counter: epoch 1
    base = 1 << 32
    seen = _Invisible(f"{base - 5}:{base + 3}:{base + 1}")
    assert not seen(2**32 - 6) and not seen(2**32 - 1) and not seen(0) and not seen(2)
    assert seen(1) and seen(3) and seen(4)
