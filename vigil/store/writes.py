"""Writes to sessions: the per-turn commit, notes, aliases, undelivered replies (deletions: `deletes`).

Each returns a future that resolves once the write is durable. The per-turn
commit is a `SessionWrite` record the writer applies in bulk; it writes the
header and that one turn, so its cost does not depend on how long the history
is. The rarer writes are closures run in the writer's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import lmdb
import msgspec

from vigil.ports import UsageEntry
from vigil.ports.store import ConversationMove
from vigil.records.schema import Note, SessionHeader, Summary, Turn, encode
from vigil.records.wake import wake_at
from vigil.store.core import RECOVER_NO, RECOVER_YES, StoreCore
from vigil.store.engine import keys
from vigil.store.engine.applier import SessionWrite
from vigil.store.engine.cursors import delete_prefix, keys_of, stored_header
from vigil.store.engine.writer import WriteFuture

HEARTBEAT_OFF = b""


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
        # The timer's index: when the session next needs waking, for a beat or a schedule (vigil/records/wake.py).
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
            conversations=_moved(header.key, move) if move is not None else (),
            requires=None if move is None or move.resumed is None else keys.conversation(header.key, move.resumed))
        return self.writer.submit_record(record, urgent)

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

