"""Writes to sessions: the per-turn commit, deletion, pruning, notes, aliases.

Each returns a future that resolves once the write is durable. The per-turn
commit is a `SessionWrite` record the writer applies in bulk; it writes the
header and that one turn, so its cost does not depend on how long the history
is. The rarer writes are closures run in the writer's transaction.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence

import lmdb
import msgspec

from vigil.ports import UsageEntry
from vigil.store import keys, media_refs
from vigil.store.applier import Change, ReadWrite, SessionWrite
from vigil.store.core import RECOVER_NO, RECOVER_YES, StoreCore
from vigil.store.cursors import delete_prefix, items, keys_of, keys_under, prefixed, stored_header
from vigil.store.schema import Note, SessionHeader, Summary, Turn, UnreadableRecord, decode_conversation, encode
from vigil.store.wake import wake_at
from vigil.store.writer import WriteFuture
from vigil.store_port import ConversationMove

HEARTBEAT_OFF = b""
# Records one deletion transaction deletes at most: a turn committed meanwhile waits for one such chunk, and
# each is logged in the journal (vigil/store/applier.py's ReadWrite), not made durable by a sync of the store.
CHUNK = 2000


class SessionWrites(StoreCore):
    """Everything that changes a session's records."""

    def commit(self, header: SessionHeader, turn: Turn | None = None, usage: Sequence[UsageEntry] = (),
               new_members: Iterable[int] = (), create: bool = False,
               previous: SessionHeader | None = None, urgent: bool = True,
               consumed: Sequence[int] = (), summary: Summary | None = None,
               move: ConversationMove | None = None) -> WriteFuture:
        """Persist a session's header (and one turn, usage, membership) in one transaction.

        `create` says the header is new; otherwise the stored header must still be
        this incarnation, or the session was deleted elsewhere and SessionGone is raised.
        `previous` is the header as last committed: index flags are written only if they changed.
        `urgent` means the caller waits for it now: this thread then commits the queue itself.
        `consumed` are the arrival ids of inbox messages this header (or turn) now holds: they
        leave the inbox in the same transaction, and only if the commit is accepted.
        `summary` (a compaction's) is stored under the header's current generation in the same transaction.
        `move` (a /new or /resume) puts the conversation left in a record and deletes the resumed one's.
        """
        recover = None
        if previous is None or previous.needs_recovery != header.needs_recovery:
            recover = RECOVER_YES if header.needs_recovery else RECOVER_NO
        # The timer's index: when the session next needs waking, for a beat or a schedule (vigil/store/wake.py).
        wake = wake_at(header)
        heartbeat = None
        if previous is None or wake_at(previous) != wake:
            heartbeat = keys.time_value(wake) if wake is not None else HEARTBEAT_OFF
        record = SessionWrite(
            key=keys.session(header.key), incarnation=header.incarnation, create=create, header=encode(header),
            turn_key=keys.turn(header.key, header.generation, turn.seq) if turn is not None else None,
            turn=encode(turn) if turn is not None else None, recover=recover, heartbeat=heartbeat,
            members=tuple([keys.member(user, header.key) for user in new_members]) if new_members else (),
            usage=tuple(usage),
            consumed=tuple([keys.inbox(header.key, arrival) for arrival in consumed]) if consumed else (),
            summary_key=keys.summary(header.key, summary.generation, summary.upto) if summary is not None else None,
            summary=encode(summary) if summary is not None else None,
            conversations=_moved(header.key, move) if move is not None else ())
        return self.writer.submit_record(record, urgent)

    def delete_session(self, key: str, inbox_upto: int | None = None) -> WriteFuture:
        """Delete a session's header, every conversation's turns and records, notes and indexes (not its usage).

        Its received messages go too: all of them, or (from the session itself, which may have
        newer ones queued that must survive) those with an arrival id up to `inbox_upto`.
        A session of more than CHUNK turns loses them CHUNK per transaction first, oldest first (the
        caller waits for those), and the rest in one: a crash midway leaves it with its oldest turns
        gone, which the next deletion finishes.
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
                changes += [(b"members", k, None) for k in keys_of(txn.cursor(db=db[b"members"])) if k.endswith(suffix)]
            if header is not None:
                changes += [(b"members", keys.member(user, key), None) for user in header.participants]
            changes += [(name, header_key, None) for name in (b"sessions", b"recover", b"heartbeats")]
            turns = keys_under(txn, db[b"turns"], keys.turn_prefix(key))
            changes += [(b"turns", k, None) for k in turns]
            for name, prefix in ((b"summaries", keys.turn_prefix(key)),
                                 (b"conversations", keys.conversation_prefix(key)), (b"notes", keys.note_prefix(key))):
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

        return self.writer.submit_record(ReadWrite(plan))

    def prune_generations(self, key: str, before: float, generations: Collection[int] = ()) -> WriteFuture:
        """From another process: delete past conversations last active before `before`, and `generations`
        (judged old by vigil/expiry.py), each with its record, turns and summaries; never the current one,
        nothing of a pinned session. A record this vigil can't read is kept. Resolves to how many went."""
        db = self._db

        def judge(txn: lmdb.Transaction) -> set[int]:
            header = stored_header(txn, keys.session(key), db[b"sessions"])
            if header is None or header.pinned:
                return set()
            old = set(generations)
            for _, raw in prefixed(txn, db[b"conversations"], keys.conversation_prefix(key)):
                try:
                    past = decode_conversation(raw)
                except UnreadableRecord:
                    continue
                if max(past.ended_at, past.last_at) < before:
                    old.add(past.generation)
            return old

        done = WriteFuture()
        try:
            old = set(self._lmdb.read(judge))
            done.set_result(sum(self.drop_generation(key, generation).result() is not None for generation in old))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def drop_generation(self, key: str, generation: int) -> WriteFuture:
        """Delete one past conversation: its record, turns and summaries (and its files' references); resolves
        to the number of turns removed, or None if it is the current conversation (kept: the session moved on).

        Its record goes first, with up to CHUNK turns, then CHUNK turns per transaction (the caller waits for
        those), and its last turns, summaries and media references together: a crash midway leaves turns of
        no conversation, which vigil/expiry.py judges by their own times, and files they name are kept."""
        db = self._db
        prefix = keys.turn_prefix(key, generation)
        removed = 0
        first = True

        def plan(txn: lmdb.Transaction) -> tuple[list[Change], int | None]:
            changes: list[Change] = []
            if first:
                header = stored_header(txn, keys.session(key), db[b"sessions"])
                if header is not None and header.generation == generation:
                    return [], None
                changes.append((b"conversations", keys.conversation(key, generation), None))
            turns = keys_under(txn, db[b"turns"], prefix, CHUNK + 1)
            if len(turns) > CHUNK:
                return changes + [(b"turns", k, None) for k in turns[:CHUNK]], -CHUNK  # more to come
            changes += [(b"turns", k, None) for k in turns]
            changes += [(b"summaries", k, None) for k in keys_under(txn, db[b"summaries"], prefix)]
            changes += media_refs.drop(txn, db[b"media"], keys.session(key), generation, time.time())
            return changes, removed + len(turns)

        while True:
            future = self.writer.submit_record(ReadWrite(plan))
            taken = future.result()
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
            taken, more = self.writer.submit_record(ReadWrite(plan)).result()
            removed += taken
        return removed

    def mark_undelivered(self, key: str, seq: int) -> WriteFuture:
        """Note that turn `seq`'s reply may not have arrived (used at shutdown, when no session runs)."""
        db = self._db

        def op(txn: lmdb.Transaction) -> None:
            header_key = keys.session(key)
            header = stored_header(txn, header_key, db[b"sessions"])
            if header is None or seq in header.undelivered:
                return
            header = msgspec.structs.replace(header, undelivered=(*header.undelivered, seq)[-50:])
            txn.put(header_key, encode(header), db=db[b"sessions"])
            txn.put(header_key, RECOVER_YES, db=db[b"recover"])

        return self.writer.submit(op)

    def add_note(self, key: str, note: Note, keep: int) -> WriteFuture:
        """Append a note, dropping the oldest beyond `keep`."""
        db = self._db[b"notes"]
        prefix = keys.note_prefix(key)

        def op(txn: lmdb.Transaction) -> None:
            txn.put(keys.note(key, note.at), encode(note), db=db)
            cursor = txn.cursor(db=db)
            existing = []
            if cursor.set_range(prefix):
                for raw_key in keys_of(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    existing.append(raw_key)
            for old in existing[: max(0, len(existing) - keep)]:
                txn.delete(old, db=db)

        return self.writer.submit(op)

    def clear_notes(self, key: str) -> WriteFuture:
        return self.writer.submit(lambda txn: delete_prefix(txn, self._db[b"notes"], keys.note_prefix(key)))

    def set_alias(self, alias: str, canonical: str) -> WriteFuture:
        return self.writer.submit(lambda txn: txn.put(keys.session(alias), keys.session(canonical),
                                                      db=self._db[b"aliases"]))


def _moved(key: str, move: ConversationMove) -> tuple[tuple[bytes, bytes | None], ...]:
    """The conversation records a switch puts and deletes."""
    out: list[tuple[bytes, bytes | None]] = []
    if move.resumed is not None:
        out.append((keys.conversation(key, move.resumed), None))
    if move.left is not None:
        out.append((keys.conversation(key, move.left.generation), encode(move.left)))
    return tuple(out)

