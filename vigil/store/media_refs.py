"""Which stored files are still referenced: the read a media sweep depends on.

A file in the media store (vigil/media.py) may be deleted only when no record names it any more: no
turn of any generation of any session, no input pending in a header, no message waiting in the inbox.
All three are read in one LMDB read transaction, so a message moving from the inbox into its
session's header or turn (one write transaction) is seen in exactly one of the places, never missed.

Digests are found in the raw record bytes (a sha256 is 64 lowercase hex characters, stored as a
MessagePack string), not by decoding: a record this vigil cannot decode (written by a newer one, or
damaged) still keeps its files, and a record without attachments is skipped by one substring test.
A digest that happens to appear in some text only keeps a file longer: a sweep errs towards keeping.
"""

from __future__ import annotations

import re
from typing import Any

import lmdb

_MARK = b"attachment"  # the tag every stored Attachment carries (vigil/store/schema.py)
_DIGEST = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
SCANNED = (b"turns", b"sessions", b"inbox")  # turns; headers (pending inputs); received messages


def scan(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> set[str]:
    """Every digest named by a turn, a header or an inbox entry, as of this transaction."""
    found: set[str] = set()
    for name in SCANNED:
        cursor = txn.cursor(db=dbs[name])
        for value in cursor.iternext(keys=False, values=True):
            raw = bytes(value)
            if _MARK in raw:
                found.update(match.decode() for match in _DIGEST.findall(raw))
    return found
