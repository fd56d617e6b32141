"""The writer's bulk records (`SessionWrite`, `InboxWrite`, `ReadWrite`) and the applier that puts a batch in LMDB.

The per-turn session commit and the inbox's puts and deletes are the hot path:
they are records, not closures, so that a whole batch costs a handful of LMDB
calls, and the incarnation and usage caches here spare a read per write.

A `ReadWrite` must read first (a deletion by range, a sweep's bookkeeping); unlike a closure's, its changes
are known, so it is logged in the journal (one barrier), not made durable by a checkpoint (a sync of the
store, which every session's next commit would wait for).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import lmdb

from vigil.errors import CorruptRecord, SessionGone, UnreadableRecord
from vigil.ports import UsageEntry
from vigil.records.schema import Usage, UsageDay, decode_conversation, decode_header, decode_usage_day, encode
from vigil.store.engine import cursors, keys, media_refs

_UNKNOWN = object()
_NO_ROWS: list[bytes] = []
Change = tuple[bytes, bytes, bytes | None]  # (database name, key, value; None deletes)
# ~500 bytes a session in the three caches: 300,000 kept ~50 MB for long-evicted chats; 20x the live default.
INCARNATION_CACHE_LIMIT = 20_000


class SessionWrite:
    """One session commit, already encoded: applied in bulk by the writer.

    `consumed` are the inbox keys of the messages this commit makes part of the session's state:
    deleted only if the commit is accepted. `summary` is a compaction's summary record, written with
    the header that moves the window past what it covers (and the usage of the call that made it).
    `conversations` puts (and deletes: None) past-conversation records with the header that switches
    (vigil/records/conversations.py); `requires` is the resumed one's record, which must still be there and not being
    deleted (vigil/store/deletes.py). The files the turn and header name are indexed too (`media_refs`).
    """

    __slots__ = ("consumed", "conversations", "create", "header", "heartbeat", "incarnation", "key", "members",
                 "recover", "requires", "summary", "summary_key", "turn", "turn_key", "usage")

    def __init__(self, key: bytes, incarnation: int, create: bool, header: bytes, turn_key: bytes | None,
                 turn: bytes | None, recover: bytes | None, heartbeat: bytes | None, members: tuple[bytes, ...],
                 usage: tuple[UsageEntry, ...], consumed: tuple[bytes, ...] = (),
                 summary_key: bytes | None = None, summary: bytes | None = None,
                 conversations: tuple[tuple[bytes, bytes | None], ...] = (), requires: bytes | None = None) -> None:
        self.key = key
        self.incarnation = incarnation
        self.create = create
        self.header = header
        self.turn_key = turn_key
        self.turn = turn
        self.recover = recover
        self.heartbeat = heartbeat
        self.members = members
        self.usage = usage
        self.consumed = consumed
        self.summary_key = summary_key
        self.summary = summary
        self.conversations = conversations
        self.requires = requires


class InboxWrite:
    """A received message put in the inbox (`value`), or taken out of it (`value` None); no key: neither.

    `seen`: changes to the Telegram updates it came in (`updates` marks put, `held` copies put or dropped),
    made in the same transaction, so an update Telegram delivers again is known as taken exactly when its
    message is durable (vigil/store/inbox.py).
    """

    __slots__ = ("key", "seen", "value")

    def __init__(self, key: bytes | None, value: bytes | None, seen: tuple[Change, ...] = ()) -> None:
        self.key = key
        self.value = value
        self.seen = seen


class ReadWrite:
    """A write planned by reading in the writer's transaction: `plan(txn)` returns (its changes, its result).
    Applied in order with the records around it (it sees their writes); should `plan` raise, it alone fails."""

    __slots__ = ("plan",)

    def __init__(self, plan: Callable[[lmdb.Transaction], tuple[list[Change], Any]]) -> None:
        self.plan = plan


class SessionWriteApplier:
    """Applies SessionWrites with a handful of LMDB calls per batch, not per write.

    Each write must still find its own incarnation of the session stored (or none,
    when creating); incarnations are cached here and the cache is dropped whenever
    LMDB's transaction counter shows that another process wrote in between.
    """

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs
        self._known: dict[bytes, int | None] = {}
        self._tentative: dict[bytes, int | None] = {}
        # Usage rows as last written: adding to them needs no read (and no GIL hand-off) per batch.
        self._usage: dict[bytes, Usage] = {}
        self._usage_tentative: dict[bytes, Usage] = {}
        # Each user's spend of a day, summed over their rows: the budget asks before every model call,
        # and a dict lookup answers what a cursor scan of the user's rows would. Seeded inside a write
        # transaction (which sees every committed write, ours or another process's), then kept by
        # adding what this writer commits; published only once committed, dropped like the rest
        # when another process is seen to write.
        self._spent: dict[tuple[int, str], int] = {}
        self._spent_tentative: dict[tuple[int, str], int | None] = {}
        self._last_txnid = -1
        self._committing = -1  # the id of our transaction being committed right now
        self.foreign_seen_at = float("-inf")  # monotonic time our writer last found another process's write
        # The puts and deletes of the transaction under way, in order: what the redo journal logs of it.
        self.changes: list[Change] = []

    def forget(self, key: bytes) -> None:
        """A closure in this transaction deleted the session."""
        self._tentative[key] = None

    def begin(self, txn: lmdb.Transaction) -> None:
        self.changes = []
        self._committing = txn.id()
        self.check_foreign(txn.id() - 1)

    def check_foreign(self, last_txnid: int) -> None:
        """`last_txnid` is the newest committed transaction: if it is not ours, drop what the caches know."""
        if last_txnid != self._last_txnid:
            self._known.clear()  # someone else committed since our last transaction
            self._usage.clear()
            self._spent = {}
            if self._last_txnid >= 0:
                self.foreign_seen_at = time.monotonic()

    def apply(self, txn: lmdb.Transaction, records: Sequence[SessionWrite | InboxWrite | ReadWrite]) -> list[Any]:
        """Plan the records (reading what the caches lack through `txn`) and write their changes in it.

        A `ReadWrite` is planned after the records before it are written, so that its reads see them."""
        results: list[Any] = []
        start = 0
        for index, record in enumerate(records):
            if type(record) is ReadWrite:
                if start < index:
                    results += self._apply_run(txn, records[start:index])
                results.append(self._apply_read_write(txn, record))
                start = index + 1
        if start < len(records):
            results += self._apply_run(txn, records[start:] if start else records)
        return results

    def _apply_run(self, txn: lmdb.Transaction, records: Sequence[SessionWrite | InboxWrite | ReadWrite]
                   ) -> list[BaseException | None]:
        first = len(self.changes)
        results = self.plan(txn, records)
        write(txn, self._dbs, self.changes[first:])
        return results

    def _apply_read_write(self, txn: lmdb.Transaction, record: ReadWrite) -> Any:
        try:
            changes, result = record.plan(txn)
        except (lmdb.MapFullError, lmdb.MapResizedError):
            raise
        except Exception as exc:
            return exc
        self.changes += changes
        write(txn, self._dbs, changes)
        return result

    def plan(self, txn: lmdb.Transaction | None, records: Sequence[SessionWrite | InboxWrite | ReadWrite]
             ) -> list[BaseException | None]:
        """Decide each record (None, or the exception refusing it) and put the batch's changes in `changes`.

        Without a transaction (the journal-first commit, `vigil.store.engine.behind`) only the caches may answer:
        a record that needs a read raises NeedsRead, and the caller calls `aborted()` and takes the slow path.
        The changes are added to those of the transaction's earlier records (`begin` starts the list).
        """
        sessions = [w for w in records if type(w) is SessionWrite]
        refused = self._read_incarnations(txn, sessions)
        rows_of = [[keys.usage(e.user_id, e.day, e.key, e.kind) for e in w.usage] if type(w) is SessionWrite and w.usage
                   else _NO_ROWS for w in records]
        on_disk, damaged = self._read_usage(txn, rows_of) if any(rows_of) else ({}, {})
        results: list[BaseException | None] = []
        # Per database, in this order: one putmulti each when LMDB gets them.
        headers: list[Change] = []
        turns: list[Change] = []
        others: list[Change] = []
        usage: dict[bytes, Usage] = {}
        # A message received and taken up within one transaction is never written at all (a fast turn).
        inbox_puts: dict[bytes, bytes] = {}
        inbox_deletes: list[bytes] = []
        seen: list[Change] = []
        for write, rows in zip(records, rows_of, strict=True):
            if type(write) is ReadWrite:
                raise NeedsRead  # planned only in a transaction, by `apply`
            if type(write) is InboxWrite:
                seen.extend(write.seen)  # also when the message is taken up in this same transaction
                if write.key is None:
                    pass
                elif write.value is not None:
                    inbox_puts[write.key] = write.value
                    if media_refs.MARK in write.value:
                        others += media_refs.pairs(keys.inbox_session(write.key), media_refs.LIVE, write.value)
                elif inbox_puts.pop(write.key, None) is None:
                    inbox_deletes.append(write.key)
                results.append(None)
                continue
            assert type(write) is SessionWrite
            key = write.key
            error: BaseException | None = refused.get(key) if refused else None
            if error is None:
                current = self._lookup(key)
                if (current is None and not write.create) or (current is not None and current != write.incarnation):
                    error = SessionGone(key.decode())
            if error is None and damaged:
                bad = next((row for row in rows if row in damaged), None)
                if bad is not None:
                    error = CorruptRecord(key.decode(), damaged[bad], "usage record")
            if error is None and write.requires is not None and not _resumable(
                    _reader(txn).get(write.requires, db=self._dbs[b"conversations"])):
                error = LookupError("the conversation resumed was deleted meanwhile (a cleanup)")
            if error is not None:
                results.append(error)  # its consumed inbox entries stay: the messages are not lost
                continue
            self._tentative[key] = write.incarnation
            headers.append((b"sessions", key, write.header))
            if write.turn_key is not None and write.turn is not None:
                turns.append((b"turns", write.turn_key, write.turn))
                if media_refs.MARK in write.turn:
                    others += media_refs.pairs(key, keys.turn_position(write.turn_key)[0], write.turn)
            if media_refs.MARK in write.header:
                others += media_refs.pairs(key, media_refs.LIVE, write.header)
            for conversation_key, record in write.conversations:
                others.append((b"conversations", conversation_key, record))
            if write.summary_key is not None and write.summary is not None:
                others.append((b"summaries", write.summary_key, write.summary))
            if write.recover is not None:
                others.append((b"recover", key, write.recover))
            if write.heartbeat is not None:
                others.append((b"heartbeats", key, write.heartbeat))
            for member in write.members:
                others.append((b"members", member, b""))
            for consumed in write.consumed:
                if inbox_puts.pop(consumed, None) is None:
                    inbox_deletes.append(consumed)
            for row, entry in zip(rows, write.usage, strict=True):
                usage[row] = usage[row] + entry.usage if row in usage else entry.usage
                self._add_spent(txn, entry.user_id, entry.day, entry.usage.cost_micros)
            results.append(None)
        changes = self.changes
        changes += headers
        changes += turns
        if others:
            # Grouped by database (a stable sort: each database's puts keep their order).
            changes += sorted(others, key=itemgetter(0)) if len(others) > 1 else others
        if usage:
            for row in list(usage):
                before = self._usage_tentative.get(row) or self._usage.get(row) or on_disk.get(row) or Usage()
                usage[row] = before + usage[row]
                self._usage_tentative[row] = usage[row]
            changes += [(b"usage", row, encode(UsageDay(usage=total))) for row, total in usage.items()]
        if inbox_puts:
            changes += [(b"inbox", key, value) for key, value in inbox_puts.items()]
        if seen:
            changes += seen
        if inbox_deletes:
            changes += [(b"inbox", consumed, None) for consumed in inbox_deletes]
        return results

    def _add_spent(self, txn: lmdb.Transaction | None, user_id: int, day: str, micros: int) -> None:
        spent_key = (user_id, day)
        if spent_key in self._spent_tentative:
            before = self._spent_tentative[spent_key]
        elif spent_key in self._spent:
            before = self._spent[spent_key]
        else:
            before = self._stored_spend(_reader(txn), user_id, day)
        self._spent_tentative[spent_key] = None if before is None else before + micros

    def _stored_spend(self, txn: lmdb.Transaction, user_id: int, day: str) -> int | None:
        """The user's spend of `day` as this transaction sees it, before its own puts; None if a row is damaged."""
        prefix = keys.usage_day_prefix(user_id, day)
        cursor = txn.cursor(db=self._dbs[b"usage"])
        total = 0
        if cursor.set_range(prefix):
            for raw_key, value in cursors.items(cursor):
                if not raw_key.startswith(prefix):
                    break
                try:
                    total += decode_usage_day(value).usage.cost_micros
                except UnreadableRecord:
                    return None  # the scan of a reader reports the damage; nothing is cached
        return total

    def spent(self, user_id: int, day: str) -> int | None:
        """The user's committed spend of `day`, if known here (any thread; None: ask the store)."""
        return self._spent.get((user_id, day))

    def _read_incarnations(self, txn: lmdb.Transaction | None, records: list[SessionWrite]
                           ) -> dict[bytes, CorruptRecord]:
        """Learn the stored incarnation of sessions not cached; those whose header can't be read are refused."""
        unknown = [w.key for w in records if self._lookup(w.key) is _UNKNOWN]
        refused: dict[bytes, CorruptRecord] = {}
        if not unknown:
            return refused
        stored: dict[bytes, int] = {}
        for raw_key, value in _reader(txn).cursor(db=self._dbs[b"sessions"]).getmulti(unknown):
            try:
                stored[bytes(raw_key)] = decode_header(bytes(value)).incarnation
            except UnreadableRecord as exc:
                # Not cached: once `vigil sessions delete` removed it, the session may start afresh.
                refused[bytes(raw_key)] = CorruptRecord(bytes(raw_key).decode(errors="replace"), exc.reason)
        for key in unknown:
            if key not in refused:
                self._tentative[key] = stored.get(key)
        return refused

    def _read_usage(self, txn: lmdb.Transaction | None, rows_of: list[list[bytes]]
                    ) -> tuple[dict[bytes, Usage], dict[bytes, str]]:
        """Usage rows to add to that are not cached: (their totals, the reason of those that can't be read)."""
        missing = list({row: None for rows in rows_of for row in rows
                        if row not in self._usage and row not in self._usage_tentative})
        on_disk: dict[bytes, Usage] = {}
        damaged: dict[bytes, str] = {}
        if missing:
            for raw_key, value in _reader(txn).cursor(db=self._dbs[b"usage"]).getmulti(missing):
                try:
                    on_disk[bytes(raw_key)] = decode_usage_day(bytes(value)).usage
                except UnreadableRecord as exc:
                    damaged[bytes(raw_key)] = exc.reason
        return on_disk, damaged

    def ours(self, txnid: int) -> bool:
        """Whether the transaction with this id is one of ours (the last committed, or committing now)."""
        return txnid in (self._last_txnid, self._committing)

    def _lookup(self, key: bytes) -> Any:
        if key in self._tentative:
            return self._tentative[key]
        return self._known.get(key, _UNKNOWN)

    def applying(self, txn_id: int) -> None:
        """Our transaction `txn_id` is being committed (by the apply thread: `ours` must know it)."""
        self._committing = txn_id

    def landed(self, txn_id: int) -> None:
        """Our transaction `txn_id` is committed (the apply thread's; its records were published before)."""
        self._last_txnid = txn_id

    def committed(self, txn_id: int | None) -> None:
        """The batch planned last is durable: publish what it changed (`txn_id`: LMDB's, when it is in LMDB)."""
        if len(self._known) > INCARNATION_CACHE_LIMIT:
            self._known.clear()
        if len(self._usage) > INCARNATION_CACHE_LIMIT:
            self._usage.clear()
        self._known.update(self._tentative)
        self._tentative.clear()
        self._usage.update(self._usage_tentative)
        self._usage_tentative.clear()
        if self._spent_tentative:
            if len(self._spent) > INCARNATION_CACHE_LIMIT:
                self._spent = {}
            # Readers on other threads `get` from it: each item is replaced whole, under the GIL.
            for spent_key, total in self._spent_tentative.items():
                if total is None:
                    self._spent.pop(spent_key, None)
                else:
                    self._spent[spent_key] = total
            self._spent_tentative.clear()
        if txn_id is not None:
            self._last_txnid = txn_id

    def aborted(self) -> None:
        self._tentative.clear()
        self._usage_tentative.clear()
        self._spent_tentative.clear()


class NeedsRead(Exception):
    """A record could not be planned from the caches alone: commit it in a transaction instead."""


def _resumable(raw: bytes | memoryview | None) -> bool:
    """Whether a conversation's record is there and not being deleted (vigil/store/deletes.py)."""
    with contextlib.suppress(UnreadableRecord):
        return raw is not None and not decode_conversation(bytes(raw)).deleting
    return False


def _reader(txn: lmdb.Transaction | None) -> lmdb.Transaction:
    if txn is None:
        raise NeedsRead
    return txn


def write(txn: lmdb.Transaction, dbs: dict[bytes, Any], changes: list[Change]) -> None:
    """Write changes in order, consecutive puts to one database in one call (py-lmdb drops the GIL per call)."""
    index, end = 0, len(changes)
    while index < end:
        name, key, value = changes[index]
        if value is None:
            txn.delete(key, db=dbs[name])
            index += 1
            continue
        stop = index + 1
        while stop < end and changes[stop][0] == name and changes[stop][2] is not None:
            stop += 1
        txn.cursor(db=dbs[name]).putmulti([(k, v) for _, k, v in changes[index:stop]])  # type: ignore[misc]
        index = stop
