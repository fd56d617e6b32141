"""The running system: store, model, Supervisor, timers, wired together for the adapters.

Adapters only call `submit` (the message goes to the durable inbox, then is told
to the Supervisor: see vigil/intake/inbox.py) and the out-of-band `stop_turn` / `status`;
everything else happens on actor threads. Start-up tells the sessions what the
last run left unanswered (open turns, then the inbox, in arrival order) before
the adapters take anything new. Shutdown
runs in a fixed order: stop taking turns, give running turns a short grace,
cancel the rest (they stay open on disk and are answered after the restart),
stop the actors, and close the store last so every write is flushed.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from vigil.actors.core.protocol import DeliveryFailed, Recover, SessionCommand, Tick, UserText
from vigil.actors.core.registry import Registry, SessionControl
from vigil.actors.core.state import SessionDeps
from vigil.actors.engine.runner import TurnRunner
from vigil.actors.engine.slots import QuerySlots
from vigil.actors.session import SessionActor
from vigil.actors.supervisor import StopSessions, Supervisor
from vigil.actors.timer import HeartbeatTimer
from vigil.config.settings import Settings
from vigil.intake.inbox import Inbox
from vigil.logs import get_logger
from vigil.mcp.extensions import extensions, log_extensions
from vigil.media.files import MediaStore
from vigil.media.sweep import MediaSweeper
from vigil.policy.budget import Allowance
from vigil.ports import ModelPort, Outbox, Store, WriteFuture
from vigil.recall.live import RecallPort, recall_for
from vigil.store.store import open_store
from vigil.telemetry.disk import DiskWatch
from vigil.telemetry.metrics import NULL_METRICS, Metrics
from vigil.tools.toolbox import Toolbox

SCRUBBED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "TELEGRAM_BOT_TOKEN")
FULL_COLLECTION_EVERY_S = 60.0
# Full (generation 2) collections walk every long-lived object, stopping all sessions while they do;
# under load CPython would run one every few seconds. They run on vigil's schedule instead.
GC_THRESHOLDS = (700, 10, 1_000_000)


def channel_of(key: str) -> str:
    return key.split(":", 1)[0]


class Runtime:
    """One per process."""

    def __init__(self, settings: Settings, outboxes: dict[str, Outbox], model: ModelPort,
                 store: Store | None = None, actor_class: type[SessionActor] | None = None,
                 clock: Callable[[], float] = time.time, serves: Callable[[str], bool] | None = None,
                 metrics: Metrics | None = None, recall: RecallPort | None = None) -> None:
        self.settings = settings
        self.outboxes = outboxes
        # The sessions whose unfinished work (open turns, the inbox) this process takes up at start:
        # `vigil chat --session a` must not answer what a `vigil chat --session b` running beside it holds.
        self.serves = serves or (lambda key: channel_of(key) in outboxes)
        self.model = model
        self.store: Store = store if store is not None else open_store(settings.data_dir, settings.store_map_mb)
        self.inbox = Inbox(self.store)
        self.media = MediaStore(settings.data_dir / "media")
        # Started by `vigil run` with a way to reach the admins; /status reads its numbers in any case.
        self.disk = DiskWatch(settings.data_dir, self.media.root, settings.admin_users, settings.disk_warn_percent)
        observe_failures = getattr(self.store, "observe_failures", None)  # the LMDB store's writer; fakes have none
        if observe_failures is not None:
            observe_failures(self.disk.store_failed)
        self.sweeper = MediaSweeper(self.store, self.media)
        self.registry = Registry()
        self.slots = QuerySlots(settings.max_concurrent_queries)
        self.metrics = metrics or build_metrics(settings, self.registry, self.store, self.slots)
        self.runner = TurnRunner(model, self.slots, settings.max_tool_rounds, self.metrics)
        self.mcp_config, self.mcp, self.skills = extensions(settings)  # MCP servers, Agent Skills
        self.toolbox = Toolbox(settings.workdir_root, enable_bash=settings.enable_bash,
                               bash_timeout_s=settings.bash_timeout_s, scrub_env=SCRUBBED_ENV,
                               bash_network=settings.bash_network == "on", data_dir=settings.data_dir,
                               read_only=lambda: self.skills.current().mounts())
        self.timer = HeartbeatTimer(self.submit, clock=clock)
        # One for the process: the adapters' gates and every session's model calls share its rate window.
        self.allowance = Allowance(settings, self.store.user_cost_micros, clock=clock)
        # The recall index (vigil/recall/): its own thread, started once the sessions run, closed before the store.
        self.recall = recall if recall is not None else recall_for(settings.data_dir, self.store)
        self.deps = SessionDeps(settings=settings, store=self.store, outboxes=outboxes, runner=self.runner,
                                toolbox=self.toolbox, registry=self.registry, allowance=self.allowance, clock=clock,
                                schedule_heartbeat=self._schedule_heartbeat, media=self.media,
                                sweep_media=self.sweeper.request, metrics=self.metrics, recall=self.recall,
                                mcp=self.mcp, skills=self.skills)
        self.roles = self.deps.roles  # who may do what: the adapters attach how they learn a group's admins
        self.actor_class = actor_class or SessionActor
        self.supervisor: pykka.ActorRef[Any] | None = None
        self._ticker_stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.log = get_logger(__name__)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._start_metrics()
        self.supervisor = Supervisor.start(self.deps, self.actor_class)
        self._ticker = threading.Thread(target=self._tick, name="supervisor-ticker", daemon=True)
        self._ticker.start()
        recovered = [k for k in self.store.recovery_keys() if self.serves(k)]
        for key in recovered:
            self.supervisor.tell(Recover(key=key))
        # Received before the last run ended but not taken up by a session: told again, oldest first
        # (a session resumes its open turn on start, before these). New messages queue behind them.
        waiting = [message for _, message in self.inbox.load() if self.serves(message.key)]
        for message in waiting:
            self.supervisor.tell(message)
        beats = self.timer.load((k, due) for k, due in self.store.heartbeat_schedule()
                                if channel_of(k) in self.outboxes)
        self.timer.start()
        self.sweeper.request()  # files orphaned by a /forget within the last sweep's grace, or by a crash
        # Checked against the store on its own thread (caught up or rebuilt if missing or behind): never delays start.
        self.recall.start()
        # What exists now (modules, classes, the store) lives as long as the process: take it out of
        # the cyclic collector's reach, so its pauses stay short however much code vigil imported.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self._log_bash()
        log_extensions(self.log, self.mcp_config, self.skills)
        self.log.info("runtime.started", channels=sorted(self.outboxes), recovering=len(recovered),
                      redelivered=len(waiting), heartbeats=beats)

    def _start_metrics(self) -> None:
        """Serve /metrics first: an address that can't be listened on stops the start before any session runs."""
        self.metrics.start()
        self._observe_commits(self.metrics.store_commit)

    def _observe_commits(self, seconds: Callable[[float], None] | None) -> None:
        observe = getattr(self.store, "observe_commits", None)  # the LMDB store's writer; a test's fake has none
        if observe is not None and self.metrics is not NULL_METRICS:
            observe(seconds)

    def _log_bash(self) -> None:
        if self.toolbox.bash_unavailable is not None:
            self.log.warning("bash.unavailable", reason=self.toolbox.bash_unavailable,
                             effect="VIGIL_ENABLE_BASH is on, but bash is not offered: it never runs unsandboxed")
        elif (sandbox := self.toolbox.sandbox) is not None:
            self.log.info("bash.sandboxed", sandbox=sandbox.describe())
            if os.geteuid() == 0:
                self.log.warning("bash.runs_as_root", effect="the kernel does not apply the sandbox's process "
                                 "limit to root: a fork bomb is stopped only by the time limit; run vigil as "
                                 "its own user")

    def _schedule_heartbeat(self, key: str, due: float | None) -> None:
        if channel_of(key) in self.outboxes:
            self.timer.schedule(key, due)

    def _tick(self) -> None:
        period = max(0.2, min(1.0, self.settings.idle_evict_s / 4))
        next_collection = time.monotonic() + FULL_COLLECTION_EVERY_S
        while not self._ticker_stop.wait(period):
            if self.supervisor is not None:
                self.supervisor.tell(Tick(now=time.time()))
            if time.monotonic() >= next_collection:
                started = time.monotonic()
                freed = gc.collect()
                next_collection = time.monotonic() + FULL_COLLECTION_EVERY_S
                self.log.debug("runtime.collected", objects=freed, ms=round((time.monotonic() - started) * 1000, 1))

    def shutdown(self, grace_s: float = 5.0, close_store: bool = True) -> None:
        """Finish or suspend running turns, stop every session, flush (and close) the store."""
        self.registry.shutting_down.set()
        self._ticker_stop.set()
        self.timer.stop()
        deadline = time.monotonic() + grace_s
        while self.registry.busy_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = self.registry.cancel_all("shutdown")
        if self.supervisor is not None:
            try:
                futures: list[pykka.Future[Any]] = self.supervisor.ask(StopSessions(), timeout=10)  # type: ignore[assignment]
                for future in futures:
                    try:
                        future.get(timeout=max(0.5, deadline + 5 - time.monotonic()))
                    except Exception as exc:
                        self.log.warning("runtime.session_stop_slow", error=repr(exc))
                self.supervisor.stop(timeout=5)
            except pykka.ActorDeadError:
                pass
        self.runner.close()
        if self.mcp is not None:
            self.mcp.close()  # stdio servers: stdin closed, then SIGTERM, then SIGKILL
        self.recall.close()  # what the sessions fed is indexed; the store must still be open
        self.disk.stop()
        self.sweeper.close()  # a sweep reads the store: it ends first
        self.metrics.close()
        self._observe_commits(None)
        if close_store:
            self.store.close()
        self.log.info("runtime.stopped", cancelled_turns=cancelled)

    # ------------------------------------------------------------------ adapter API

    def submit(self, message: object) -> WriteFuture | None:
        """Hand a message to the Supervisor (never blocks).

        A user's message or session command goes to the durable inbox first; the returned
        future resolves once it is on disk (within one group commit), for a caller that must
        not acknowledge it before. Other messages are not persisted: None.
        """
        supervisor = self.supervisor
        if supervisor is None:
            return None
        if isinstance(message, UserText | SessionCommand) and not message.inbox_id:
            return self.inbox.accept(message, supervisor.tell)
        supervisor.tell(message)
        return None

    def control(self, key: str) -> SessionControl | None:
        return self.registry.get(key)

    def stop_turn(self, key: str) -> bool:
        control = self.registry.get(key)
        return control.stop("stopped") if control is not None else False

    def healthy(self) -> bool:
        """Sessions can be served: the Supervisor and the store's writer are alive."""
        return (self.supervisor is not None and self.supervisor.is_alive() and self.store.writer_alive
                and not self.registry.shutting_down.is_set())

    def on_delivery_failure(self, key: str, permanent: bool, reason: str, seq: int | None = None) -> None:
        self.metrics.delivery_failed(permanent)
        self.submit(DeliveryFailed(key=key, permanent=permanent, reason=reason, seq=seq))

    def record_undelivered(self, refs: list[tuple[str, int]]) -> None:
        """After the sessions stopped: replies the channel could not deliver, to be sent after the restart."""
        for key, seq in refs:
            self.store.mark_undelivered(key, seq).result()
        if refs:
            self.log.warning("runtime.undelivered_kept", replies=len(refs))


def build_metrics(settings: Settings, registry: Registry, store: Store, slots: QuerySlots) -> Metrics:
    """The process's metrics: Prometheus when VIGIL_METRICS_LISTEN is set (not yet serving), else the null ones."""
    if not settings.metrics_listen:
        return NULL_METRICS
    from vigil.telemetry.prometheus import PromMetrics

    return PromMetrics(settings.metrics_listen, registry=registry, store=store, slots=slots)
