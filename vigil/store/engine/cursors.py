"""Small cursor and transaction helpers shared by the store's reads and writes.

Values come back as `bytes` (transactions are opened with buffers=False), so
callers never hold a buffer into LMDB's map past the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import lmdb

from vigil.records.schema import SessionHeader, decode_header


def get(txn: lmdb.Transaction, key: bytes, db: Any) -> bytes | None:
    # Transactions are opened with buffers=False, so values are bytes; bytes() of bytes is free.
    value = txn.get(key, db=db)
    return None if value is None else bytes(value)


def stored_header(txn: lmdb.Transaction, header_key: bytes, db: Any) -> SessionHeader | None:
    stored = get(txn, header_key, db)
    return None if stored is None else decode_header(stored)


def items(cursor: lmdb.Cursor) -> Iterator[tuple[bytes, bytes]]:
    for key, value in cursor.iternext(keys=True, values=True):
        yield bytes(key), bytes(value)


def pairs(cursor: lmdb.Cursor) -> Iterator[tuple[bytes, bytes]]:
    """`items` without a Python generator in between: for scans over every session (start-up's)."""
    return cast("Iterator[tuple[bytes, bytes]]", cursor.iternext(keys=True, values=True))


def keys_of(cursor: lmdb.Cursor) -> Iterator[bytes]:
    for key in cursor.iternext(keys=True, values=False):
        yield bytes(key)


def prefixed(txn: lmdb.Transaction, db: Any, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs whose key starts with `prefix`, in key order, read in full (the caller may write)."""
    out: list[tuple[bytes, bytes]] = []
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for raw_key, value in items(cursor):
            if not raw_key.startswith(prefix):
                break
            out.append((raw_key, value))
    return out


def keys_under(txn: lmdb.Transaction, db: Any, prefix: bytes, limit: int | None = None,
               last: bytes | None = None) -> list[bytes]:
    """The keys that start with `prefix` (at most `limit`; those sorting at or before `last`, if given)."""
    out: list[bytes] = []
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for raw_key in keys_of(cursor):
            if not raw_key.startswith(prefix) or (last is not None and raw_key > last):
                break
            out.append(raw_key)
            if limit is not None and len(out) >= limit:
                break
    return out


def generations_under(txn: lmdb.Transaction, db: Any, prefix: bytes) -> list[int]:
    """The generations that have keys under a session's prefix (`<key> NUL`) of turns: one seek each."""
    found: list[int] = []
    cursor = txn.cursor(db=db)
    position = prefix
    while cursor.set_range(position) and bytes(cursor.key()).startswith(prefix):
        generation = int.from_bytes(bytes(cursor.key())[len(prefix):len(prefix) + 4], "big")
        found.append(generation)
        position = prefix + (generation + 1).to_bytes(4, "big")
    return found


def delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes, last: bytes | None = None) -> int:
    """Delete the keys that start with `prefix` (and sort at or before `last`, if given)."""
    cursor = txn.cursor(db=db)
    removed = 0
    if not cursor.set_range(prefix):
        return 0
    while bytes(cursor.key()).startswith(prefix) and (last is None or bytes(cursor.key()) <= last):
        removed += 1
        if not cursor.delete():
            break
    return removed
