"""The store's side of the contract: the `Store` Protocol sessions persist through, and the values it trades.

Apart from `vigil.ports` (which re-exports every name here) only so that each module stays one readable
screen of contracts; the same rule holds: nothing heavy is imported, `lmdb` least of all
(tests/test_ports.py proves it), and `vigil.store.store.LmdbStore` is the implementation.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from vigil.records.conversations import ConversationMove as ConversationMove
from vigil.records.held import HeldUpdate
from vigil.records.schema import Conversation, InboxEntry, Note, SessionHeader, Summary, Turn, Usage


@dataclass(frozen=True)
class Unreadable:
    """A session record a listing skipped, named so that it can be found and removed."""

    key: str
    reason: str


@dataclass(frozen=True)
class UsageEntry:
    """Usage to add to one (user, day, session, kind) row."""

    user_id: int
    day: str
    key: str
    kind: str  # a UsageKind when a session charges; the store files any kind under its own row
    usage: Usage


@dataclass(frozen=True)
class UsageRow:
    """One (user, day, session, kind) row as stored: the sum of every entry added to it."""

    user_id: int
    day: str
    key: str
    kind: str  # as read back: a newer vigil may have written a kind this one does not know
    usage: Usage


class SessionActivity(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type", tag="session"):
    """A view of a `SessionHeader` record: what a listing sorts by, decoded without the rest (never written).

    Decoding these fields alone skips the header's nested records (heartbeat, usage, schedules): a tenth
    of the time, which `/sessions` over thousands of sessions pays for each of them.
    """

    schema: int = 1
    key: str
    created_at: float
    last_activity: float = 0.0
    last_turn_at: float = 0.0

    @property
    def activity(self) -> float:
        """When anything last happened in the session (as vigil/policy/expiry.py's `activity`)."""
        return max(self.last_activity, self.last_turn_at, self.created_at)


class WriteFuture(Protocol):
    """The outcome of one write, known once it is durable (the store's futures implement it)."""

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the write is durable and return its value; raise what the write raised, or TimeoutError."""
        ...

    def done(self) -> bool:
        """Whether the outcome is known (durable or failed), without waiting."""
        ...


class UpdateMarks(Protocol):
    def update_taken(self, update_id: int) -> bool:
        """Whether this update was taken in before: marked (by `receive` or `mark_updates`) or held."""
        ...

    def mark_updates(self, updates: Sequence[int]) -> WriteFuture:
        """Mark updates as taken that put nothing in the inbox; drops their held copies."""
        ...

    def hold_update(self, update_id: int, held: HeldUpdate) -> WriteFuture:
        """Keep an update as it came until what it becomes is durable (its mark drops the copy)."""
        ...

    def held_updates(self) -> list[tuple[int, HeldUpdate]]:
        """The updates held and not yet taken, in update order."""
        ...

    def forget_updates(self, before: float) -> WriteFuture:
        """Drop the marks of updates taken before `before` (epoch seconds); the future's value: how many."""
        ...


class Store(UpdateMarks, Protocol):
    """What sessions and commands need from persistence (LmdbStore implements it).

    Reads return what is durable now, from any thread. Writes return at once with a WriteFuture and are
    applied in the order submitted; a record that cannot be decoded raises `UnreadableRecord`.
    """

    def header(self, key: str) -> SessionHeader | None:
        """The session's header, or None if there is no such session."""
        ...

    def canonical(self, key: str) -> str:
        """The stable key of a chat that changed id (a group upgraded to a supergroup); else `key` itself."""
        ...

    def turn(self, key: str, generation: int, seq: int) -> Turn | None:
        """One turn of one generation, or None if it is not stored."""
        ...

    def turns(self, key: str, generation: int, start: int = 0, stop: int | None = None) -> list[Turn]:
        """The turns with start <= seq < stop (no bound when None), oldest first."""
        ...

    def last_turns(self, key: str, generation: int, count: int) -> list[Turn]:
        """The newest `count` turns of the generation, oldest first."""
        ...

    def generations(self, key: str) -> list[int]:
        """The generations that still have stored turns, in ascending order."""
        ...

    def scan_conversations(self, key: str) -> tuple[list[Conversation], list[tuple[int, str]]]:
        """The session's past conversations in generation order, and (generation, reason) of the records that
        can't be read (written by a newer vigil, or damaged)."""
        ...

    def conversation(self, key: str, generation: int) -> Conversation | None:
        """One past conversation's record, or None; UnreadableRecord if it can't be read."""
        ...

    def newest_generation(self, key: str) -> int:
        """The highest generation the session has anything stored under (0 if none)."""
        ...

    def headers(self, user_id: int | None = None) -> list[SessionHeader]:
        """Every session (user_id None) or those the user takes part in; unreadable ones are skipped."""
        ...

    def scan_headers(self, user_id: int | None = None) -> tuple[list[SessionHeader], list[Unreadable]]:
        """Like `headers`, and the sessions skipped because their record can't be read, named."""
        ...

    def scan_activity(self, user_id: int | None = None) -> tuple[list[SessionActivity], list[Unreadable]]:
        """Like `scan_headers`, only each session's key and times (quick: what a listing sorts by)."""
        ...

    def has_session(self, key: str) -> bool:
        """Whether a header is stored for `key`, readable or not (nothing is decoded)."""
        ...

    def session_count(self) -> int:
        """How many session headers are stored."""
        ...

    def changed_elsewhere(self) -> bool:
        """Whether another process may have written since this one last committed (cheap)."""
        ...

    def inbox(self) -> list[tuple[int, InboxEntry]]:
        """Every received message no session has taken up yet, as (arrival id, entry), oldest first."""
        ...

    def inbox_count(self, key: str | None = None) -> int:
        """How many received messages wait in the inbox (for one session, or for all)."""
        ...

    def media_references(self) -> set[str]:
        """Digests of the media files any stored turn, pending input or inbox message names (from the index)."""
        ...

    def media_suspects(self) -> dict[str, bytes]:
        """The files a deletion dropped a reference to since the last sweep (digest -> its mark)."""
        ...

    def media_named(self, digests: Iterable[str]) -> tuple[set[str], list[bytes]]:
        """Of `digests`, those a record names now; and the index's stale entries met on the way."""
        ...

    def media_settle(self, looked_at: dict[str, bytes], stale: list[bytes]) -> WriteFuture:
        """A sweep is done with these marked files: their marks go (unless marked again since), and stale entries."""
        ...

    def suspect_media(self, digests: Iterable[str]) -> WriteFuture:
        """Mark files for the next sweep to look at."""
        ...

    def recovery_keys(self) -> list[str]:
        """Sessions holding unanswered messages or a turn cut short: answered after a restart."""
        ...

    def heartbeat_schedule(self) -> list[tuple[str, float]]:
        """(key, next due) of every session with heartbeats on."""
        ...

    def notes(self, key: str) -> list[Note]:
        """The session's notes, oldest first."""
        ...

    def usage_rows(self, user_id: int | None = None, since_day: str = "") -> list[UsageRow]:
        """Usage rows (of everyone, or one user) from `since_day` on; unreadable ones are skipped."""
        ...

    def scan_usage(self, user_id: int | None = None, since_day: str = ""
                   ) -> tuple[list[UsageRow], list[Unreadable]]:
        """Like `usage_rows`, and the rows skipped because they can't be read, named."""
        ...

    def user_cost_micros(self, user_id: int, day: str) -> int:
        """What the user spent on `day` (UTC, YYYY-MM-DD) across every session, in micro-dollars."""
        ...

    def commit(self, header: SessionHeader, turn: Turn | None = None, usage: Sequence[UsageEntry] = (),
               new_members: Iterable[int] = (), create: bool = False,
               previous: SessionHeader | None = None, urgent: bool = True,
               consumed: Sequence[int] = (), summary: Summary | None = None,
               move: ConversationMove | None = None) -> WriteFuture:
        """Persist the header with one turn, usage and members (and a compaction's summary, or the records of a
        switch of conversations), and delete the `consumed` inbox entries, all or nothing; SessionGone if
        deleted elsewhere."""
        ...

    def receive(self, arrival: int, entry: InboxEntry, updates: Sequence[int] = ()) -> WriteFuture:
        """Write a received message to the inbox under its arrival id (group commit, not waited);
        the webhook `updates` it came in are marked as taken in the same transaction."""
        ...

    def consume(self, key: str, arrivals: Sequence[int]) -> WriteFuture | None:
        """Delete these inbox entries of the session (None when there is nothing to delete)."""
        ...

    def delete_session(self, key: str, inbox_upto: int | None = None) -> WriteFuture:
        """Delete the session's header, turns, notes, indexes and inbox entries (up to `inbox_upto` when
        given), not its usage; resolves to the number of turns removed."""
        ...

    def prune_generations(self, key: str, before: float, generations: Collection[int] = ()) -> WriteFuture:
        """Delete the past conversations last active before `before`, and `generations`; never the current one,
        nothing of a pinned session; resolves to how many went."""
        ...

    def drop_generation(self, key: str, generation: int) -> WriteFuture:
        """Delete one past conversation: its record, turns and summaries; resolves to the turns removed."""
        ...

    def summaries(self, key: str, generation: int, newest: int | None = None) -> list[Summary]:
        """The generation's compaction summaries (the `newest` ones only, if given), oldest first."""
        ...

    def mark_undelivered(self, key: str, seq: int) -> WriteFuture:
        """Record that turn `seq`'s reply may not have arrived, so it is sent again after a restart."""
        ...

    def add_note(self, key: str, note: Note, keep: int) -> WriteFuture:
        """Append a note, dropping the oldest beyond `keep`."""
        ...

    def clear_notes(self, key: str) -> WriteFuture:
        """Delete every note of the session."""
        ...

    def set_alias(self, alias: str, canonical: str) -> WriteFuture:
        """Make `canonical(alias)` answer `canonical` from now on."""
        ...

    def sync(self) -> None:
        """Wait until everything submitted so far is durable."""
        ...

    def close(self) -> None:
        """Write what is queued, then release the store; later writes fail with StoreError."""
        ...

    @property
    def writer_alive(self) -> bool:
        """Whether writes are still being made durable (the watchdog's question)."""
        ...
