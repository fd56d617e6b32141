"""LmdbStore: sessions, turns, notes, usage and the indexes, on one LMDB environment.

Reads run in the caller's thread (LMDB read transactions are cheap and never
block the writer). Writes go to the group-commit writer; each returns a future
that resolves once the write is durable. The per-turn session commit is a
`SessionWrite` record applied in bulk (see `SessionWriteApplier`); rarer writes
are closures.

Persisting a turn writes the header and that one turn record: the cost does
not depend on how long the history is. Received messages wait in the inbox
(`receive`, an `InboxWrite` record) until the session commit that takes them
up deletes them in its own transaction (`SessionWrite.consumed`). The recovery and heartbeat indexes hold
a flag per session (written, never deleted, on the hot path); readers filter.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from vigil.errors import CorruptRecord, SessionGone
from vigil.logs import get_logger
from vigil.ports import Unreadable, UsageEntry, UsageRow
from vigil.store import keys, media_refs
from vigil.store.lmdb_env import LmdbEnv, StoreError
from vigil.store.schema import (
    InboxEntry,
    Note,
    SessionHeader,
    StoreMeta,
    Turn,
    UnreadableRecord,
    Usage,
    UsageDay,
    decode_header,
    decode_inbox,
    decode_meta,
    decode_note,
    decode_turn,
    decode_usage_day,
    encode,
)
from vigil.store.writer import GroupCommitWriter, WriteFuture

RECOVER_YES = b"1"
RECOVER_NO = b"0"
HEARTBEAT_OFF = b""
_UNKNOWN = object()
INCARNATION_CACHE_LIMIT = 300_000
FOREIGN_GRACE_S = 5.0

_META_KEY = b"store"


def unreadable_line(skipped: Sequence[Unreadable]) -> str:
    """"1 session could not be read: tg:123 (written by a newer vigil)" (empty when none)."""
    if not skipped:
        return ""
    names = ", ".join(f"{u.key} ({u.reason})" for u in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    plural = "session" if len(skipped) == 1 else "sessions"
    return f"{len(skipped)} {plural} could not be read: {names}{more}"


def utc_day(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


_OPEN: dict[Path, LmdbStore] = {}
_OPEN_LOCK = threading.Lock()


def open_store(data_dir: Path, map_mb: int = 64) -> LmdbStore:
    """The process's one store for `data_dir` (LMDB wants one Environment per process)."""
    path = data_dir.resolve()
    with _OPEN_LOCK:
        store = _OPEN.get(path)
        if store is None or store.closed:
            store = LmdbStore(path, map_mb)
            _OPEN[path] = store
        return store


class SessionWrite:
    """One session commit, already encoded: applied in bulk by the writer.

    `consumed` are the inbox keys of the messages this commit makes part of the session's state:
    deleted only if the commit is accepted.
    """

    __slots__ = ("consumed", "create", "header", "heartbeat", "incarnation", "key", "members", "recover", "turn",
                 "turn_key", "usage")

    def __init__(self, key: bytes, incarnation: int, create: bool, header: bytes, turn_key: bytes | None,
                 turn: bytes | None, recover: bytes | None, heartbeat: bytes | None, members: tuple[bytes, ...],
                 usage: tuple[UsageEntry, ...], consumed: tuple[bytes, ...] = ()) -> None:
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


class InboxWrite:
    """A received message put in the inbox (`value`), or taken out of it (`value` None)."""

    __slots__ = ("key", "value")

    def __init__(self, key: bytes, value: bytes | None) -> None:
        self.key = key
        self.value = value


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
        self._last_txnid = -1
        self._committing = -1  # the id of our transaction being committed right now
        self.foreign_seen_at = float("-inf")  # monotonic time our writer last found another process's write

    def forget(self, key: bytes) -> None:
        """A closure in this transaction deleted the session."""
        self._tentative[key] = None

    def begin(self, txn: lmdb.Transaction) -> None:
        self._committing = txn.id()
        if txn.id() - 1 != self._last_txnid:
            self._known.clear()  # someone else committed since our last transaction
            self._usage.clear()
            if self._last_txnid >= 0:
                self.foreign_seen_at = time.monotonic()

    def apply(self, txn: lmdb.Transaction, records: list[SessionWrite | InboxWrite]) -> list[BaseException | None]:
        dbs = self._dbs
        sessions = [w for w in records if type(w) is SessionWrite]
        refused = self._read_incarnations(txn, sessions)
        rows_of = [[keys.usage(e.user_id, e.day, e.key, e.kind) for e in w.usage] if type(w) is SessionWrite else []
                   for w in records]
        on_disk, damaged = self._read_usage(txn, rows_of)
        results: list[BaseException | None] = []
        puts: dict[bytes, list[tuple[bytes, bytes]]] = {name: [] for name in
                                                        (b"sessions", b"turns", b"recover", b"heartbeats",
                                                         b"members")}
        usage: dict[bytes, Usage] = {}
        # A message received and taken up within one transaction is never written at all (a fast turn).
        inbox_puts: dict[bytes, bytes] = {}
        inbox_deletes: list[bytes] = []
        for write, rows in zip(records, rows_of, strict=True):
            if type(write) is InboxWrite:
                if write.value is not None:
                    inbox_puts[write.key] = write.value
                elif inbox_puts.pop(write.key, None) is None:
                    inbox_deletes.append(write.key)
                results.append(None)
                continue
            assert type(write) is SessionWrite
            error: BaseException | None = refused.get(write.key)
            if error is None:
                current = self._lookup(write.key)
                if (current is None and not write.create) or (current is not None and current != write.incarnation):
                    error = SessionGone(write.key.decode())
            if error is None and damaged:
                bad = next((row for row in rows if row in damaged), None)
                if bad is not None:
                    error = CorruptRecord(write.key.decode(), damaged[bad], "usage record")
            if error is not None:
                results.append(error)  # its consumed inbox entries stay: the messages are not lost
                continue
            self._tentative[write.key] = write.incarnation
            puts[b"sessions"].append((write.key, write.header))
            if write.turn_key is not None and write.turn is not None:
                puts[b"turns"].append((write.turn_key, write.turn))
            if write.recover is not None:
                puts[b"recover"].append((write.key, write.recover))
            if write.heartbeat is not None:
                puts[b"heartbeats"].append((write.key, write.heartbeat))
            for member in write.members:
                puts[b"members"].append((member, b""))
            for consumed in write.consumed:
                if inbox_puts.pop(consumed, None) is None:
                    inbox_deletes.append(consumed)
            for row, entry in zip(rows, write.usage, strict=True):
                usage[row] = usage[row] + entry.usage if row in usage else entry.usage
            results.append(None)
        if usage:
            for row in list(usage):
                before = self._usage_tentative.get(row) or self._usage.get(row) or on_disk.get(row) or Usage()
                usage[row] = before + usage[row]
                self._usage_tentative[row] = usage[row]
            puts[b"usage"] = [(row, encode(UsageDay(usage=total))) for row, total in usage.items()]
        if inbox_puts:
            puts[b"inbox"] = list(inbox_puts.items())
        for name, items in puts.items():
            if items:
                txn.cursor(db=dbs[name]).putmulti(items)
        for consumed in inbox_deletes:
            txn.delete(consumed, db=dbs[b"inbox"])
        return results

    def _read_incarnations(self, txn: lmdb.Transaction, records: list[SessionWrite]) -> dict[bytes, CorruptRecord]:
        """Learn the stored incarnation of sessions not cached; those whose header can't be read are refused."""
        unknown = [w.key for w in records if self._lookup(w.key) is _UNKNOWN]
        refused: dict[bytes, CorruptRecord] = {}
        if not unknown:
            return refused
        stored: dict[bytes, int] = {}
        for raw_key, value in txn.cursor(db=self._dbs[b"sessions"]).getmulti(unknown):
            try:
                stored[bytes(raw_key)] = decode_header(bytes(value)).incarnation
            except UnreadableRecord as exc:
                # Not cached: once `vigil sessions delete` removed it, the session may start afresh.
                refused[bytes(raw_key)] = CorruptRecord(bytes(raw_key).decode(errors="replace"), exc.reason)
        for key in unknown:
            if key not in refused:
                self._tentative[key] = stored.get(key)
        return refused

    def _read_usage(self, txn: lmdb.Transaction, rows_of: list[list[bytes]]
                    ) -> tuple[dict[bytes, Usage], dict[bytes, str]]:
        """Usage rows to add to that are not cached: (their totals, the reason of those that can't be read)."""
        missing = list({row: None for rows in rows_of for row in rows
                        if row not in self._usage and row not in self._usage_tentative})
        on_disk: dict[bytes, Usage] = {}
        damaged: dict[bytes, str] = {}
        if missing:
            for raw_key, value in txn.cursor(db=self._dbs[b"usage"]).getmulti(missing):
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

    def committed(self, txn_id: int) -> None:
        if len(self._known) > INCARNATION_CACHE_LIMIT:
            self._known.clear()
        if len(self._usage) > INCARNATION_CACHE_LIMIT:
            self._usage.clear()
        self._known.update(self._tentative)
        self._tentative.clear()
        self._usage.update(self._usage_tentative)
        self._usage_tentative.clear()
        self._last_txnid = txn_id

    def aborted(self) -> None:
        self._tentative.clear()
        self._usage_tentative.clear()


class LmdbStore:
    """The real store port."""

    def __init__(self, data_dir: Path, map_mb: int = 64) -> None:
        self.data_dir = data_dir
        self._lmdb = LmdbEnv(data_dir, map_mb * 1024 * 1024)
        self._db = self._lmdb.dbs
        self._applier = SessionWriteApplier(self._db)
        self.writer = GroupCommitWriter(self._lmdb, self._applier)
        self.closed = False
        try:
            self._check_meta()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _check_meta(self) -> None:
        raw = self._lmdb.read(lambda txn: _get(txn, _META_KEY, self._db[b"meta"]))
        if raw is None:
            meta = StoreMeta(created_at=time.time(), created_by=f"vigil pid {os.getpid()}")
            self.writer.write(lambda txn: txn.put(_META_KEY, encode(meta), db=self._db[b"meta"],
                                                  overwrite=False))
        else:
            decode_meta(raw)  # refuses a store written by a newer vigil, with a clear message

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        self._lmdb.close()

    @property
    def writer_alive(self) -> bool:
        return self.writer.alive

    @property
    def map_size(self) -> int:
        return self._lmdb.map_size

    def read(self, fn: Any) -> Any:
        return self._lmdb.read(fn)

    # ------------------------------------------------------------------ reads

    def header(self, key: str) -> SessionHeader | None:
        raw = self._lmdb.read(lambda txn: _get(txn, keys.session(key), self._db[b"sessions"]))
        return None if raw is None else decode_header(raw)

    def canonical(self, key: str) -> str:
        """The stable key of a chat that changed id (a group upgraded to a supergroup)."""
        raw = self._lmdb.read(lambda txn: _get(txn, keys.session(key), self._db[b"aliases"]))
        return key if raw is None else raw.decode()

    def turn(self, key: str, generation: int, seq: int) -> Turn | None:
        raw = self._lmdb.read(lambda txn: _get(txn, keys.turn(key, generation, seq), self._db[b"turns"]))
        return None if raw is None else decode_turn(raw)

    def turns(self, key: str, generation: int, start: int = 0, stop: int | None = None) -> list[Turn]:
        """Turns with start <= seq < stop, oldest first: one cursor range."""
        first = keys.turn(key, generation, start)
        prefix = keys.turn_prefix(key, generation)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(first):
                return out
            for raw_key, value in _items(cursor):
                if not raw_key.startswith(prefix):
                    break
                if stop is not None and keys.turn_position(raw_key)[1] >= stop:
                    break
                out.append(value)
            return out

        return [decode_turn(raw) for raw in self._lmdb.read(scan)]

    def last_turns(self, key: str, generation: int, count: int) -> list[Turn]:
        """The newest `count` turns, oldest first, read backwards from the end."""
        prefix = keys.turn_prefix(key, generation)
        end = keys.turn(key, generation, 2**64 - 1)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(end):
                if not cursor.last():
                    return out
            elif bytes(cursor.key()) != end and not cursor.prev():
                return out
            while len(out) < count and bytes(cursor.key()).startswith(prefix):
                out.append(bytes(cursor.value()))
                if not cursor.prev():
                    break
            return out

        return [decode_turn(raw) for raw in reversed(self._lmdb.read(scan))]

    def generations(self, key: str) -> list[int]:
        prefix = keys.turn_prefix(key)

        def scan(txn: lmdb.Transaction) -> list[int]:
            found: list[int] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            position = prefix
            while cursor.set_range(position) and bytes(cursor.key()).startswith(prefix):
                generation = keys.turn_position(bytes(cursor.key()))[0]
                found.append(generation)
                position = keys.turn_prefix(key, generation + 1)
            return found

        return list(self._lmdb.read(scan))

    def headers(self, user_id: int | None = None) -> list[SessionHeader]:
        """Every session (user_id None) or those the user takes part in; unreadable ones are skipped."""
        return self.scan_headers(user_id)[0]

    def scan_headers(self, user_id: int | None = None) -> tuple[list[SessionHeader], list[Unreadable]]:
        """Like `headers`, and the sessions skipped because their record can't be read, named."""

        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            sessions = self._db[b"sessions"]
            if user_id is None:
                return list(_items(txn.cursor(db=sessions)))
            out: list[tuple[bytes, bytes]] = []
            prefix = keys.member_prefix(user_id)
            cursor = txn.cursor(db=self._db[b"members"])
            if cursor.set_range(prefix):
                for raw_key in _keys(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    session_key = raw_key[len(prefix):]
                    value = _get(txn, session_key, sessions)
                    if value is not None:
                        out.append((session_key, value))
            return out

        headers: list[SessionHeader] = []
        skipped: list[Unreadable] = []
        for raw_key, raw in self._lmdb.read(scan):
            try:
                headers.append(decode_header(raw))
            except UnreadableRecord as exc:  # one bad record must not hide every other session
                skipped.append(Unreadable(raw_key.decode(errors="replace"), exc.reason))
        return headers, skipped

    def has_session(self, key: str) -> bool:
        """Whether a header is stored for `key`, readable or not (nothing is decoded)."""
        return self._lmdb.read(lambda txn: _get(txn, keys.session(key), self._db[b"sessions"])) is not None

    def changed_elsewhere(self) -> bool:
        """Whether another process may have written since this one last committed (cheap).

        A foreign write followed at once by one of ours (the inbox record of the very message a session
        is about to answer) hides behind our transaction id; so for a short while after the writer found
        one, every session is told to look again.
        """
        if time.monotonic() - self._applier.foreign_seen_at < FOREIGN_GRACE_S:
            return True
        return not self._applier.ours(int(self._lmdb.env.info()["last_txnid"]))

    def session_count(self) -> int:
        return int(self._lmdb.read(lambda txn: txn.stat(self._db[b"sessions"])["entries"]))

    def recovery_keys(self) -> list[str]:
        """Sessions holding unanswered messages or a turn cut short: answered after a restart."""
        return self._lmdb.read(lambda txn: [k.decode(errors="replace") for k, v in
                                            _items(txn.cursor(db=self._db[b"recover"])) if v == RECOVER_YES])

    def inbox(self) -> list[tuple[int, InboxEntry]]:
        """Every received message no session has taken up yet, as (arrival id, entry), in arrival order.

        A record that cannot be read (written by a newer vigil, or damaged) is left where it is and
        named in the log; it goes when its session is deleted.
        """
        raw = self._lmdb.read(lambda txn: list(_items(txn.cursor(db=self._db[b"inbox"]))))
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

    def media_references(self) -> set[str]:
        """Digests of the files any stored record names (see vigil/store/media_refs.py)."""
        return set(self._lmdb.read(lambda txn: media_refs.scan(txn, self._db)))

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
                for raw_key in _keys(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    found += 1
            return found

        return int(self._lmdb.read(count))

    def heartbeat_schedule(self) -> list[tuple[str, float]]:
        """(key, next due) of every session with heartbeats on: the timer's start-up load."""
        # A value of the wrong size (damage) is skipped: it must not stop the start-up of every session.
        return self._lmdb.read(lambda txn: [(k.decode(errors="replace"), keys.parse_time(v)) for k, v in
                                            _items(txn.cursor(db=self._db[b"heartbeats"]))
                                            if len(v) == keys.TIME_SIZE])

    def notes(self, key: str) -> list[Note]:
        prefix = keys.note_prefix(key)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            cursor = txn.cursor(db=self._db[b"notes"])
            out: list[bytes] = []
            if cursor.set_range(prefix):
                for raw_key, value in _items(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    out.append(value)
            return out

        return [decode_note(raw) for raw in self._lmdb.read(scan)]

    def usage_rows(self, user_id: int | None = None, since_day: str = "") -> list[UsageRow]:
        return self.scan_usage(user_id, since_day)[0]

    def scan_usage(self, user_id: int | None = None, since_day: str = "") -> tuple[list[UsageRow], list[Unreadable]]:
        """Usage rows (of everyone, or one user) from `since_day` on, and the rows that can't be read."""
        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=self._db[b"usage"])
            if user_id is None:
                return list(_items(cursor))
            prefix = keys.usage_prefix(user_id)
            out: list[tuple[bytes, bytes]] = []
            if cursor.set_range(prefix + since_day.encode()):
                for raw_key, value in _items(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    out.append((raw_key, value))
            return out

        rows: list[UsageRow] = []
        skipped: list[Unreadable] = []
        for raw_key, value in self._lmdb.read(scan):
            try:
                user, day, key, kind = keys.parse_usage(raw_key)
            except ValueError:
                skipped.append(Unreadable(raw_key.decode(errors="replace"), "a usage key of unknown form"))
                continue
            if day < since_day:
                continue
            try:
                rows.append(UsageRow(user, day, key, kind, decode_usage_day(value).usage))
            except UnreadableRecord as exc:
                skipped.append(Unreadable(key, f"usage of {day} {exc.reason}"))
        return rows, skipped

    def user_cost_micros(self, user_id: int, day: str) -> int:
        return sum(row.usage.cost_micros for row in self.usage_rows(user_id, day) if row.day == day)

    # ------------------------------------------------------------------ writes

    def commit(self, header: SessionHeader, turn: Turn | None = None, usage: Sequence[UsageEntry] = (),
               new_members: Iterable[int] = (), create: bool = False,
               previous: SessionHeader | None = None, urgent: bool = True,
               consumed: Sequence[int] = ()) -> WriteFuture:
        """Persist a session's header (and one turn, usage, membership) in one transaction.

        `create` says the header is new; otherwise the stored header must still be
        this incarnation, or the session was deleted elsewhere and SessionGone is raised.
        `previous` is the header as last committed: index flags are written only if they changed.
        `urgent` means the caller waits for it now: this thread then commits the queue itself.
        `consumed` are the arrival ids of inbox messages this header (or turn) now holds: they
        leave the inbox in the same transaction, and only if the commit is accepted.
        """
        recover = None
        if previous is None or previous.needs_recovery != header.needs_recovery:
            recover = RECOVER_YES if header.needs_recovery else RECOVER_NO
        beat = header.heartbeat
        heartbeat = None
        if previous is None or (previous.heartbeat.enabled, previous.heartbeat.next_due) != (beat.enabled,
                                                                                           beat.next_due):
            heartbeat = keys.time_value(beat.next_due) if beat.enabled else HEARTBEAT_OFF
        record = SessionWrite(
            key=keys.session(header.key), incarnation=header.incarnation, create=create, header=encode(header),
            turn_key=keys.turn(header.key, header.generation, turn.seq) if turn is not None else None,
            turn=encode(turn) if turn is not None else None, recover=recover, heartbeat=heartbeat,
            members=tuple(keys.member(user, header.key) for user in new_members), usage=tuple(usage),
            consumed=tuple(keys.inbox(header.key, arrival) for arrival in consumed))
        return self.writer.submit_record(record, urgent)

    def receive(self, arrival: int, entry: InboxEntry) -> WriteFuture:
        """Put a received message in the inbox. Nobody needs to wait: the writer commits it within
        milliseconds (the future says when, for a caller that must know, such as a webhook's answer)."""
        return self.writer.submit_record(InboxWrite(keys.inbox(entry.key, arrival), encode(entry)), urgent=False)

    def consume(self, key: str, arrivals: Sequence[int]) -> WriteFuture | None:
        """Take messages out of the inbox that were handled without a session commit (a read-only command)."""
        future = None
        for arrival in arrivals:
            future = self.writer.submit_record(InboxWrite(keys.inbox(key, arrival), None), urgent=False)
        return future

    def delete_session(self, key: str, inbox_upto: int | None = None) -> WriteFuture:
        """Delete a session's header, every generation's turns, notes and indexes (not its usage).

        Its received messages go too: all of them, or (from the session itself, which may have
        newer ones queued that must survive) those with an arrival id up to `inbox_upto`.
        """
        db = self._db

        def op(txn: lmdb.Transaction) -> int:
            header_key = keys.session(key)
            self._applier.forget(header_key)
            try:
                header = _header(txn, header_key, db[b"sessions"])
            except UnreadableRecord:
                # Deleting is how an operator gets rid of an unreadable record: find its members without it.
                suffix = keys.SEP + header_key
                for member in [k for k in _keys(txn.cursor(db=db[b"members"])) if k.endswith(suffix)]:
                    txn.delete(member, db=db[b"members"])
                header = None
            if header is not None:
                for user in header.participants:
                    txn.delete(keys.member(user, key), db=db[b"members"])
            for name in (b"sessions", b"recover", b"heartbeats"):
                txn.delete(header_key, db=db[name])
            removed = _delete_prefix(txn, db[b"turns"], keys.turn_prefix(key))
            _delete_prefix(txn, db[b"notes"], keys.note_prefix(key))
            _delete_prefix(txn, db[b"inbox"], keys.inbox_prefix(key),
                           None if inbox_upto is None else keys.inbox(key, inbox_upto))
            aliases = [k for k, v in _items(txn.cursor(db=db[b"aliases"])) if v == header_key]
            for alias in aliases:
                txn.delete(alias, db=db[b"aliases"])
            return removed

        return self.writer.submit(op)

    def prune_generations(self, key: str, before: float) -> WriteFuture:
        """From another process: delete past generations that ended before `before`; resolves to how many."""
        db = self._db

        def op(txn: lmdb.Transaction) -> int:
            header_key = keys.session(key)
            header = _header(txn, header_key, db[b"sessions"])
            if header is None:
                return 0
            old = [g for g in header.past_generations if g.ended_at < before]
            for info in old:
                _delete_prefix(txn, db[b"turns"], keys.turn_prefix(key, info.generation))
            if old:
                kept = tuple(g for g in header.past_generations if g.ended_at >= before)
                txn.put(header_key, encode(msgspec.structs.replace(header, past_generations=kept)),
                        db=db[b"sessions"])
            return len(old)

        return self.writer.submit(op)

    def mark_undelivered(self, key: str, seq: int) -> WriteFuture:
        """Note that turn `seq`'s reply may not have arrived (used at shutdown, when no session runs)."""
        db = self._db

        def op(txn: lmdb.Transaction) -> None:
            header_key = keys.session(key)
            header = _header(txn, header_key, db[b"sessions"])
            if header is None or seq in header.undelivered:
                return
            header = msgspec.structs.replace(header, undelivered=(*header.undelivered, seq)[-50:])
            txn.put(header_key, encode(header), db=db[b"sessions"])
            txn.put(header_key, RECOVER_YES, db=db[b"recover"])

        return self.writer.submit(op)

    def drop_generation(self, key: str, generation: int) -> WriteFuture:
        return self.writer.submit(lambda txn: _delete_prefix(txn, self._db[b"turns"],
                                                              keys.turn_prefix(key, generation)))

    def add_note(self, key: str, note: Note, keep: int) -> WriteFuture:
        """Append a note, dropping the oldest beyond `keep`."""
        db = self._db[b"notes"]
        prefix = keys.note_prefix(key)

        def op(txn: lmdb.Transaction) -> None:
            txn.put(keys.note(key, note.at), encode(note), db=db)
            cursor = txn.cursor(db=db)
            existing = []
            if cursor.set_range(prefix):
                for raw_key in _keys(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    existing.append(raw_key)
            for old in existing[: max(0, len(existing) - keep)]:
                txn.delete(old, db=db)

        return self.writer.submit(op)

    def clear_notes(self, key: str) -> WriteFuture:
        return self.writer.submit(lambda txn: _delete_prefix(txn, self._db[b"notes"], keys.note_prefix(key)))

    def set_alias(self, alias: str, canonical: str) -> WriteFuture:
        return self.writer.submit(lambda txn: txn.put(keys.session(alias), keys.session(canonical),
                                                      db=self._db[b"aliases"]))

    def sync(self) -> None:
        """Wait until everything submitted so far is on disk."""
        self.writer.write(lambda txn: None)


def _get(txn: lmdb.Transaction, key: bytes, db: Any) -> bytes | None:
    # Transactions are opened with buffers=False, so values are bytes; bytes() of bytes is free.
    value = txn.get(key, db=db)
    return None if value is None else bytes(value)


def _header(txn: lmdb.Transaction, header_key: bytes, db: Any) -> SessionHeader | None:
    stored = _get(txn, header_key, db)
    return None if stored is None else decode_header(stored)


def _items(cursor: lmdb.Cursor) -> Iterator[tuple[bytes, bytes]]:
    for key, value in cursor.iternext(keys=True, values=True):
        yield bytes(key), bytes(value)


def _keys(cursor: lmdb.Cursor) -> Iterator[bytes]:
    for key in cursor.iternext(keys=True, values=False):
        yield bytes(key)


def _delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes, last: bytes | None = None) -> int:
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


__all__ = ["CorruptRecord", "LmdbStore", "SessionGone", "StoreError", "Unreadable", "UsageEntry", "UsageRow",
           "open_store", "unreadable_line", "utc_day"]
