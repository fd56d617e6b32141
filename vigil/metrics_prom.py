"""The Prometheus side of `vigil.metrics`: the metric objects, what is read at scrape time, `/metrics`.

Imported only when `VIGIL_METRICS_LISTEN` is set. Everything lives in a `CollectorRegistry` of this
object's own (never prometheus_client's global one), so tests and the bench can run several side by
side. Hot-path calls touch counters whose labelled children were resolved once (`.labels()` takes a
lock and checks its arguments; a dict lookup does not), and skip increments of zero. What can be read
cheaply when Prometheus asks (live sessions, mailbox and pending depth, the store's size, the
Supervisor's counters) is read then by `_ScrapeCollector`, so it costs the sessions nothing.

The endpoint is a WSGI server on a daemon thread of its own, serving `/metrics` (404 elsewhere), and
closed at shutdown.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vigil.errors import StartupError
from vigil.logs import get_logger
from vigil.metrics import (
    TOKEN_KINDS,
    BeatDecision,
    BeatSkip,
    RetryReason,
    ScheduleOutcome,
    SupervisorView,
    call_figures,
    model_label,
    skip_label,
)
from vigil.model.prices import cost_micros
from vigil.ports import ModelErrorKind, ModelResponse, Store, TurnKind

if typing.TYPE_CHECKING:
    from vigil.actors.registry import Registry
    from vigil.actors.slots import QuerySlots

# Turns take from well under a second (a short answer) to minutes (tools, long replies).
TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, float("inf"))
FIRST_TEXT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0, float("inf"))
# One durable LMDB commit is an fsync: tenths of a millisecond on an SSD, far more on a busy disk.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, float("inf"))
FINAL_STATUSES = ("done", "stopped", "failed", "interrupted")
CALL_OUTCOMES = ("ok", "cancelled", *typing.get_args(ModelErrorKind))


class _Silent(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # a scrape every 15 s is not worth a line on stderr each


class PromMetrics:
    """Metrics on: prometheus_client objects in a registry of their own, served once `start` is called."""

    def __init__(self, listen: str, registry: Registry, store: Store, slots: QuerySlots) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series double the exposition and say nothing here
        self.registry = CollectorRegistry(auto_describe=True)
        self._listen = listen
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._scrape = _ScrapeCollector(registry, store, slots)
        reg = self.registry
        self.turns = Counter("vigil_turns", "Turns answered, by kind and final status", ("kind", "outcome"),
                             registry=reg)
        self.turn_seconds = Histogram("vigil_turn_seconds", "Time from a turn's start to its reply finished",
                                      ("kind",), buckets=TURN_BUCKETS, registry=reg)
        self.first_text = Histogram("vigil_turn_first_text_seconds",
                                    "Time from a turn's start until its first text was visible in the chat",
                                    ("kind",), buckets=FIRST_TEXT_BUCKETS, registry=reg)
        self.calls = Counter("vigil_model_calls", "Model calls, by outcome (ok, cancelled or the error kind)",
                             ("outcome",), registry=reg)
        self.tokens = Counter("vigil_model_tokens", "Tokens of model calls, by kind", ("kind",), registry=reg)
        self.cost = Counter("vigil_model_cost_dollars", "What model calls cost, in US dollars, by model",
                            ("model",), registry=reg)
        self.searches = Counter("vigil_web_searches", "Web searches the model ran (billed per search)",
                                registry=reg)
        self.beats_fired = Counter("vigil_heartbeats_fired", "Heartbeats run, by what they came to",
                                   ("decision",), registry=reg)
        self.beats_skipped = Counter("vigil_heartbeats_skipped", "Heartbeats due but not run, by reason",
                                     ("reason",), registry=reg)
        self.schedules = Counter("vigil_schedules", "Scheduled messages that fell due, by outcome", ("outcome",),
                                 registry=reg)
        self.failures = Counter("vigil_delivery_failures", "Replies the channel did not take (permanent: "
                                "blocked or gone; transient: retries ran out)", ("kind",), registry=reg)
        self.retries = Counter("vigil_delivery_retries", "Deliveries tried again, by reason", ("reason",),
                               registry=reg)
        self.commits = Histogram("vigil_store_commit_seconds", "One store transaction's commit and fsync",
                                 buckets=COMMIT_BUCKETS, registry=reg)
        reg.register(self._scrape)
        ProcessCollector(registry=reg)
        # Children resolved once, and present (at 0) from the start: a rate() needs the series before its first event.
        self._turns = {(k, s): self.turns.labels(k, s) for k in typing.get_args(TurnKind) for s in FINAL_STATUSES}
        self._turn_seconds = {k: self.turn_seconds.labels(k) for k in typing.get_args(TurnKind)}
        self._first_text = {k: self.first_text.labels(k) for k in typing.get_args(TurnKind)}
        self._calls = {o: self.calls.labels(o) for o in CALL_OUTCOMES}
        self._tokens = [self.tokens.labels(kind) for kind in TOKEN_KINDS]
        self._cost: dict[str, Any] = {}
        self._beats_fired = {d: self.beats_fired.labels(d) for d in typing.get_args(BeatDecision)}
        self._beats_skipped = {r: self.beats_skipped.labels(r) for r in typing.get_args(BeatSkip)}
        self._schedules = {o: self.schedules.labels(o) for o in typing.get_args(ScheduleOutcome)}
        self._failures = {True: self.failures.labels("permanent"), False: self.failures.labels("transient")}
        self._retries = {r: self.retries.labels(r) for r in typing.get_args(RetryReason)}
        self._log = get_logger(__name__)

    # ------------------------------------------------------------------ the port

    @property
    def address(self) -> tuple[str, int] | None:
        server = self._server
        return (str(server.server_address[0]), int(server.server_address[1])) if server is not None else None

    def turn(self, kind: str, outcome: str, seconds: float, first_text_s: float | None = None) -> None:
        child = self._turns.get((kind, outcome))
        if child is None:  # a kind or status added later: still a closed set, resolved on first use
            child = self._turns[(kind, outcome)] = self.turns.labels(kind, outcome)
        child.inc()
        histogram = self._turn_seconds.get(kind) or self.turn_seconds.labels(kind)
        histogram.observe(seconds)
        if first_text_s is not None:
            (self._first_text.get(kind) or self.first_text.labels(kind)).observe(first_text_s)

    def model_call(self, model: str, response: ModelResponse | None, error: BaseException | None) -> None:
        outcome, model, usage = call_figures(model, response, error)
        (self._calls.get(outcome) or self._calls["internal"]).inc()
        if usage is None:
            return
        for child, count in zip(self._tokens, (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                                               usage.cache_write_tokens), strict=True):
            if count:
                child.inc(count)
        micros = cost_micros(model, usage)
        if micros:
            cost = self._cost.get(model)
            if cost is None:
                label = model_label(model)
                cost = self.cost.labels(label)
                if label != "other":  # any name typed into /model must not grow this cache
                    self._cost[model] = cost
            cost.inc(micros / 1_000_000)
        searches = getattr(usage, "web_searches", 0)  # added to the usage by the web tools' part, if merged
        if searches:
            self.searches.inc(searches)

    def heartbeat_fired(self, decision: BeatDecision) -> None:
        self._beats_fired[decision].inc()

    def heartbeat_skipped(self, reason: str) -> None:
        self._beats_skipped[skip_label(reason)].inc()

    def schedule(self, outcome: ScheduleOutcome) -> None:
        self._schedules[outcome].inc()

    def delivery_failed(self, permanent: bool) -> None:
        self._failures[bool(permanent)].inc()

    def delivery_retry(self, reason: RetryReason) -> None:
        self._retries[reason].inc()

    def store_commit(self, seconds: float) -> None:
        self.commits.observe(seconds)

    def watch(self, supervisor: SupervisorView) -> None:
        self._scrape.supervisor = supervisor

    # ------------------------------------------------------------------ serving

    def start(self) -> None:
        if self._server is not None:
            return
        host, _, port = self._listen.rpartition(":")
        served = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"vigil serves its metrics at /metrics\n"]
            return served(environ, start_response)  # type: ignore[no-any-return]

        class Server(ThreadingWSGIServer):
            address_family = _family(host)

        try:
            server = make_server(host, int(port), app, Server, handler_class=_Silent)
        except OSError as exc:
            raise StartupError(f"VIGIL_METRICS_LISTEN={self._listen}: cannot listen there "
                               f"({exc.strerror or exc})") from None
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        bound = self.address
        assert bound is not None
        self._log.info("metrics.serving", url=f"http://{_host_in_url(bound[0])}:{bound[1]}/metrics")

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _ScrapeCollector(Collector):
    """What is read when Prometheus asks: cheap gauges and the Supervisor's own counters."""

    def __init__(self, registry: Registry, store: Store, slots: QuerySlots) -> None:
        self.registry = registry
        self.store = store
        self.slots = slots
        self.supervisor: SupervisorView | None = None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(read=False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(read=True))

    def _families(self, read: bool) -> Iterator[Metric]:
        def gauge(name: str, doc: str, value: Callable[[], float]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=_safely(value) if read else 0)

        def counter(name: str, doc: str, value: Callable[[], float]) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=_safely(value) if read else 0)

        sup = self.supervisor
        yield gauge("vigil_live_sessions", "Sessions with a live actor", self.registry.live_count)
        yield gauge("vigil_busy_sessions", "Sessions answering (a turn or a heartbeat) now", self.registry.busy_count)
        yield gauge("vigil_pending_messages", "Messages live sessions hold, waiting for their turn",
                    self.registry.queued_count)
        yield gauge("vigil_mailbox_depth", "Messages queued in live sessions' mailboxes",
                    lambda: _mailboxes(sup))
        yield gauge("vigil_supervisor_mailbox_depth", "Messages queued for the Supervisor",
                    lambda: _supervisor_mailbox(sup))
        yield gauge("vigil_inbox_messages", "Received messages no session has taken up yet (the durable inbox)",
                    self.store.inbox_count)
        yield gauge("vigil_model_calls_in_flight", "Model calls running now (capped by "
                    "VIGIL_MAX_CONCURRENT_QUERIES)", lambda: self.slots.in_flight)
        yield gauge("vigil_store_bytes", "Bytes of the store's map in use (up to its last page)",
                    lambda: _store_bytes(self.store))
        yield gauge("vigil_store_map_bytes", "The store's map size (it grows when full)",
                    lambda: int(getattr(self.store, "map_size", 0)))
        yield counter("vigil_sessions_spawned", "Session actors started", lambda: sup.spawned if sup else 0)
        yield counter("vigil_sessions_evicted", "Session actors evicted (idle, or beyond VIGIL_MAX_LIVE_SESSIONS)",
                      lambda: sup.evicted if sup else 0)
        yield counter("vigil_sessions_respawned", "Session actors restarted after a failure",
                      lambda: sup.respawned if sup else 0)


def _safely(value: Callable[[], float]) -> float:
    """A scrape never fails for one figure: a store closing under it reads as NaN."""
    try:
        return float(value())
    except Exception:
        return float("nan")


def _live_refs(sup: SupervisorView | None) -> list[Any]:
    if sup is None:
        return []
    for _ in range(3):  # the Supervisor's thread changes the dict meanwhile; a copy is taken at once
        try:
            return list(sup.live.values())
        except RuntimeError:
            continue
    return []


def _mailboxes(sup: SupervisorView | None) -> int:
    return sum(ref.actor_inbox.qsize() for ref in _live_refs(sup))


def _supervisor_mailbox(sup: SupervisorView | None) -> int:
    ref = getattr(sup, "actor_ref", None)
    return int(ref.actor_inbox.qsize()) if ref is not None else 0


def _store_bytes(store: Store) -> int:
    used = getattr(store, "used_bytes", None)
    return int(used()) if used is not None else 0
