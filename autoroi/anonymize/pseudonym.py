"""Keyed pseudonyms: HMAC-SHA256 under a secret key, never a plain hash.

A plain hash of a customer number can be reversed by hashing every possible
number; a keyed one cannot without the key. The same key gives the same
pseudonym (joins and repeat-purchase features keep working across runs); a
different key gives unrelated ones.

The message is ``"<column name>:<value>"``: ``dealer_id`` 7 gets the same
pseudonym in ``sales`` and in ``dealers``, but not the same as ``customer_id``
7. The digest is truncated to 128 bits (32 hex characters): collisions stay
negligible far beyond the number of customers a dealer group has (birthday
bound 2^64), and the strings are half as long.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autoroi.config import AnonymizeConfig
from autoroi.errors import AnonymizationError

MIN_KEY_BYTES = 32
PSEUDONYM_BYTES = 16  # 32 hex characters
_BLOCK = 64  # SHA-256 block size
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def load_hmac_key(cfg: AnonymizeConfig) -> bytes:
    """The pseudonymization key from the mounted file named in config
    (``anonymize.hmac_key_file``, a Kubernetes Secret volume) or else the
    environment variable (``anonymize.hmac_key_env``). Leading and trailing
    whitespace (a newline at the end of a file) is not part of the key.

    Missing, unreadable or shorter than 32 bytes: :class:`AnonymizationError`
    naming where the key was looked for; the key itself is never shown."""
    how = (
        "create one with e.g. `openssl rand -hex 32` and keep it: a new key gives new pseudonyms, "
        "so joins with data anonymized under the old key break"
    )
    if cfg.hmac_key_file is not None:
        where = f"file {cfg.hmac_key_file} (anonymize.hmac_key_file)"
        try:
            key = Path(cfg.hmac_key_file).read_bytes().strip()
        except OSError as e:
            raise AnonymizationError(
                f"the pseudonymization key cannot be read from {where}: {e.strerror}; "
                f"mount the Secret there or unset anonymize.hmac_key_file to use ${cfg.hmac_key_env}"
            ) from e
    else:
        where = f"environment variable {cfg.hmac_key_env} (anonymize.hmac_key_env)"
        value = os.environ.get(cfg.hmac_key_env)
        if not value or not value.strip():
            raise AnonymizationError(
                f"no pseudonymization key: set the {where} or mount a Secret file and name it in "
                f"anonymize.hmac_key_file; the key must hold at least {MIN_KEY_BYTES} bytes; {how}"
            )
        key = value.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise AnonymizationError(
            f"the pseudonymization key in the {where} is too short: {len(key)} bytes, at least "
            f"{MIN_KEY_BYTES} are needed; {how}"
        )
    return key


class Pseudonymizer:
    """HMAC-SHA256 with the key's inner and outer states computed once and
    copied per value (two SHA-256 blocks per value instead of four)."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise AnonymizationError(f"the pseudonymization key must hold at least {MIN_KEY_BYTES} bytes")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def pseudonyms(self, namespace: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """One pseudonym per element of ``values`` (meant to be distinct
        values: the caller maps rows to them), nulls stay null. Values are
        taken in their Arrow string form (integers as decimal digits)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        n = len(values)
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        messages = pc.cast(text, pa.binary()).to_pylist()
        inner = self._inner.copy()
        inner.update(namespace.encode("utf-8") + b":")
        inner_copy, outer_copy = inner.copy, self._outer.copy
        digests: list[bytes] = []
        append = digests.append
        empty = b"\0" * 32
        for m in messages:  # once per distinct value, not per row
            if m is None:
                append(empty)
                continue
            h = inner_copy()
            h.update(m)
            o = outer_copy()
            o.update(h.digest())
            append(o.digest())
        raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, 32)[:, :PSEUDONYM_BYTES]
        hexed = np.empty((n, 2 * PSEUDONYM_BYTES), dtype=np.uint8)
        hexed[:, 0::2] = _HEX[raw >> 4]
        hexed[:, 1::2] = _HEX[raw & 0x0F]
        width = 2 * PSEUDONYM_BYTES
        out: pa.Array
        if width * n < 2**31:
            offsets32 = np.arange(0, width * (n + 1), width, dtype=np.int32)
            out = pa.StringArray.from_buffers(n, pa.py_buffer(offsets32), pa.py_buffer(hexed.tobytes()))
        else:  # beyond 32-bit offsets (67 M distinct values)
            offsets64 = np.arange(0, width * (n + 1), width, dtype=np.int64)
            out = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets64), pa.py_buffer(hexed.tobytes()))
        if values.null_count:
            out = pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), out)
        return out
