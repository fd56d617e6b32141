"""A store of an earlier schema is brought to this one in place, once, when it is opened.

Schema 1 to 2: each header's list of past conversations (`past_generations`, carried by every turn's
commit) becomes one `Conversation` record per conversation, and the header is written again without it;
a generation whose turns are stored but that no header listed (an earlier build capped the list) gets a
record too, from its turns, so that every past conversation has one from now on. The media references
are indexed from every record's bytes (vigil/store/engine/media_refs.py), and every file of the media store is
marked for the next sweep to look at (files nothing names, left by a crash or a refused upload, then go).

Durably and whole: the upgrade is one write transaction through the store's writer, made durable as any
other (a checkpoint, vigil/store/engine/journal.py), and the meta record's schema moves to 2 in it. A crash
during it leaves schema 1 (the next open upgrades again, from the start) or schema 2; an open of a store
of schema 2 reads one record and does nothing.

Alone: an older vigil running on the same store would go on writing headers with the list and references
the index doesn't know. So the upgrade runs only while no other process has the store open, and holds it
so until it is done (a process opening it meanwhile waits, then finds schema 2: an older vigil refuses it,
"written by a newer vigil"); if another one has it open, the open is refused with what to do.
"""

from __future__ import annotations

import time
from typing import Any

import lmdb
import msgspec

from vigil.logs import get_logger
from vigil.media.files import MediaStore
from vigil.records.conversations import title_from
from vigil.records.schema import (
    Conversation,
    StoreMeta,
    Turn,
    UnreadableRecord,
    decode_header,
    decode_meta,
    decode_turn,
    encode,
)
from vigil.store.core import StoreCore
from vigil.store.engine import keys, media_refs
from vigil.store.engine.cursors import generations_under, get, items
from vigil.store.engine.lmdb_env import StoreError

META_KEY = b"store"  # the meta record's key (vigil/store/core.py writes it first)


class GenerationInfo(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type",
                     tag="generation"):
    """A past conversation as headers listed them (`past_generations`) in stores of schema 1."""

    generation: int
    turns: int
    started_at: float
    ended_at: float  # when it was last left
    title: str = ""
    window_start: int = 0
    last_at: float = 0.0  # its last turn (0 in records from before /resume: ended_at stands in)


class _Listed(msgspec.Struct):
    """What a schema-1 header listed; the rest of its fields are the header's own."""

    past_generations: tuple[GenerationInfo, ...] = ()


_LISTED = msgspec.msgpack.Decoder(_Listed)


def upgrade(store: StoreCore) -> None:
    """Bring the store to `StoreMeta.CURRENT`, if it is older (one read when it is not)."""
    if _schema(store) >= StoreMeta.CURRENT:
        return
    with store.environment.alone() as alone:
        if not alone:
            raise StoreError(f"the store at {store.data_dir} is in an earlier format that this vigil upgrades when it "
                             "opens it, which needs the store to itself: another process has it open (an older "
                             "vigil still running?). Stop it, then start this vigil again.")
        if _schema(store) >= StoreMeta.CURRENT:
            return
        started = time.monotonic()
        files = list(MediaStore(store.data_dir / "media").digests())
        counts = store.writer.write(lambda txn: _to_2(txn, store.environment.dbs, files, time.time()))
        get_logger(__name__).info("store.upgraded", schema=StoreMeta.CURRENT, ms=round((time.monotonic() - started)
                                                                                      * 1000), **counts)


def _schema(store: StoreCore) -> int:
    raw = store.read(lambda txn: get(txn, META_KEY, store.environment.dbs[b"meta"]))
    return 1 if raw is None else decode_meta(raw).schema


def _to_2(txn: lmdb.Transaction, dbs: dict[bytes, Any], files: list[str], now: float) -> dict[str, int]:
    sessions = conversations = 0
    for raw_key, value in list(items(txn.cursor(db=dbs[b"sessions"]))):
        try:
            header = decode_header(value)
            listed = _LISTED.decode(value).past_generations
        except (UnreadableRecord, msgspec.DecodeError):
            continue  # refused as before, and deleted whole some day: nothing of it can be judged here
        records = {info.generation: _from_listed(txn, dbs, header.key, info) for info in listed
                   if info.generation != header.generation}
        for generation in generations_under(txn, dbs[b"turns"], keys.turn_prefix(header.key)):
            if generation != header.generation and generation not in records:
                records[generation] = _from_turns(txn, dbs, header.key, generation, now)
        for generation, record in records.items():
            txn.put(keys.conversation(header.key, generation), encode(record), db=dbs[b"conversations"])
        if listed:
            txn.put(raw_key, encode(header), db=dbs[b"sessions"])  # decoded without the list: written without it
        sessions += 1
        conversations += len(records)
    pairs = media_refs.build(txn, dbs)
    mark = keys.time_value(now)
    for digest in files:
        txn.put(keys.suspect(bytes.fromhex(digest)), mark, db=dbs[b"media"])
    raw_meta = get(txn, META_KEY, dbs[b"meta"])
    meta = decode_meta(raw_meta) if raw_meta is not None else StoreMeta(created_at=now)
    txn.put(META_KEY, encode(msgspec.structs.replace(meta, schema=StoreMeta.CURRENT)), db=dbs[b"meta"])
    return {"sessions": sessions, "conversations": conversations, "media_pairs": pairs, "media_files": len(files)}


def _ends(txn: lmdb.Transaction, dbs: dict[bytes, Any], key: str, generation: int
          ) -> tuple[tuple[Turn | None, Turn | None] | None, int]:
    """The first and last turns of a generation (None for one that can't be read) and the last one's seq;
    (None, 0) if it has none."""
    prefix = keys.turn_prefix(key, generation)
    cursor = txn.cursor(db=dbs[b"turns"])
    if not cursor.set_range(prefix) or not bytes(cursor.key()).startswith(prefix):
        return None, 0
    first = bytes(cursor.value())
    if not cursor.set_range(keys.turn_prefix(key, generation + 1)):
        cursor.last()
    else:
        cursor.prev()
    last_seq = keys.turn_position(bytes(cursor.key()))[1]
    return (_decoded(first), _decoded(bytes(cursor.value()))), last_seq


def _decoded(raw: bytes) -> Turn | None:
    try:
        return decode_turn(raw)
    except UnreadableRecord:
        return None


def _from_listed(txn: lmdb.Transaction, dbs: dict[bytes, Any], key: str, info: GenerationInfo) -> Conversation:
    last_at = info.last_at
    if not last_at:  # listed before /resume kept it: its last turn says
        ends, _ = _ends(txn, dbs, key, info.generation)
        last = ends[1] if ends is not None else None
        last_at = (last.ended_at or last.started_at) if last is not None else 0.0
    return Conversation(generation=info.generation, turns=info.turns, started_at=info.started_at,
                        ended_at=info.ended_at, title=info.title, window_start=info.window_start, last_at=last_at)


def _from_turns(txn: lmdb.Transaction, dbs: dict[bytes, Any], key: str, generation: int, now: float) -> Conversation:
    """A record for a generation nobody listed, from its turns (a turn this vigil can't read counts as new)."""
    ends, last_seq = _ends(txn, dbs, key, generation)
    first, last = ends if ends is not None else (None, None)
    started = first.started_at if first is not None else now
    ended = (last.ended_at or last.started_at) if last is not None else now
    title = next((t for t in (title_from(i.text) for i in first.inputs) if t), "") if first is not None else ""
    return Conversation(generation=generation, turns=last_seq + 1, started_at=started, ended_at=ended, title=title,
                        last_at=ended)
