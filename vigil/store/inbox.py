"""The store's inbox: received messages wait here until the session commit that takes them up deletes them.

A message is put in on arrival (`receive`, an `InboxWrite` record the writer
applies in bulk) and leaves in the same transaction as the session commit that
makes it part of the session's state (`SessionWrite.consumed`), or through
`consume` when it was handled without one; so a crash loses no message and
answers none twice. `vigil.intake.inbox` is the side that stamps arrival ids and
hands the messages to the sessions; this module is what it stores.

It also keeps which Telegram updates were taken in (`updates`, by update id): the mark is written in
the transaction that makes the update's message durable, so an update Telegram delivers again (vigil
died before its answer left, or before the next getUpdates confirmed it) is recognised and not answered
twice. An update whose message is not durable yet but must be confirmed (an album part waiting for its
album, a file still downloading, a slow handler) is kept as it came in `held` until then; marking the
update drops that copy in the same transaction, so after a crash a held copy means: take it up again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import lmdb

from vigil.logs import get_logger
from vigil.records.held import HeldUpdate, decode_held
from vigil.records.schema import InboxEntry, UnreadableRecord, decode_inbox, encode
from vigil.store.core import StoreCore
from vigil.store.engine import keys
from vigil.store.engine.applier import Change, InboxWrite
from vigil.store.engine.cursors import items, keys_of
from vigil.store.engine.writer import WriteFuture


class StoreInbox(StoreCore):
    """Received messages no session has taken up yet."""

    def inbox(self) -> list[tuple[int, InboxEntry]]:
        """Every received message no session has taken up yet, as (arrival id, entry), in arrival order.

        A record that cannot be read (written by a newer vigil, or damaged) is left where it is and
        named in the log; it goes when its session is deleted.
        """
        raw = self._lmdb.read(lambda txn: list(items(txn.cursor(db=self._db[b"inbox"]))))
        entries: list[tuple[int, InboxEntry]] = []
        for raw_key, value in raw:
            key, arrival = keys.inbox_position(raw_key)
            try:
                entries.append((arrival, decode_inbox(value)))
            except Exception as exc:
                get_logger(__name__).error("store.inbox_unreadable", session=key, arrival=arrival,
                                           error=str(exc))
        entries.sort(key=lambda item: item[0])
        return entries

    def inbox_count(self, key: str | None = None) -> int:
        """How many received messages wait in the inbox (of one session, or of all)."""
        inbox = self._db[b"inbox"]
        if key is None:
            return int(self._lmdb.read(lambda txn: txn.stat(inbox)["entries"]))
        prefix = keys.inbox_prefix(key)

        def count(txn: lmdb.Transaction) -> int:
            cursor = txn.cursor(db=inbox)
            found = 0
            if cursor.set_range(prefix):
                for raw_key in keys_of(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    found += 1
            return found

        return int(self._lmdb.read(count))

    def receive(self, arrival: int, entry: InboxEntry, updates: Sequence[int] = ()) -> WriteFuture:
        """Put a received message in the inbox. Nobody needs to wait: the writer commits it within
        milliseconds (the future says when, for a caller that must know, such as a webhook's answer).

        `updates`: the Telegram updates it came in, marked as taken in the same transaction."""
        return self.writer.submit_record(InboxWrite(keys.inbox(entry.key, arrival), encode(entry), _taken(updates)),
                                         urgent=False)

    # ------------------------------------------------------------------ Telegram updates taken

    def update_taken(self, update_id: int) -> bool:
        """Whether a Telegram update was taken in before: marked (its message durable, or deliberately
        nothing), or held to be taken up."""
        key = keys.update(update_id)
        marks, held = self._db[b"updates"], self._db[b"held"]
        return bool(self._lmdb.read(lambda txn: txn.get(key, db=marks) is not None
                                    or txn.get(key, db=held) is not None))

    def mark_updates(self, updates: Sequence[int]) -> WriteFuture:
        """Mark updates as taken that left nothing in the inbox (a command answered, a refusal); drops their
        held copies."""
        return self.writer.submit_record(InboxWrite(None, None, _taken(updates)))

    def hold_update(self, update_id: int, held: HeldUpdate) -> WriteFuture:
        """Keep an update as it came until what it becomes is durable (then `receive` or `mark_updates`
        drops it in the same transaction as the mark)."""
        return self.writer.submit_record(InboxWrite(None, None, ((b"held", keys.update(update_id), encode(held)),)))

    def held_updates(self) -> list[tuple[int, HeldUpdate]]:
        """The updates held and not taken yet, in update order: what a restart takes up again.

        A record that cannot be read (written by a newer vigil, or damaged) is named in the log and left.
        """
        raw = self._lmdb.read(lambda txn: list(items(txn.cursor(db=self._db[b"held"]))))
        held: list[tuple[int, HeldUpdate]] = []
        for raw_key, value in raw:
            update_id = keys.update_id(raw_key)
            try:
                held.append((update_id, decode_held(value)))
            except UnreadableRecord as exc:
                get_logger(__name__).error("store.held_update_unreadable", update_id=update_id, error=str(exc))
        return held

    def forget_updates(self, before: float) -> WriteFuture:
        """Drop the marks older than `before` (Telegram gives up redelivering an update within a day).
        Held updates stay until they are taken."""
        db = self._db[b"updates"]

        def drop(txn: lmdb.Transaction) -> int:
            old = [key for key, value in items(txn.cursor(db=db)) if keys.parse_time(value) < before]
            for key in old:
                txn.delete(key, db=db)
            return len(old)

        return self.writer.submit(drop)

    def consume(self, key: str, arrivals: Sequence[int]) -> WriteFuture | None:
        """Take messages out of the inbox that were handled without a session commit (a read-only command)."""
        future = None
        for arrival in arrivals:
            future = self.writer.submit_record(InboxWrite(keys.inbox(key, arrival), None), urgent=False)
        return future


def _taken(updates: Sequence[int]) -> tuple[Change, ...]:
    """The changes that mark updates as taken: each one's mark put, its held copy (if any) dropped."""
    now = keys.time_value(time.time())
    changes: list[Change] = []
    for update_id in updates:
        key = keys.update(update_id)
        changes += [(b"updates", key, now), (b"held", key, None)]
    return tuple(changes)
