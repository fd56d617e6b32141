"""Deleting sessions and past conversations: in bounded, journaled transactions, one at a time.

A deletion is a `ReadWrite` (vigil/store/engine/applier.py): it reads what is under a session's or a
conversation's key prefix in the writer's transaction and deletes it there, and its changes are logged in
the journal like a turn's, rather than made durable by a checkpoint (a sync of the whole store that every
session's next commit would wait for). A transaction deletes at most CHUNK turns, a few milliseconds' work,
and deletions take turns (`_DELETIONS`, per chunk): however many sessions a retention pass or a cleanup
deletes, a turn committed meanwhile shares its transaction with one chunk at most.

What a crash midway leaves, and who finishes it:
- a session loses its turns CHUNK at a time, oldest first, and its header, records, notes, inbox entries
  and media references last, together: a crash leaves it with its oldest turns gone (the next
  deletion, or retention, finishes it);
- a past conversation too large for one transaction is first marked `deleting` in its record (so `/resume`
  no longer offers it, and a resume racing the deletion is refused: vigil/store/engine/applier.py checks the
  record in the resume's transaction), then loses its turns, then its last turns with its record,
  summaries and media references: a crash leaves a record marked `deleting` with some of its turns, which
  vigil/policy/expiry.py judges old, so the next cleanup or retention pass finishes it; its files stay until
  then. Every stored turn of a past conversation therefore always has its record.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

import lmdb
import msgspec

from vigil.records.schema import UnreadableRecord, decode_conversation, encode
from vigil.store.core import StoreCore
from vigil.store.engine import keys, media_refs
from vigil.store.engine.applier import Change, ReadWrite
from vigil.store.engine.cursors import items, keys_of, keys_under, prefixed, stored_header
from vigil.store.engine.writer import WriteFuture

CHUNK = 100
_DELETIONS = threading.Lock()


class SessionDeletes(StoreCore):
    """Deleting a session, or some of its past conversations."""

    def _one(self, plan: Callable[[lmdb.Transaction], tuple[list[Change], Any]], *warm: bytes) -> WriteFuture:
        """One deletion transaction, once no other is under way; returned once it is durable (or refused).

        The turns under the `warm` prefixes it will delete (CHUNK at most) are read first, outside the writer:
        LMDB reads a large value's first page to free it, and old turns are the pages least likely to be in
        memory; read here, the disk is waited for by the deleting thread, not by every chat's next commit."""
        if warm:
            self._lmdb.read(lambda txn: _touch(txn, self._db[b"turns"], warm))
        with _DELETIONS:
            future = self.writer.submit_record(ReadWrite(plan))
            with contextlib.suppress(Exception):  # its outcome is the caller's to read, from the future
                future.result()
        return future

    def delete_session(self, key: str, inbox_upto: int | None = None) -> WriteFuture:
        """Delete a session's header, every conversation's turns and records, notes and indexes (not its usage);
        resolves to the number of turns removed. The caller waits while a large session's turns go.

        Its received messages go too: all of them, or (from the session itself, which may have
        newer ones queued that must survive) those with an arrival id up to `inbox_upto`.
        """
        db = self._db
        header_key = keys.session(key)
        before = self._turn_chunks(keys.turn_prefix(key))

        def plan(txn: lmdb.Transaction) -> tuple[list[Change], int]:
            self._applier.forget(header_key)
            changes: list[Change] = []
            try:
                header = stored_header(txn, header_key, db[b"sessions"])
            except UnreadableRecord:
                # Deleting is how an operator gets rid of an unreadable record: find its members without it.
                suffix = keys.SEP + header_key
                header = None
                changes += [(b"members", k, None) for k in keys_of(txn.cursor(db=db[b"members"]))
                            if k.endswith(suffix)]
            if header is not None:
                changes += [(b"members", keys.member(user, key), None) for user in header.participants]
            changes += [(name, header_key, None) for name in (b"sessions", b"recover", b"heartbeats")]
            turns = keys_under(txn, db[b"turns"], keys.turn_prefix(key))
            changes += [(b"turns", k, None) for k in turns]
            for name, prefix in ((b"summaries", keys.turn_prefix(key)), (b"notes", keys.note_prefix(key)),
                                 (b"conversations", keys.conversation_prefix(key))):
                changes += [(name, k, None) for k in keys_under(txn, db[name], prefix)]
            last = None if inbox_upto is None else keys.inbox(key, inbox_upto)
            inbox = prefixed(txn, db[b"inbox"], keys.inbox_prefix(key))
            changes += [(b"inbox", k, None) for k, _ in inbox if last is None or k <= last]
            changes += media_refs.drop(txn, db[b"media"], header_key, None, time.time())
            # Messages queued behind the deletion stay in the inbox, and go on naming their files.
            for _, value in (entry for entry in inbox if last is not None and entry[0] > last):
                changes += media_refs.pairs(header_key, media_refs.LIVE, value)
            changes += [(b"aliases", k, None) for k, v in items(txn.cursor(db=db[b"aliases"])) if v == header_key]
            return changes, before + len(turns)

        return self._one(plan, keys.turn_prefix(key))

    def prune_generations(self, key: str, before: float, generations: Collection[int] = ()) -> WriteFuture:
        """Delete past conversations last active before `before` (by their records, as vigil/policy/expiry.py judges),
        and `generations`; never the current one, nothing of a pinned session, no record this vigil can't read.
        Resolves to how many went."""
        db = self._db

        def judge(txn: lmdb.Transaction) -> dict[int, int]:
            header = stored_header(txn, keys.session(key), db[b"sessions"])
            if header is None or header.pinned:
                return {}
            sizes: dict[int, int] = {}  # the old ones, with their turns as their records say
            for _, raw in prefixed(txn, db[b"conversations"], keys.conversation_prefix(key)):
                try:
                    past = decode_conversation(raw)
                except UnreadableRecord:
                    continue
                if past.deleting or past.generation in generations or max(past.ended_at, past.last_at) < before:
                    sizes[past.generation] = past.turns
            return sizes

        done = WriteFuture()
        try:
            sizes = self._lmdb.read(judge)
            gone = 0
            for group in _groups(sizes):
                if len(group) == 1 and sizes[group[0]] > CHUNK:
                    gone += self.drop_generation(key, group[0]).result() is not None
                    continue
                taken, rest = self._one(partial(self._whole, key=key, generations=group),
                                        *(keys.turn_prefix(key, generation) for generation in group)).result()
                gone += taken
                gone += sum(self.drop_generation(key, generation).result() is not None for generation in rest)
            done.set_result(gone)
        except Exception as exc:
            done.set_exception(exc)
        return done

    def _whole(self, txn: lmdb.Transaction, key: str, generations: list[int]
               ) -> tuple[list[Change], tuple[int, list[int]]]:
        """Small past conversations deleted whole in one transaction, CHUNK turns in all at most: (changes,
        (how many, those left for one at a time: more turns than their records said, or current now))."""
        db = self._db
        header = stored_header(txn, keys.session(key), db[b"sessions"])
        changes: list[Change] = []
        budget = CHUNK
        for index, generation in enumerate(generations):
            prefix = keys.turn_prefix(key, generation)
            turns = keys_under(txn, db[b"turns"], prefix, budget + 1)
            if len(turns) > budget or (header is not None and header.generation == generation):
                return changes, (index, generations[index:])
            budget -= len(turns)
            changes += [(b"conversations", keys.conversation(key, generation), None)]
            changes += [(b"turns", k, None) for k in turns]
            changes += [(b"summaries", k, None) for k in keys_under(txn, db[b"summaries"], prefix)]
            changes += media_refs.drop(txn, db[b"media"], keys.session(key), generation, time.time())
        return changes, (len(generations), [])

    def drop_generation(self, key: str, generation: int) -> WriteFuture:
        """Delete one past conversation: its record, turns and summaries (and its files' references); resolves
        to the number of turns removed, or None if it is the current conversation (kept: the session moved on).
        The caller waits while a large conversation's turns go."""
        db = self._db
        prefix = keys.turn_prefix(key, generation)
        removed = 0
        first = True

        def plan(txn: lmdb.Transaction) -> tuple[list[Change], int | None]:
            record = keys.conversation(key, generation)
            if first:
                header = stored_header(txn, keys.session(key), db[b"sessions"])
                if header is not None and header.generation == generation:
                    return [], None
            turns = keys_under(txn, db[b"turns"], prefix, CHUNK + 1)
            if len(turns) > CHUNK:  # more to come: marked, so that no one resumes half a conversation
                marked = _marked(txn, db[b"conversations"], record) if first else []
                return marked + [(b"turns", k, None) for k in turns[:CHUNK]], -CHUNK
            changes: list[Change] = [(b"conversations", record, None)]
            changes += [(b"turns", k, None) for k in turns]
            changes += [(b"summaries", k, None) for k in keys_under(txn, db[b"summaries"], prefix)]
            changes += media_refs.drop(txn, db[b"media"], keys.session(key), generation, time.time())
            return changes, removed + len(turns)

        while True:
            future = self._one(plan, prefix)
            try:
                taken = future.result()
            except Exception:
                return future  # refused (a header this vigil can't read): the caller reads why
            if taken is None or taken >= 0:
                return future
            removed -= taken
            first = False

    def _turn_chunks(self, prefix: bytes) -> int:
        """Delete turns under `prefix`, CHUNK per transaction, while more than CHUNK are left; how many went."""
        db = self._db[b"turns"]

        def plan(txn: lmdb.Transaction) -> tuple[list[Change], tuple[int, bool]]:
            turns = keys_under(txn, db, prefix, 2 * CHUNK + 1)
            if len(turns) <= CHUNK:
                return [], (0, False)
            return [(b"turns", k, None) for k in turns[:CHUNK]], (CHUNK, len(turns) > 2 * CHUNK)

        removed, more = 0, True
        while more:
            taken, more = self._one(plan, prefix).result()
            removed += taken
        return removed


def _marked(txn: lmdb.Transaction, db: Any, record_key: bytes) -> list[Change]:
    """The record rewritten as `deleting` (one this vigil can't read is deleted instead: it is going anyway)."""
    raw = txn.get(record_key, db=db)
    if raw is None:
        return []
    try:
        record = decode_conversation(bytes(raw))
    except UnreadableRecord:
        return [(b"conversations", record_key, None)]
    return [(b"conversations", record_key, encode(msgspec.structs.replace(record, deleting=True)))]


def _groups(sizes: dict[int, int]) -> list[list[int]]:
    """Conversations to delete, in generation order, grouped so that each group holds CHUNK turns at most (a
    larger one alone): a retention pass over hundreds of small ones then takes few transactions."""
    groups: list[list[int]] = []
    room = 0
    for generation in sorted(sizes):
        if sizes[generation] > CHUNK or not groups or sizes[generation] > room:
            groups.append([generation])
            room = CHUNK - sizes[generation]
        else:
            groups[-1].append(generation)
            room -= sizes[generation]
    return groups


def _touch(txn: lmdb.Transaction, db: Any, prefixes: tuple[bytes, ...]) -> int:
    """Read the first CHUNK turns under these prefixes (their pages into memory); how many bytes."""
    read = count = 0
    cursor = txn.cursor(db=db)
    for prefix in prefixes:
        if not cursor.set_range(prefix):
            break
        for raw_key, value in cursor:
            if not bytes(raw_key).startswith(prefix) or count >= CHUNK:
                break
            read += len(value)
            count += 1
    return read
