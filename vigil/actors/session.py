"""SessionActor: one per chat; the actor's job only: its mailbox, eviction, failure and stop.

What the session is lives in a plain `Session` (actors/core/state.py); what it does is composed from
parts it calls: the user turn (actors/turns/user.py), commands (actors/commands/table.py, a table the
parts contribute to), heartbeats (actors/commands/heartbeat.py), and recovery of what a previous run left
(actors/core/recovery.py).

One turn at a time. A message that arrives during a turn waits in the mailbox; each user message
is appended to the header's `pending` list and the actor tells itself `RunTurn`, which lands behind
everything already queued, so when a turn ends every message that came meanwhile is answered
together in one follow-up turn. Every user message and session command was written to the durable
inbox before it reached the mailbox (vigil/intake/inbox.py), so a message waiting behind a long turn
survives `kill -9`: the next start tells it again.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import msgspec
import pykka

from vigil.actors import wake
from vigil.actors.commands import heartbeat
from vigil.actors.commands.table import COMMANDS, CommandHandler, run_command
from vigil.actors.core import recovery
from vigil.actors.core.protocol import (
    ActorFailed,
    DeliveryFailed,
    Drain,
    Evict,
    EvictDeclined,
    Evicted,
    Forget,
    HeartbeatDue,
    Recover,
    RunTurn,
    SessionCommand,
    TargetMoved,
    UserText,
)
from vigil.actors.core.registry import SessionControl
from vigil.actors.core.state import Session, SessionDeps, is_group
from vigil.actors.timing import idle_pause, unreachable
from vigil.actors.turns import edits
from vigil.actors.turns import user as user_turn

__all__ = ["SessionActor", "SessionDeps", "is_group"]


class SessionActor(pykka.ThreadingActor):
    """The actor of one session key."""

    # vigil always stops its actors itself (Runtime.shutdown); should an unexpected error skip that,
    # the process must still exit rather than hang on threads nobody will stop.
    use_daemon_thread = True
    commands: Mapping[str, CommandHandler] = COMMANDS

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
        self.session = Session(key, deps, control)
        self.log = self.session.log

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        try:
            self._load()
        except Exception as exc:  # a session that cannot load answers with why, instead of dying silently
            self.session.broken = str(exc)
            self.log.error("session.load_failed", error=self.session.broken)

    def _load(self) -> None:
        session = self.session
        recovery.load(session)
        if session.header is None:
            return
        if session.header.pending or session.resume_turn is not None:
            self._schedule_run()
        session.publish()

    def on_failure(self, exception_type: type[BaseException] | None, exception_value: BaseException | None,
                   traceback: TracebackType | None) -> None:
        """Hand back what we had not handled; the Supervisor respawns from the durable state."""
        session = self.session
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
            if session.header is not None and (session.dirty or session.current is not None):
                session.commit(session.current, wait=True)  # the turn cut short stays open: the respawn answers it
            # A command that failed is not run again after a restart (it might fail the same way each time).
            session.consume_alone(session.handling)
            self.deps.store.sync()
        except Exception as exc:
            self.log.error("session.failed_sync", error=repr(exc))
        self.control.end()
        if session.header is not None and not self.deps.registry.shutting_down.is_set():
            session.send("⚠️ Something went wrong in this chat's session; it was restarted from its last saved state.")
        self.deps.registry.remove(self.key, self.control)
        self.supervisor.tell(ActorFailed(key=self.key, undelivered=tuple(undelivered)))
        session.release()

    def on_stop(self) -> None:
        """Shutdown or eviction: what is only in memory (messages not yet answered) goes to disk."""
        session = self.session
        if (session.dirty or session.unconsumed) and session.header is not None:
            session.commit(wait=True)
        session.release()

    def _on_evict(self) -> None:
        session = self.session
        if session.has_work() or self.control.busy:
            self.supervisor.tell(EvictDeclined(key=self.key))
            return
        # Whatever this actor wrote is on disk before a successor reads it.
        if session.dirty and session.header is not None:
            session.commit(wait=True)
        elif session.unsynced:
            self.deps.store.sync()
        self.deps.registry.remove(self.key, self.control)
        self.supervisor.tell(Evicted(key=self.key))
        self.stop()

    # ------------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        session = self.session
        if isinstance(message, RunTurn):
            session.run_scheduled = False
            if not self.deps.registry.shutting_down.is_set() and not session.broken:
                user_turn.answer_pending(session)
                if session.resume_turn is not None or (session.header is not None and session.header.pending):
                    self._schedule_run()  # a resumed turn went first; what else waits goes next
            return None
        if isinstance(message, Evict):
            return self._on_evict()
        if isinstance(message, Drain):
            if session.has_work() and not self.deps.registry.shutting_down.is_set():
                self.actor_ref.tell(message)  # behind the RunTurn already queued
            else:
                message.done.set()
            return None
        if isinstance(message, Forget):
            try:
                if message.idle_since is None or session.idle_since(message.idle_since):
                    session.forget()
            finally:
                message.done.set()
            return None
        if isinstance(message, UserText | SessionCommand) and message.inbox_id:
            session.last_inbox_id = max(session.last_inbox_id, message.inbox_id)
        if session.broken and self._still_broken():
            session.refuse_broken(message)
            if isinstance(message, UserText | SessionCommand):
                session.consume_alone(message.inbox_id)  # the user was told; answering it later would not help
            return None
        if isinstance(message, UserText):
            (edits.accept if message.edited else user_turn.accept)(session, message)
            idle_pause.resume(session)
            unreachable.resume(session)
            self._run_soon()
        elif isinstance(message, SessionCommand):
            self._on_command(message)
        elif isinstance(message, HeartbeatDue):
            wake.on_due(session, message)
        elif isinstance(message, DeliveryFailed):
            recovery.remember_undelivered(session, message)
            heartbeat.on_delivery_failed(session, message)
            unreachable.on_delivery_failed(session, message)
        elif isinstance(message, TargetMoved):
            if session.header is not None and session.header.target.chat_id != message.chat_id:
                session.header = msgspec.structs.replace(
                    session.header, target=msgspec.structs.replace(session.header.target, chat_id=message.chat_id))
                session.commit(wait=True)
        elif isinstance(message, Recover):
            pass  # on_start already picked up what the store holds
        else:
            self.log.warning("session.unknown_message", kind=type(message).__name__)
        return None

    def _on_command(self, message: SessionCommand) -> None:
        session = self.session
        # Commands keep their place: messages sent before "/new" (or "/model x") are answered first,
        # under the old settings, then the command acts; the RunTurn already queued finds them done.
        if not self.deps.registry.shutting_down.is_set():
            for _ in range(2):  # a turn resumed after a restart goes first, then the messages
                if session.header is None or not (session.header.pending or session.resume_turn is not None):
                    break
                user_turn.answer_pending(session)
        if message.inbox_id:
            session.unconsumed.append(message.inbox_id)  # a command that commits takes itself out of the inbox
        session.handling = message.inbox_id
        run_command(session, message, self.commands)
        session.handling = 0
        session.consume_alone(message.inbox_id)  # one that did not commit (a reply only) is done all the same

    def _still_broken(self) -> bool:
        """Read the record again: once an operator deleted (or fixed) it, the chat works again."""
        if not self.session.readable_again():
            return True
        try:
            self._load()
        except Exception as exc:
            self.session.broken = str(exc)
            return True
        return False

    # ------------------------------------------------------------------ turns

    def _schedule_run(self) -> None:
        if not self.session.run_scheduled:
            self.session.run_scheduled = True
            self.actor_ref.tell(RunTurn())

    def _run_soon(self) -> None:
        """Answer what is pending: at once if nothing else waits in the mailbox, else behind what does."""
        session = self.session
        if not session.run_scheduled and self.actor_inbox.empty() and not self.deps.registry.shutting_down.is_set():
            user_turn.answer_pending(session)
            if session.resume_turn is not None or (session.header is not None and session.header.pending):
                self._schedule_run()
        else:
            self._schedule_run()
