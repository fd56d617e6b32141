"""What a session is: its header, what is committed and what is dirty, pending messages, caches.

`Session` is a plain object (no pykka, no threads): the actor (actors/session.py) owns one and
calls into it, and so do the parts it composes (commands, turns, heartbeats, recovery). Keeping
the bookkeeping here means every rule about what reaches disk and when (the header written with
the inbox messages it holds, a refused commit losing nothing, a record another process deleted
or damaged) is one class, testable over a real store without an actor.

Every user message and session command was written to the durable inbox before it reached the
session; `unconsumed` holds the arrival ids only in memory, and the next commit that holds them
(the header with `pending`, or the turn with those inputs) takes them out of the inbox in the same
transaction.

A session whose stored record can't be read (damaged, or a newer vigil's) is "broken": it writes
nothing, answers every message with why, and reads the record again on each one, so that once an
operator deleted it the chat goes on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from vigil.actors.core.registry import Registry, SessionControl
from vigil.actors.engine.runner import ToolSet, TurnRunner
from vigil.actors.engine.window import HistoryWindow
from vigil.config.settings import Settings
from vigil.logs import get_logger
from vigil.media.files import MediaStore
from vigil.model.prices import to_usage
from vigil.policy.budget import Allowance
from vigil.policy.roles import ChatAdmins, Roles
from vigil.ports import Button, Outbox, Reply, Store, TokenUsage, UsageKind
from vigil.ports.store import ConversationMove
from vigil.recall.live import NO_RECALL, RecallPort
from vigil.records.schema import Heartbeat, Note, SessionHeader, Summary, Target, Turn, UnreadableRecord, Usage
from vigil.store.store import CorruptRecord, SessionGone, UsageEntry, utc_day
from vigil.telemetry.metrics import NULL_METRICS, Metrics
from vigil.tools.approvals import PendingApprovals
from vigil.tools.toolbox import Toolbox
from vigil.tools.workspace import start_header

if TYPE_CHECKING:  # the MCP SDK takes most of a second to import: only a vigil with servers loads it
    from vigil.mcp.manager import McpManager
    from vigil.tools.skills import Skills


@dataclass(frozen=True)
class SessionDeps:
    """Everything a session needs, shared by all sessions of the process."""

    settings: Settings
    store: Store
    outboxes: dict[str, Outbox]
    runner: TurnRunner
    toolbox: Toolbox
    registry: Registry
    allowance: Allowance
    clock: Callable[[], float] = time.time
    schedule_heartbeat: Callable[[str, float | None], None] = lambda key, due: None
    media: MediaStore | None = None  # the files users sent (None: a test without media)
    sweep_media: Callable[[], object] = lambda: None  # ask for the files no session references to go
    metrics: Metrics = NULL_METRICS  # told of turns, heartbeats, schedules (vigil/telemetry/metrics.py)
    approvals: PendingApprovals = field(default_factory=PendingApprovals)  # prompts waiting for a tap
    chat_admins: ChatAdmins = field(default_factory=ChatAdmins)  # who administers a group, per channel
    recall: RecallPort = NO_RECALL  # the recall index: fed final turns, told of deletions first (vigil/recall/)
    mcp: McpManager | None = None  # the operator's MCP servers (None: VIGIL_MCP_CONFIG names none)
    skills: Skills | None = None  # the Agent Skills of VIGIL_SKILLS_DIR (None: a test without them)

    def outbox(self, target: Target) -> Outbox | None:
        return self.outboxes.get(target.channel)

    @property
    def roles(self) -> Roles:
        """Who may do what (vigil/policy/roles.py)."""
        return Roles(self.settings, self.chat_admins)


def is_group(header: SessionHeader) -> bool:
    return header.chat_type in ("group", "supergroup")


def usage_of(calls: Sequence[tuple[str, TokenUsage]]) -> Usage:
    """What a turn's model calls cost, priced per model."""
    total = Usage()
    for model, usage in calls:
        total = total + to_usage(model, usage)
    return total


class Session:
    """One session's state and its store bookkeeping; used from its actor's thread only."""

    def __init__(self, key: str, deps: SessionDeps, control: SessionControl) -> None:
        self.key = key
        self.deps = deps
        self.control = control
        self.header: SessionHeader | None = None
        self.committed: SessionHeader | None = None  # the header as last written: index flags follow changes
        self.dirty = False  # the header changed in memory since the last commit
        self.unsynced = False  # a commit nobody waited for may still be in flight
        self.new_members: set[int] = set()
        self.window: HistoryWindow | None = None
        self.current: Turn | None = None  # the user turn running, until it is written down as open
        self.turn_ended_at = 0.0  # wall clock: a heartbeat that fell due before this was due during a turn
        self.notes_cache: list[Note] | None = None
        self.toolset_cache: tuple[tuple[str, str], ToolSet] | None = None
        self.run_scheduled = False
        self.resume_turn: Turn | None = None
        # Arrival ids of inbox messages held in memory only, and those sent in a commit nobody waited
        # for (a refused one must not lose them): the next commit that holds them consumes them.
        self.unconsumed: list[int] = []
        self.in_flight: list[int] = []
        self.last_inbox_id = 0  # the newest message seen: /forget drops the inbox up to it, not beyond
        self.handling = 0  # the arrival id of the command being handled: one that kills the actor is dropped
        self.broken = ""
        self.log = get_logger(__name__, session=key)
        self.log_turns = logging.getLogger("vigil.session").isEnabledFor(logging.INFO)

    # ------------------------------------------------------------------ reading

    def has_work(self) -> bool:
        return self.run_scheduled or self.resume_turn is not None or bool(self.header and self.header.pending)

    def idle_since(self, since: float) -> bool:
        """Nothing happened here after `since` and nothing waits: what a cleanup listed is still idle."""
        header = self.header
        if header is None:
            return True
        activity = max(header.last_activity, header.last_turn_at, header.created_at)
        return activity <= since and not header.pinned and not self.has_work() and not self.control.busy

    def notes(self) -> list[Note]:
        """This session's notes, read once and kept while the session lives (only it writes them)."""
        if self.notes_cache is None:
            self.notes_cache = self.deps.store.notes(self.key)
        return self.notes_cache

    def forget_cached(self) -> None:
        """Drop what is cached from the store (after /new, /forget, notes changes)."""
        self.window = None
        self.notes_cache = None

    def release(self) -> None:
        """Break the cycles through this session (its cached tools hold it), so it is freed at once.

        Left to the cyclic collector, a hundred thousand evicted sessions pile up between collections.
        """
        self.toolset_cache = None
        self.window = None
        self.notes_cache = None

    # ------------------------------------------------------------------ the header

    def ensure_header(self, target: Target, title: str = "", chat_type: str = "") -> SessionHeader:
        """The header, created on a chat's first message; a user message also refreshes the target."""
        now = self.deps.clock()
        if self.header is None:
            settings = self.deps.settings
            self.header = start_header(SessionHeader(
                key=self.key, incarnation=random.getrandbits(62), created_at=now, generation_started_at=now,
                target=target, cwd=str(settings.workdir_root), model=settings.model, title=title,
                chat_type=chat_type, heartbeat=Heartbeat(interval_s=settings.heartbeat_default_interval_s),
            ), settings.workdir_root)
        elif (target, title or self.header.title, chat_type or self.header.chat_type) != (
                self.header.target, self.header.title, self.header.chat_type):
            self.header = msgspec.structs.replace(self.header, target=target, title=title or self.header.title,
                                                  chat_type=chat_type or self.header.chat_type)
        return self.header

    def set_beat(self, **changes: Any) -> Heartbeat:
        """Change the heartbeat settings in memory (the caller commits)."""
        assert self.header is not None
        beat = msgspec.structs.replace(self.header.heartbeat, **changes)
        self.header = msgspec.structs.replace(self.header, heartbeat=beat)
        return beat

    def usage_entries(self, user_id: int, kind: UsageKind, usage: Usage) -> tuple[UsageEntry, ...]:
        if usage.calls == 0:
            return ()
        return (UsageEntry(user_id=user_id, day=utc_day(self.deps.clock()), key=self.key, kind=kind, usage=usage),)

    # ------------------------------------------------------------------ writing

    def commit(self, turn: Turn | None = None, usage: Sequence[UsageEntry] = (), wait: bool = False,
               summary: Summary | None = None, move: ConversationMove | None = None) -> bool:
        """Persist the header (and a turn, a summary, a switch of conversations). Waiting makes it durable;
        False if the store refused."""
        assert self.header is not None
        if self.broken:
            return False
        members = tuple(self.new_members)
        self.new_members.clear()
        consumed: tuple[int, ...] = ()
        # Messages moved into the turn being answered are held by this commit only if it writes that turn.
        if (self.unconsumed or self.in_flight) and (turn is not None or self.current is None):
            consumed = (*self.in_flight, *self.unconsumed)
        future = self.deps.store.commit(self.header, turn, usage, members, create=self.committed is None,
                                        previous=self.committed, urgent=wait, consumed=consumed, summary=summary,
                                        move=move)
        self.committed = self.header
        self.dirty = False
        self.publish()
        if not wait:
            self.unsynced = True
            if consumed:
                self.in_flight, self.unconsumed = list(consumed), []
            return True
        self.unsynced = False  # the writer keeps order: a durable commit makes every earlier one durable
        try:
            future.result()
            if turn is not None and turn.final:  # durable now: searchable soon (a queue append, no more)
                self.deps.recall.feed(self.key, self.header.incarnation, self.header.generation, turn)
        except SessionGone:
            self._recreate_after_delete(turn, usage, consumed)
        except CorruptRecord as exc:  # found at commit time: another process wrote what we can't read
            self.break_(exc)
            return False
        except Exception as exc:
            self.log.error("session.commit_failed", error=repr(exc))
            return False  # the inbox still holds what this commit would have consumed: the next one tries
        if consumed:
            self.in_flight, self.unconsumed = [], []
        return True

    def consume_alone(self, arrival: int) -> None:
        """Take a message that needs no session commit (or must not be retried) out of the inbox."""
        if arrival and arrival in self.unconsumed:
            self.unconsumed.remove(arrival)
            self.deps.store.consume(self.key, (arrival,))

    def forget(self) -> int:
        """Delete everything stored for this session and start afresh; the number of turns deleted."""
        # Messages queued behind this /forget (or cleanup) came later and stay in the inbox. The recall index
        # reads the words it must take out from the store: first the index, then the store.
        self.deps.recall.forget(self.key)
        removed = int(self.deps.store.delete_session(self.key, inbox_upto=self.last_inbox_id).result() or 0)
        self.deps.schedule_heartbeat(self.key, None)
        self.broken = ""  # whatever could not be read is gone with the rest
        self.unconsumed, self.in_flight = [], []
        self.header = self.committed = None
        self.dirty = self.unsynced = False
        self.resume_turn = self.current = None
        self.forget_cached()
        self.publish()
        self.deps.sweep_media()  # its files, unless another chat shares them (off this thread)
        return removed

    # ------------------------------------------------------------------ written elsewhere

    def deleted_elsewhere(self) -> bool:
        """Did another process (vigil sessions delete/cleanup) delete this session since we wrote it?"""
        if self.committed is None or not self.deps.store.changed_elsewhere():
            return False
        try:
            stored = self.deps.store.header(self.key)
        except UnreadableRecord as exc:
            self.break_(CorruptRecord(self.key, exc.reason))
            return False
        return stored is None or stored.incarnation != self.committed.incarnation

    def _recreate_after_delete(self, turn: Turn | None, usage: Sequence[UsageEntry],
                               consumed: Sequence[int] = ()) -> None:
        """Another process deleted this session: carry on as a fresh one rather than resurrect the old."""
        assert self.header is not None
        self.log.info("session.deleted_elsewhere")
        now = self.deps.clock()
        self.header = msgspec.structs.replace(
            self.header, incarnation=random.getrandbits(62), created_at=now, generation=1,
            generation_started_at=now, next_seq=1 if turn is not None else 0, window_start=0, usage=Usage(),
            heartbeat_usage=Usage(), turns_total=1 if turn else 0,
            participants=self.header.participants[-1:], open_turn=None if turn is None or turn.final else 0)
        self.window = None
        fresh = msgspec.structs.replace(turn, seq=0) if turn is not None else None
        self.deps.store.commit(self.header, fresh, usage, self.header.participants, create=True,
                               consumed=consumed).result()
        self.committed = self.header
        if fresh is not None and fresh.final:
            self.deps.recall.feed(self.key, self.header.incarnation, self.header.generation, fresh)

    def break_(self, error: Exception) -> None:
        """The stored session can't be read (damaged, or a newer vigil's): refuse everything until it is removed.

        Nothing is written from now on: the record may hold a newer vigil's data. What waited is dropped
        from memory (it could not be saved anyway), and the chat is told why, once, now.
        """
        self.broken = str(error)
        self.log.error("session.unreadable", error=self.broken)
        target = self.header.target if self.header is not None else None
        if self.header is not None:
            self.header = msgspec.structs.replace(self.header, pending=())
        self.dirty = self.unsynced = False
        self.resume_turn = self.current = None
        self.forget_cached()
        self.publish()
        if target is not None:
            self.send(f"⚠️ This chat's stored session can't be used: {self.broken}", target=target)

    def readable_again(self) -> bool:
        """Read the record again: once an operator deleted (or fixed) it, the session is reset to load it."""
        try:
            self.deps.store.header(self.key)
        except UnreadableRecord:
            return False
        except Exception as exc:
            self.log.warning("session.recheck_failed", error=repr(exc))
            return False
        self.log.info("session.readable_again")
        self.broken = ""
        self.header = self.committed = None
        self.dirty = self.unsynced = self.run_scheduled = False
        return True

    def refuse_broken(self, message: Any) -> None:
        target = getattr(message, "target", None)
        if isinstance(target, Target):
            outbox = self.deps.outbox(target)
            if outbox is not None:
                outbox.send(self.key, target, Reply(text=f"⚠️ This chat's stored session can't be used: {self.broken}"))

    # ------------------------------------------------------------------ telling

    def publish(self) -> None:
        if self.broken:  # /status then reads the store, and says the record can't be read
            self.control.publish(None, 0)
            return
        self.control.publish(self.header, len(self.header.pending) if self.header else 0)

    def send(self, text: str, markdown: bool = False, target: Target | None = None) -> None:
        target = target or (self.header.target if self.header else None)
        if target is None:
            return
        outbox = self.deps.outbox(target)
        if outbox is not None:
            outbox.send(self.key, target, Reply(text=text, markdown=markdown))

    def reply(self, target: Target, text: str, buttons: tuple[tuple[Button, ...], ...] = ()) -> None:
        """Answer a command in the chat it came from."""
        outbox = self.deps.outbox(target)
        if outbox is not None:
            outbox.send(self.key, target, Reply(text=text, buttons=buttons))
