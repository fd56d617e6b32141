"""The Supervisor: spawns a SessionActor per key on demand, evicts idle ones, respawns failed ones.

Eviction is a handshake: the Supervisor tells `Evict`, the actor saves and
answers `Evicted` (or `EvictDeclined` if it has work). While a key is being
evicted its new messages are held here and delivered to the restored actor
once the old one has saved, so nothing races the snapshot. A failed actor
hands back its unhandled messages and is respawned from its durable state.
"""

from __future__ import annotations

import queue
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
import pykka

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
    SessionCommand,
    TargetMoved,
    Tick,
    UserText,
)
from vigil.actors.core.state import SessionDeps
from vigil.actors.session import SessionActor
from vigil.logs import get_logger


class StopSessions(msgspec.Struct, frozen=True):
    """Asked by the runtime at shutdown: stop every live session; answers their stop futures."""


_ROUTED = (UserText, SessionCommand, HeartbeatDue, DeliveryFailed, TargetMoved, Recover, Drain, Forget)


class Supervisor(pykka.ThreadingActor):
    """Maps session keys to live actors."""

    # vigil always stops its actors itself (Runtime.shutdown); should an unexpected error skip that,
    # the process must still exit rather than hang on threads nobody will stop.
    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka's hook for actor implementations: the C SimpleQueue is much cheaper than queue.Queue.
        return queue.SimpleQueue()

    def __init__(self, deps: SessionDeps, actor_class: type[SessionActor],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.deps = deps
        self.actor_class = actor_class
        self.monotonic = monotonic
        self.live: OrderedDict[str, pykka.ActorRef[Any]] = OrderedDict()  # least recently active first
        self.activity: dict[str, float] = {}
        self.evicting: set[str] = set()
        self.held: dict[str, list[object]] = {}
        self.stopping = False
        self.spawned = 0
        self.evicted = 0
        self.respawned = 0
        self.log = get_logger(__name__)
        deps.metrics.watch(self)  # read when scraped: live actors, mailboxes, these counters

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ROUTED):
            self._route(message)
        elif isinstance(message, Evicted):
            self._on_evicted(message.key)
        elif isinstance(message, EvictDeclined):
            self._on_declined(message.key)
        elif isinstance(message, ActorFailed):
            self._on_failed(message)
        elif isinstance(message, Tick):
            self._sweep()
        elif isinstance(message, StopSessions):
            return self._stop_sessions()
        else:
            self.log.warning("supervisor.unknown_message", kind=type(message).__name__)
        return None

    # ------------------------------------------------------------------ routing

    def _route(self, message: Any) -> None:
        key: str = message.key
        if self.stopping:
            self.log.info("supervisor.dropped_during_shutdown", session=key, kind=type(message).__name__)
            if isinstance(message, Drain | Forget):
                message.done.set()
            return
        if key in self.evicting:
            self.held.setdefault(key, []).append(message)
            return
        active = isinstance(message, UserText | SessionCommand)
        ref = self.live.get(key)
        if ref is None:
            ref = self._spawn(key, active)
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            # It died between our last look and now; its ActorFailed report is on the way.
            self.held.setdefault(key, []).append(message)
            self.evicting.add(key)
            return
        if active:
            self.activity[key] = self.monotonic()
            self.live.move_to_end(key)

    def _spawn(self, key: str, active: bool) -> pykka.ActorRef[Any]:
        self._enforce_cap()
        control = self.deps.registry.add(key)
        ref = self.actor_class.start(key, self.deps, self.actor_ref, control)
        self.live[key] = ref
        self.spawned += 1
        if active:
            self.activity[key] = self.monotonic()
        else:
            # Woken by a heartbeat or a recovery, not by the user: first in line for eviction.
            self.activity[key] = float("-inf")
            self.live.move_to_end(key, last=False)
        return ref

    # ------------------------------------------------------------------ eviction

    def _enforce_cap(self) -> None:
        limit = self.deps.settings.max_live_sessions
        if len(self.live) - len(self.evicting) < limit:
            return
        for key in self.live:
            if len(self.live) - len(self.evicting) < limit:
                return
            if key in self.evicting:
                continue
            control = self.deps.registry.get(key)
            if control is not None and control.busy:
                continue
            self._evict(key)

    def _evict(self, key: str) -> None:
        self.evicting.add(key)
        self.live[key].tell(Evict(key=key))

    def _sweep(self) -> None:
        cutoff = self.monotonic() - self.deps.settings.idle_evict_s
        excess = len(self.live) - len(self.evicting) - self.deps.settings.max_live_sessions
        for key in list(self.live):
            # Idle ones go; and while over the cap (a burst of busy sessions), the least recent idle ones too.
            if self.activity.get(key, 0.0) > cutoff and excess <= 0:
                break
            if key in self.evicting:
                continue
            control = self.deps.registry.get(key)
            if control is not None and (control.busy or control.status.queued):
                continue
            self._evict(key)
            excess -= 1

    def _on_evicted(self, key: str) -> None:
        self.evicting.discard(key)
        self.live.pop(key, None)
        self.activity.pop(key, None)
        self.evicted += 1
        self.log.debug("supervisor.evicted", session=key, live=len(self.live))
        for message in self.held.pop(key, []):
            self._route(message)

    def _on_declined(self, key: str) -> None:
        self.evicting.discard(key)
        ref = self.live.get(key)
        held = self.held.pop(key, [])
        if ref is None:
            for message in held:
                self._route(message)
            return
        for message in held:
            ref.tell(message)

    def _on_failed(self, message: ActorFailed) -> None:
        key = message.key
        self.live.pop(key, None)
        self.activity.pop(key, None)
        self.evicting.discard(key)
        backlog = [*message.undelivered, *self.held.pop(key, [])]
        if self.stopping:
            return
        self.respawned += 1
        self.log.warning("supervisor.respawning", session=key, backlog=len(backlog))
        ref = self._spawn(key, active=False)
        for item in backlog:
            ref.tell(item)

    # ------------------------------------------------------------------ shutdown

    def _stop_sessions(self) -> list[pykka.Future[Any]]:
        self.stopping = True
        futures: list[pykka.Future[Any]] = []
        # Messages held for a session being evicted must still reach a session that saves them on stop.
        for key, held in self.held.items():
            ref = self.live.get(key)
            if ref is None or not ref.is_alive():
                ref = self.live[key] = self.actor_class.start(key, self.deps, self.actor_ref,
                                                              self.deps.registry.add(key))
            for message in held:
                ref.tell(message)
        self.held.clear()
        for ref in self.live.values():
            try:
                futures.append(ref.stop(block=False))
            except pykka.ActorDeadError:
                continue
        self.live.clear()
        return futures
