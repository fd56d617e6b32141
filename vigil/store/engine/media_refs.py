"""Which stored files are still referenced: an index kept in the transactions that add and drop references.

A file in the media store (vigil/media/files.py) may be deleted only when no record names it any more: no
turn of any generation of any session, no input pending in a header, no message waiting in the inbox.
Reading every record to learn that costs a sweep time in proportion to the whole store; so the
references are indexed, in the `media` database (layouts in vigil/store/engine/keys.py):

- `r`/`d` pairs (session, generation, digest), put in the very transaction that writes a turn (its
  generation), a header (generation 0: its pending inputs) or an inbox entry (generation 0). Puts are
  idempotent: a turn rewritten (open, then final) or a header written at every turn adds nothing.
- Deleting a generation or a session deletes its pairs by range (no record is read: the `r` range says
  which files it named) and marks those files `z`, in the same transaction.
- A sweep looks only at the `z` files (and at new files the media store marked itself, see
  vigil/media/files.py): for each, one `d` range says whether any pair is left. Pairs of generation 0 can
  outlive what they stood for (a pending input answered, an inbox entry taken up): they are checked
  against the session's header and inbox bytes, and dropped if those no longer name the file.

Digests are found in the raw record bytes, not by decoding: an `Attachment` writes its digest as the
key "digest" and a 64-character MessagePack string of lowercase hex, which a substring search finds
(a record without attachments is skipped by one test for the tag "attachment"). So a record this vigil
cannot decode (written by a newer one, or damaged) still keeps its files: its pairs were put when it was
written, from its bytes, and the upgrade that built the index read every record's bytes the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import lmdb

from vigil.store.engine import keys
from vigil.store.engine.cursors import delete_prefix, items, keys_of, keys_under, prefixed

MARK = b"attachment"  # the tag every stored Attachment carries (vigil/records/schema.py)
_FIELD = b"\xa6digest\xd9\x40"  # its key "digest", then a str 8 of 64 bytes: the sha256 in hex
_HEX = re.compile(rb"[0-9a-f]{64}")
LIVE = 0  # the "generation" of a header's pending inputs and of the inbox
Change = tuple[bytes, bytes, bytes | None]
_MEDIA = b"media"


def digests_in(raw: bytes) -> list[bytes]:
    """The digests (raw 32 bytes) a record's bytes name; [] without a single attachment (one substring test)."""
    if MARK not in raw:
        return []
    found: set[bytes] = set()
    at = raw.find(_FIELD)
    while at >= 0:
        start = at + len(_FIELD)
        value = raw[start:start + 64]
        if _HEX.fullmatch(value):
            found.add(bytes.fromhex(value.decode()))
        at = raw.find(_FIELD, start)
    return list(found)


def pairs(key: bytes, generation: int, raw: bytes) -> list[Change]:
    """The index puts for a record of session `key` (encoded) in `generation` holding `raw`."""
    found = digests_in(raw)
    if not found:
        return []
    out: list[Change] = []
    for digest in found:
        out.append((_MEDIA, keys.ref(key, generation, digest), b""))
        out.append((_MEDIA, keys.by_digest(digest, key, generation), b""))
    return out


def drop(txn: lmdb.Transaction, db: Any, key: bytes, generation: int | None, at: float) -> list[Change]:
    """Deleting the pairs of session `key` (of one generation, or all) and marking their files `z`: the changes."""
    when = keys.time_value(at)
    out: list[Change] = []
    for raw in keys_under(txn, db, keys.ref_prefix(key, generation)):
        session, gen, digest = keys.parse_ref(raw)
        out += [(_MEDIA, raw, None), (_MEDIA, keys.by_digest(digest, session, gen), None),
                (_MEDIA, keys.suspect(digest), when)]
    return out


def suspects(txn: lmdb.Transaction, db: Any) -> dict[str, bytes]:
    """The files marked `z` (hex digest -> the mark's value, to delete it only if unchanged)."""
    return {raw[1:].hex(): value for raw, value in prefixed(txn, db, keys.SUSPECT)}


def names_live(txn: lmdb.Transaction, dbs: dict[bytes, Any], key: bytes, digest: str) -> bool:
    """Whether session `key`'s header or one of its inbox entries names `digest` now (raw bytes, not decoded)."""
    needle = digest.encode()
    header = txn.get(key, db=dbs[b"sessions"])
    if header is not None and needle in bytes(header):
        return True
    return any(needle in value for _, value in prefixed(txn, dbs[b"inbox"], key + keys.SEP))


def referenced(txn: lmdb.Transaction, dbs: dict[bytes, Any], digests: Iterable[str]) -> tuple[set[str], list[bytes]]:
    """Of `digests`, those a record names; and the generation-0 pairs found to stand for nothing any more."""
    db = dbs[_MEDIA]
    named: set[str] = set()
    stale: list[bytes] = []
    cursor = txn.cursor(db=db)
    for digest in digests:
        prefix = keys.BY_DIGEST + bytes.fromhex(digest)
        live: list[tuple[bytes, bytes]] = []
        if cursor.set_range(prefix):
            for raw in keys_of(cursor):
                if not raw.startswith(prefix):
                    break
                session, generation = keys.parse_by_digest(raw)
                if generation != LIVE:
                    named.add(digest)  # a turn names it: turns are deleted only with their pairs
                    break
                live.append((raw, session))
        if digest in named:
            continue
        for raw, session in live:
            if names_live(txn, dbs, session, digest):
                named.add(digest)
                break
            stale.append(raw)
    return named, stale


def settle(txn: lmdb.Transaction, dbs: dict[bytes, Any], looked_at: dict[str, bytes], stale: list[bytes]
           ) -> list[Change]:
    """After a sweep: drop the `z` marks it settled (unless marked again since) and the stale pairs (checked again
    here, in the writer's transaction: a message naming the file may have arrived since the sweep read)."""
    db = dbs[_MEDIA]
    out: list[Change] = []
    for digest, value in looked_at.items():
        mark = keys.suspect(bytes.fromhex(digest))
        now = txn.get(mark, db=db)
        if now is not None and bytes(now) == value:
            out.append((_MEDIA, mark, None))
    for raw in stale:
        session, generation = keys.parse_by_digest(raw)
        named = raw[1:1 + keys.DIGEST_SIZE]
        if not names_live(txn, dbs, session, named.hex()):
            out += [(_MEDIA, raw, None), (_MEDIA, keys.ref(session, generation, named), None)]
    return out


def indexed(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> set[str]:
    """Every file some pair names (what a backup must copy): one walk of the `d` range, not of the records."""
    return {raw[1:1 + keys.DIGEST_SIZE].hex() for raw in keys_under(txn, dbs[_MEDIA], keys.BY_DIGEST)}


SCANNED = (b"turns", b"sessions", b"inbox")  # turns; headers (pending inputs); received messages


def scan(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> set[str]:
    """Every digest named by a turn, a header or an inbox entry, reading every record (the upgrade's, and tests')."""
    found: set[str] = set()
    for name in SCANNED:
        cursor = txn.cursor(db=dbs[name])
        for value in cursor.iternext(keys=False, values=True):
            found.update(d.hex() for d in digests_in(bytes(value)))
    return found


def build(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> int:
    """Index every reference the records hold (the upgrade of a store of schema 1); pairs put."""
    db = dbs[_MEDIA]
    delete_prefix(txn, db, keys.REF)
    delete_prefix(txn, db, keys.BY_DIGEST)
    count = 0
    for raw_key, value in items(txn.cursor(db=dbs[b"turns"])):
        if MARK in value:
            generation, _ = keys.turn_position(raw_key)
            found = pairs(keys.turn_session(raw_key), generation, value)
            for _, entry, put in found:
                txn.put(entry, put or b"", db=db)
            count += len(found) // 2
    for name, session_of in ((b"sessions", bytes), (b"inbox", keys.inbox_session)):
        for raw_key, value in items(txn.cursor(db=dbs[name])):
            found = pairs(session_of(raw_key), LIVE, value)
            for _, entry, put in found:
                txn.put(entry, put or b"", db=db)
            count += len(found) // 2
    return count
