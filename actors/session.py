"""SessionActor: one per chat; owns its header (history pointer, cwd, model, heartbeat).

One turn at a time. A message that arrives during a turn waits in the mailbox;
each user message is appended to the header's `pending` list and the actor
tells itself `RunTurn`, which lands behind everything already queued, so when a
turn ends every message that came meanwhile is answered together in one
follow-up turn.

Every user message and session command was written to the durable inbox before
it reached the mailbox (vigil/inbox.py); the actor keeps the arrival ids of
those it holds only in memory (`unconsumed`) and its next commit that holds
them (the header with `pending`, or the turn with those inputs) takes them out
of the inbox in the same transaction. So a message waiting behind a long turn
survives `kill -9`: the next start tells it again.

A turn is written (final) before its reply is shown, and before that (open) as
soon as it shows anything, runs a tool, or has taken a quarter of a second; a
restart (or `kill -9`) answers an open turn again instead of losing it, going
on from the tool rounds it stored (no tool call runs twice). A fast turn is
thus one durable commit, not two; its question is safe in the durable inbox
until then (see vigil/inbox.py).

A session whose stored record can't be read (damaged, or a newer vigil's) is
"broken": it writes nothing, answers every message with why, and reads the
record again on each one, so that once an operator deleted it the chat goes on.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import pykka

from actors.display import CheckpointedDisplay
from actors.meter import Meter
from actors.protocol import (
    ActorFailed,
    DeliveryFailed,
    Drain,
    Evict,
    EvictDeclined,
    Evicted,
    Forget,
    HeartbeatDue,
    Prune,
    Recover,
    RunTurn,
    SessionCommand,
    TargetMoved,
    UserText,
)
from actors.registry import Registry, SessionControl
from actors.turn import ToolSet, TurnOutcome, TurnRunner, resume_exchange
from actors.window import HistoryWindow
from vigil.budget import Allowance, call_guard
from vigil.cancel import CancelToken
from vigil.logs import get_logger
from vigil.model.history import input_text, join, with_cache_point
from vigil.model.prices import to_usage
from vigil.model.prompt import system_blocks
from vigil.ports import ModelRequest, Outbox, Reply, Store, TokenUsage, UsageKind
from vigil.settings import Settings
from vigil.store.schema import Heartbeat, Input, Note, SessionHeader, Target, Turn, UnreadableRecord, Usage
from vigil.store.store import CorruptRecord, SessionGone, UsageEntry, utc_day
from vigil.tools.outcome import ToolOutcome
from vigil.tools.toolbox import Toolbox
from vigil.workspace import settle, start_header, workspace_of

MAX_PARTICIPANTS = 200
RESTART_ATTEMPTS = 2
SAVE_NOTE_TOOL: dict[str, Any] = {
    "name": "save_note",
    "description": ("Save a short note to this chat's scratchpad: your memory across turns and check-ins. "
                    "Notes are shown to you, newest first, in every later turn of this chat."),
    "input_schema": {"type": "object", "properties": {"text": {"type": "string",
                                                               "description": "The note, one or two lines."}},
                     "required": ["text"]},
}


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

    def outbox(self, target: Target) -> Outbox | None:
        return self.outboxes.get(target.channel)


def is_group(header: SessionHeader) -> bool:
    return header.chat_type in ("group", "supergroup")


class SessionActor(pykka.ThreadingActor):
    """The actor of one session key."""

    # vigil always stops its actors itself (Runtime.shutdown); should an unexpected error skip that,
    # the process must still exit rather than hang on threads nobody will stop.
    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka's hook for actor implementations: the C SimpleQueue is much cheaper than queue.Queue.
        return queue.SimpleQueue()

    def __init__(self, key: str, deps: SessionDeps, supervisor: pykka.ActorRef[Any], control: SessionControl) -> None:
        super().__init__()
        self.key = key
        self.deps = deps
        self.supervisor = supervisor
        self.control = control
        self.header: SessionHeader | None = None
        self.committed: SessionHeader | None = None  # the header as last written: index flags follow changes
        self.dirty = False  # the header changed in memory since the last commit
        self.unsynced = False  # a commit nobody waited for may still be in flight
        self.new_members: set[int] = set()
        self.window: HistoryWindow | None = None
        self.current: Turn | None = None  # the user turn running, until it is written down as open

        self.turn_ended_at = 0.0  # wall clock: a heartbeat that fell due before this was due during a turn
        self._notes: list[Note] | None = None
        self._toolset: tuple[tuple[str, str], ToolSet] | None = None
        self.run_scheduled = False
        self.resume_turn: Turn | None = None
        # Arrival ids of inbox messages held in memory only, and those sent in a commit nobody waited
        # for (a refused one must not lose them): the next commit that holds them consumes them.
        self.unconsumed: list[int] = []
        self.in_flight: list[int] = []
        self.last_inbox_id = 0  # the newest message seen: /forget drops the inbox up to it, not beyond
        self.handling = 0  # the arrival id of the command being handled: one that kills the actor is dropped
        self.broken = ""
        self.log = get_logger("vigil.session", session=key)
        self.log_turns = logging.getLogger("vigil.session").isEnabledFor(logging.INFO)

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        try:
            self._load()
        except Exception as exc:  # a session that cannot load answers with why, instead of dying silently
            self.broken = str(exc)
            self.log.error("session.load_failed", error=self.broken)

    def _load(self) -> None:
        try:
            header = self.deps.store.header(self.key)
        except UnreadableRecord as exc:
            raise CorruptRecord(self.key, exc.reason) from None
        if header is None:
            return
        self.committed = header
        # Placed as it is written next (a pre-workspace header gains its workspace): see vigil/workspace.py.
        self.header = header = settle(header, self.deps.settings.workdir_root)
        if header.open_turn is not None:
            self._recover_open_turn(header.open_turn)
        if self.header.undelivered:
            self.resend_undelivered()
        if self.header.pending or self.resume_turn is not None:
            self._schedule_run()
        self._publish()

    def on_failure(self, exception_type: type[BaseException] | None, exception_value: BaseException | None,
                   traceback: TracebackType | None) -> None:
        """Hand back what we had not handled; the Supervisor respawns from the durable state."""
        undelivered: list[object] = []
        while True:
            try:
                envelope = self.actor_inbox.get_nowait()  # type: ignore[attr-defined]
            except Exception:
                break
            message = getattr(envelope, "message", None)
            if message is not None and not isinstance(message, RunTurn):
                undelivered.append(message)
        self.log.error("session.failed", error=repr(exception_value), undelivered=len(undelivered))
        try:
            if self.header is not None and (self.dirty or self.current is not None):
                self.commit(self.current, wait=True)  # the turn cut short stays open: the respawn answers it
            # A command that failed is not run again after a restart (it might fail the same way each time).
            self._consume_alone(self.handling)
            self.deps.store.sync()
        except Exception as exc:
            self.log.error("session.failed_sync", error=repr(exc))
        self.control.end()
        if self.header is not None and not self.deps.registry.shutting_down.is_set():
            self._send("⚠️ Something went wrong in this chat's session; it was restarted from its last saved state.")
        self.deps.registry.remove(self.key, self.control)
        self.supervisor.tell(ActorFailed(key=self.key, undelivered=tuple(undelivered)))
        self._release()

    def on_stop(self) -> None:
        """Shutdown or eviction: what is only in memory (messages not yet answered) goes to disk."""
        if (self.dirty or self.unconsumed) and self.header is not None:
            self.commit(wait=True)
        self._release()

    def _release(self) -> None:
        """Break the cycles through this actor (its cached tools hold it), so it is freed at once.

        Left to the cyclic collector, a hundred thousand evicted sessions pile up between collections.
        """
        self._toolset = None
        self.window = None
        self._notes = None

    # ------------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RunTurn):
            self.run_scheduled = False
            if not self.deps.registry.shutting_down.is_set() and not self.broken:
                self._answer_pending()
                if self.resume_turn is not None or (self.header is not None and self.header.pending):
                    self._schedule_run()  # a resumed turn went first; what else waits goes next
            return None
        if isinstance(message, Evict):
            return self._on_evict()
        if isinstance(message, Drain):
            if self._has_work() and not self.deps.registry.shutting_down.is_set():
                self.actor_ref.tell(message)  # behind the RunTurn already queued
            else:
                message.done.set()
            return None
        if isinstance(message, Forget | Prune):
            try:
                if isinstance(message, Prune):
                    self.prune(message.before)
                elif message.idle_since is None or self._idle_since(message.idle_since):
                    self.forget()
            finally:
                message.done.set()
            return None
        if isinstance(message, UserText | SessionCommand) and message.inbox_id:
            self.last_inbox_id = max(self.last_inbox_id, message.inbox_id)
        if self.broken and self._still_broken():
            self._refuse_broken(message)
            if isinstance(message, UserText | SessionCommand):
                self._consume_alone(message.inbox_id)  # the user was told; answering it later would not help
            return None
        if isinstance(message, UserText):
            self._on_user_text(message)
        elif isinstance(message, SessionCommand):
            # Commands keep their place: messages sent before "/new" (or "/model x") are answered first,
            # under the old settings, then the command acts; the RunTurn already queued finds them done.
            if not self.deps.registry.shutting_down.is_set():
                for _ in range(2):  # a turn resumed after a restart goes first, then the messages
                    if self.header is None or not (self.header.pending or self.resume_turn is not None):
                        break
                    self._answer_pending()
            if message.inbox_id:
                self.unconsumed.append(message.inbox_id)  # a command that commits takes itself out of the inbox
            self.handling = message.inbox_id
            self.on_command(message)
            self.handling = 0
            self._consume_alone(message.inbox_id)  # one that did not commit (a reply only) is done all the same
        elif isinstance(message, HeartbeatDue):
            self.on_heartbeat(message)
        elif isinstance(message, DeliveryFailed):
            self.on_delivery_failed(message)
        elif isinstance(message, TargetMoved):
            if self.header is not None and self.header.target.chat_id != message.chat_id:
                self.header = msgspec.structs.replace(
                    self.header, target=msgspec.structs.replace(self.header.target, chat_id=message.chat_id))
                self.commit(wait=True)
        elif isinstance(message, Recover):
            pass  # on_start already picked up what the store holds
        else:
            self.log.warning("session.unknown_message", kind=type(message).__name__)
        return None

    # Overridden by the command and heartbeat mixins of the concrete actor.
    def on_command(self, message: SessionCommand) -> None:
        self._send(f"Unknown command /{message.name}.")

    def on_heartbeat(self, message: HeartbeatDue) -> None:
        return None

    def on_delivery_failed(self, message: DeliveryFailed) -> None:
        self.log.warning("session.delivery_failed", permanent=message.permanent, reason=message.reason,
                         seq=message.seq)
        header = self.header
        if message.permanent or message.seq is None or header is None or message.seq in header.undelivered:
            return
        # Retries ran out (an outage): keep the reply, send it again before the next turn or after a restart.
        self.header = msgspec.structs.replace(header, undelivered=(*header.undelivered, message.seq)[-50:])
        self.commit(wait=True)

    def resend_undelivered(self) -> None:
        """Send again the final replies that may not have reached the chat."""
        assert self.header is not None
        header = self.header
        outbox = self.deps.outbox(header.target)
        if outbox is None:
            return
        for seq in header.undelivered:
            turn = self.deps.store.turn(self.key, header.generation, seq)
            if turn is not None and (turn.reply.strip() or turn.note):
                text = f"{turn.reply}\n\n_{turn.note}_" if turn.note and turn.reply.strip() else turn.reply or turn.note
                outbox.send(self.key, header.target, Reply(text=text, markdown=True), ref=seq)
        self.log.info("session.resent_undelivered", replies=len(header.undelivered))
        self.header = msgspec.structs.replace(header, undelivered=())
        self.commit(wait=True)

    def _break(self, error: Exception) -> None:
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
        self._publish()
        if target is not None:
            self._send(f"⚠️ This chat's stored session can't be used: {self.broken}", target=target)

    def _still_broken(self) -> bool:
        """Read the record again: once an operator deleted (or fixed) it, the chat works again."""
        try:
            self.deps.store.header(self.key)
        except UnreadableRecord:
            return True
        except Exception as exc:
            self.log.warning("session.recheck_failed", error=repr(exc))
            return True
        self.log.info("session.readable_again")
        self.broken = ""
        self.header = self.committed = None
        self.dirty = self.unsynced = self.run_scheduled = False
        try:
            self._load()
        except Exception as exc:
            self.broken = str(exc)
            return True
        return False

    def _refuse_broken(self, message: Any) -> None:
        target = getattr(message, "target", None)
        if isinstance(target, Target):
            outbox = self.deps.outbox(target)
            if outbox is not None:
                outbox.send(self.key, target, Reply(text=f"⚠️ This chat's stored session can't be used: {self.broken}"))

    def _idle_since(self, since: float) -> bool:
        """Nothing happened here after `since` and nothing waits: what a cleanup listed is still idle."""
        header = self.header
        if header is None:
            return True
        activity = max(header.last_activity, header.last_turn_at, header.created_at)
        return activity <= since and not self._has_work() and not self.control.busy

    def _has_work(self) -> bool:
        return self.run_scheduled or self.resume_turn is not None or bool(self.header and self.header.pending)

    def _on_evict(self) -> None:
        if self._has_work() or self.control.busy:
            self.supervisor.tell(EvictDeclined(key=self.key))
            return
        # Whatever this actor wrote is on disk before a successor reads it.
        if self.dirty and self.header is not None:
            self.commit(wait=True)
        elif self.unsynced:
            self.deps.store.sync()
        self.deps.registry.remove(self.key, self.control)
        self.supervisor.tell(Evicted(key=self.key))
        self.stop()

    # ------------------------------------------------------------------ header

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

    def commit(self, turn: Turn | None = None, usage: Sequence[UsageEntry] = (), wait: bool = False) -> bool:
        """Persist the header (and a turn). Waiting makes it durable; False if the store refused."""
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
                                        previous=self.committed, urgent=wait, consumed=consumed)
        self.committed = self.header
        self.dirty = False
        self._publish()
        if not wait:
            self.unsynced = True
            if consumed:
                self.in_flight, self.unconsumed = list(consumed), []
            return True
        self.unsynced = False  # the writer keeps order: a durable commit makes every earlier one durable
        try:
            future.result()
        except SessionGone:
            self._recreate_after_delete(turn, usage, consumed)
        except CorruptRecord as exc:  # found at commit time: another process wrote what we can't read
            self._break(exc)
            return False
        except Exception as exc:
            self.log.error("session.commit_failed", error=repr(exc))
            return False  # the inbox still holds what this commit would have consumed: the next one tries
        if consumed:
            self.in_flight, self.unconsumed = [], []
        return True

    def _consume_alone(self, arrival: int) -> None:
        """Take a message that needs no session commit (or must not be retried) out of the inbox."""
        if arrival and arrival in self.unconsumed:
            self.unconsumed.remove(arrival)
            self.deps.store.consume(self.key, (arrival,))

    def forget(self) -> int:
        """Delete everything stored for this session and start afresh; the number of turns deleted."""
        # Messages queued behind this /forget (or cleanup) came later and stay in the inbox.
        removed = int(self.deps.store.delete_session(self.key, inbox_upto=self.last_inbox_id).result() or 0)
        self.deps.schedule_heartbeat(self.key, None)
        self.broken = ""  # whatever could not be read is gone with the rest
        self.unconsumed, self.in_flight = [], []
        self.header = self.committed = None
        self.dirty = self.unsynced = False
        self.resume_turn = self.current = None
        self.forget_cached()
        self._publish()
        return removed

    def prune(self, before: float) -> int:
        """Delete past generations that ended before `before`; how many went."""
        if self.header is None:
            return 0
        old = [g for g in self.header.past_generations if g.ended_at < before]
        for info in old:
            self.deps.store.drop_generation(self.key, info.generation).result()
        if old:
            kept = tuple(g for g in self.header.past_generations if g.ended_at >= before)
            self.header = msgspec.structs.replace(self.header, past_generations=kept)
            self.commit(wait=True)
        return len(old)

    def _deleted_elsewhere(self) -> bool:
        """Did another process (vigil sessions delete/cleanup) delete this session since we wrote it?"""
        if self.committed is None or not self.deps.store.changed_elsewhere():
            return False
        try:
            stored = self.deps.store.header(self.key)
        except UnreadableRecord as exc:
            self._break(CorruptRecord(self.key, exc.reason))
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
            generation_started_at=now, next_seq=1 if turn is not None else 0, window_start=0,
            past_generations=(), usage=Usage(), heartbeat_usage=Usage(), turns_total=1 if turn else 0,
            participants=self.header.participants[-1:], open_turn=None if turn is None or turn.final else 0)
        self.window = None
        fresh = msgspec.structs.replace(turn, seq=0) if turn is not None else None
        self.deps.store.commit(self.header, fresh, usage, self.header.participants, create=True,
                               consumed=consumed).result()
        self.committed = self.header

    def _publish(self) -> None:
        if self.broken:  # /status then reads the store, and says the record can't be read
            self.control.publish(None, 0)
            return
        self.control.publish(self.header, len(self.header.pending) if self.header else 0)

    def _schedule_run(self) -> None:
        if not self.run_scheduled:
            self.run_scheduled = True
            self.actor_ref.tell(RunTurn())

    def _run_soon(self) -> None:
        """Answer what is pending: at once if nothing else waits in the mailbox, else behind what does."""
        if not self.run_scheduled and self.actor_inbox.empty() and not self.deps.registry.shutting_down.is_set():
            self._answer_pending()
            if self.resume_turn is not None or (self.header is not None and self.header.pending):
                self._schedule_run()
        else:
            self._schedule_run()

    def _send(self, text: str, markdown: bool = False, target: Target | None = None) -> None:
        target = target or (self.header.target if self.header else None)
        if target is None:
            return
        outbox = self.deps.outbox(target)
        if outbox is not None:
            outbox.send(self.key, target, Reply(text=text, markdown=markdown))

    # ------------------------------------------------------------------ user turns

    def _on_user_text(self, message: UserText) -> None:
        header = self.ensure_header(message.target, message.chat_title, message.chat_type)
        item = Input(text=message.text, at=message.at, user_id=message.sender.user_id,
                     user_name=message.sender.name or message.sender.username, message_id=message.message_id)
        if message.inbox_id:
            self.unconsumed.append(message.inbox_id)
        participants = header.participants
        if message.sender.user_id not in participants:
            self.new_members.add(message.sender.user_id)
            participants = (*participants, message.sender.user_id)[-MAX_PARTICIPANTS:]
        # Not committed here: it is safe in the inbox until the open turn that answers it (or the final
        # turn, or the header at shutdown) is written and takes it out in the same transaction.
        self.header = msgspec.structs.replace(header, pending=(*header.pending, item), participants=participants,
                                              last_activity=message.at)
        self.dirty = True
        self._publish()
        self._run_soon()

    def _answer_pending(self) -> None:
        if self.header is None:
            return
        now = self.deps.clock()
        if self.resume_turn is not None:
            old, self.resume_turn = self.resume_turn, None
            # The tool rounds stored are kept: the model continues from them, and no tool runs twice.
            turn = msgspec.structs.replace(
                old, status="open", messages=resume_exchange(old.messages), reply="", note="",
                attempts=old.attempts + 1,
                superseded_reply=old.reply or old.superseded_reply, started_at=now)
            self.header = msgspec.structs.replace(self.header, open_turn=turn.seq)
        elif self.header.pending:
            if self.header.undelivered:
                self.resend_undelivered()
            deleted = self._deleted_elsewhere()
            if self.broken:
                return
            if deleted:
                # Start afresh with the messages that are waiting; nothing deleted may reach the model.
                self.log.info("session.deleted_elsewhere")
                waiting, target = self.header.pending, self.header.target
                title, kind, members = self.header.title, self.header.chat_type, self.header.participants
                self.header = self.committed = None
                self.forget_cached()
                self.ensure_header(target, title, kind)
                assert self.header is not None
                self.header = msgspec.structs.replace(self.header, pending=waiting, participants=members)
                self.new_members.update(members)
            header = self.header
            turn = Turn(seq=header.next_seq, kind="user", started_at=now, inputs=header.pending, model=header.model)
            self.header = msgspec.structs.replace(
                header, pending=(), open_turn=turn.seq, next_seq=header.next_seq + 1,
                turns_total=header.turns_total + 1, last_turn_at=now)
        else:
            return
        self.current = turn  # written as open only if it shows anything or takes a while (see the docstring)
        self.run_user_turn(turn)

    def run_user_turn(self, turn: Turn) -> None:
        assert self.header is not None
        target = self.header.target
        outbox = self.deps.outbox(target)
        if outbox is None:
            self.log.error("session.no_outbox", channel=target.channel)
            return
        cancel = CancelToken()
        self.control.begin("answering", cancel)
        started = time.monotonic()
        stream = outbox.stream(self.key, target, ref=turn.seq)
        outbox.typing(target)
        live = {"turn": turn}
        # Each write of the open turn carries what its calls used so far: a crash is charged on recovery.
        meter = Meter()

        def checkpoint(text: str) -> bool:
            live["turn"] = msgspec.structs.replace(live["turn"], reply=text, usage=meter.usage())
            self.current = None
            return self.commit(live["turn"], wait=True)

        def on_round(messages: tuple[Any, ...], text: str) -> None:
            live["turn"] = msgspec.structs.replace(live["turn"], messages=messages, reply=text, usage=meter.usage())
            self.current = None
            if not self.commit(live["turn"], wait=True) and self.broken:
                cancel.cancel("stopped")  # nothing of this turn can be kept: run no further tools

        def slow() -> None:
            if self.current is not None:
                self.current = None
                # Not waited for: only the final commit must be on disk before the reply.
                self.commit(msgspec.structs.replace(turn, usage=meter.usage()))

        display = CheckpointedDisplay(stream, outbox, target, outbox.update_interval(target), checkpoint, self.key,
                                      slow=slow)
        payer = turn.inputs[0].user_id if turn.inputs else 0  # whose message started the turn pays for it
        may_call = call_guard(self.deps.allowance, payer, cancel, first_counted=True, on_wait=display.progress)
        try:
            request = self.build_request(turn)
            outcome = self.deps.runner.run(request, cancel, display, self.toolset(), on_round,
                                           resume=turn.messages, on_tool=on_round, may_call=may_call, meter=meter)
        finally:
            display.close()
            self.control.end()
            self.turn_ended_at = self.deps.clock()
        if cancel.reason == "shutdown":
            self._suspend_for_shutdown(live["turn"], outcome, stream)
            return
        self.current = None
        final = msgspec.structs.replace(
            turn, status=outcome.status, messages=outcome.messages, reply=outcome.reply, note=outcome.note,
            ended_at=self.deps.clock(), model=self.header.model, usage=self._usage_of(outcome.calls))
        self.header = msgspec.structs.replace(self.header, open_turn=None,
                                              usage=self.header.usage + final.usage)
        user_id = turn.inputs[0].user_id if turn.inputs else 0
        entries = self._usage_entries(user_id, "chat", final.usage)
        saved = self.commit(final, entries, wait=True)
        if self.window is not None and self.window.upto == final.seq:
            self.window.add(final)
        reply, note = self._presentable(outcome, saved)
        stream.finish(reply, note)
        if self.log_turns:
            self.log.info("turn.done", seq=turn.seq, status=outcome.status,
                          ms=round((time.monotonic() - started) * 1000), input_tokens=final.usage.input_tokens,
                          output_tokens=final.usage.output_tokens, cache_read=final.usage.cache_read_tokens,
                          rounds=len(outcome.calls))

    def _suspend_for_shutdown(self, turn: Turn, outcome: TurnOutcome, stream: Any) -> None:
        """Shutdown cut the turn: keep it open on disk so the next start answers it again."""
        assert self.header is not None
        kept = msgspec.structs.replace(turn, reply=outcome.reply or turn.reply, usage=self._usage_of(outcome.calls))
        self.current = None
        self.commit(kept, wait=True)
        stream.finish(outcome.reply, "⏸ vigil is restarting; I'll answer this again as soon as it's back")

    @staticmethod
    def _presentable(outcome: TurnOutcome, saved: bool) -> tuple[str, str]:
        note = outcome.note
        if not saved:
            note = "⚠️ this reply could not be saved (storage error); it may be missing from the history"
        elif outcome.status == "stopped":
            note = "⏹ stopped"
        elif outcome.status == "failed":
            note = f"⚠️ {outcome.note}"
        elif note:
            note = f"⚠️ {note}"
        reply = outcome.reply
        if not reply.strip() and not note:
            note = "(the model sent an empty reply)"
        return reply, note

    def _usage_of(self, calls: Sequence[tuple[str, TokenUsage]]) -> Usage:
        total = Usage()
        for model, usage in calls:
            total = total + to_usage(model, usage)
        return total

    def _usage_entries(self, user_id: int, kind: UsageKind, usage: Usage) -> tuple[UsageEntry, ...]:
        if usage.calls == 0:
            return ()
        return (UsageEntry(user_id=user_id, day=utc_day(self.deps.clock()), key=self.key, kind=kind, usage=usage),)

    def build_request(self, turn: Turn) -> ModelRequest:
        """System prompt, the history window (moved in steps), and this turn's input."""
        assert self.header is not None
        header = self.header
        group = is_group(header)
        window = self.window
        if window is None or not window.matches(header.generation, header.window_start, turn.seq, group):
            window = HistoryWindow.load(self.deps.store, self.key, header.generation, header.window_start,
                                        turn.seq, group)
            self.window = window
        if window.slide(self.deps.settings.history_tokens):
            self.header = header = msgspec.structs.replace(header, window_start=window.start)
        history = window.messages()
        if history:
            history[-1] = with_cache_point(history[-1])
        current = {"role": "user", "content": [{"type": "text", "text": input_text(turn, group) or "(empty message)"}]}
        tools = self.toolset()
        return ModelRequest(
            model=header.model, max_tokens=self.deps.settings.max_output_tokens,
            system=system_blocks(header, self.notes(), [t["name"] for t in tools.specs]),
            messages=tuple(join([history, [current]])),
        )

    def notes(self) -> list[Note]:
        """This session's notes, read once and kept while the actor lives (only it writes them)."""
        if self._notes is None:
            self._notes = self.deps.store.notes(self.key)
        return self._notes

    def forget_cached(self) -> None:
        """Drop what is cached from the store (after /new, /forget, notes changes)."""
        self.window = None
        self._notes = None

    MAX_NOTES = 50
    MAX_NOTE_CHARS = 1000

    def save_note(self, tool_input: dict[str, Any]) -> ToolOutcome:
        text = str(tool_input.get("text", "")).strip()
        if not text:
            return ToolOutcome(content="not saved: the note was empty", is_error=True)
        if len(text) > self.MAX_NOTE_CHARS:
            return ToolOutcome(content=f"not saved: notes are at most {self.MAX_NOTE_CHARS} characters; shorten it",
                               is_error=True)
        try:
            self.deps.store.add_note(self.key, Note(text=text, at=self.deps.clock()), self.MAX_NOTES).result()
        except Exception as exc:
            return ToolOutcome(content=f"not saved: the store refused ({exc})", is_error=True)
        self._notes = None
        return ToolOutcome(content="saved")

    def toolset(self) -> ToolSet:
        """The tools of a user turn: the editor (and bash when enabled) jailed to this session's workspace,
        starting in its cwd; save_note."""
        assert self.header is not None, "tools run only in a session that has a header"
        place = (self.header.cwd, str(workspace_of(self.header)))
        if self._toolset is not None and self._toolset[0] == place:
            return self._toolset[1]
        toolbox = self.deps.toolbox
        cwd, workspace = Path(place[0]), Path(place[1])

        def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
            if name == "save_note":
                return self.save_note(tool_input)
            return toolbox.run(name, tool_input, cwd, cancel.event, workspace=workspace)

        def describe(name: str, tool_input: dict[str, Any]) -> str:
            if name == "save_note":
                return "save_note"
            return toolbox.describe(name, tool_input, cwd)

        toolset = ToolSet(specs=(*toolbox.specs(), SAVE_NOTE_TOOL), run=run, describe=describe)
        self._toolset = (place, toolset)
        return toolset

    # ------------------------------------------------------------------ recovery

    def _recover_open_turn(self, seq: int) -> None:
        """A turn was in progress when the process died (or shut down mid-turn)."""
        assert self.header is not None
        turn = self.deps.store.turn(self.key, self.header.generation, seq)
        if turn is None or turn.final:
            self.header = msgspec.structs.replace(self.header, open_turn=None)
            self.commit(wait=True)
            return
        if turn.kind == "user" and turn.attempts < RESTART_ATTEMPTS:
            self.log.info("session.resuming_turn", seq=seq, attempts=turn.attempts)
            self.resume_turn = self._charge_cut_turn(turn, keep_open=True)
            return
        note = "interrupted by a restart"
        final = msgspec.structs.replace(turn, status="interrupted", note=note, ended_at=self.deps.clock())
        self.header = msgspec.structs.replace(self.header, open_turn=None)
        self._charge_cut_turn(final, keep_open=False)
        if turn.kind == "user":
            self._send("⚠️ I couldn't finish answering your last message after vigil restarted; please ask again.")

    def _charge_cut_turn(self, turn: Turn, keep_open: bool) -> Turn:
        """Charge what a turn cut by a crash (or a shutdown) had used when last written down, and write it.

        Usage is charged when a turn ends; a turn that never ended is charged here, once: a turn that
        stays open (to be answered again) is written back with its usage cleared in the same
        transaction, so a second crash cannot charge it twice.
        """
        assert self.header is not None
        used = turn.usage
        if keep_open and not used.calls:
            return turn
        entries: tuple[UsageEntry, ...] = ()
        if used.calls:
            kind: UsageKind
            if turn.kind == "heartbeat":
                payer, kind = self.header.heartbeat.owner, "heartbeat"
                self.header = msgspec.structs.replace(self.header, heartbeat_usage=self.header.heartbeat_usage + used)
            else:
                payer, kind = (turn.inputs[0].user_id if turn.inputs else 0), "chat"
                self.header = msgspec.structs.replace(self.header, usage=self.header.usage + used)
            entries = self._usage_entries(payer, kind, used)
            self.log.info("session.charged_cut_turn", seq=turn.seq, calls=used.calls, input_tokens=used.input_tokens,
                          output_tokens=used.output_tokens, cost_micros=used.cost_micros)
        written = msgspec.structs.replace(turn, usage=Usage()) if keep_open else turn
        self.commit(written, entries, wait=True)
        return written
