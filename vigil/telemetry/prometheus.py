"""The Prometheus side of `vigil.telemetry.metrics`: the figures counted, what is read at scrape time, `/metrics`.

Imported only when `VIGIL_METRICS_LISTEN` is set. Everything is exposed through a `CollectorRegistry`
of this object's own (never prometheus_client's global one), so tests and the bench can run several
side by side. The hot paths pay one locked update of plain numbers per event (a turn, a model call, a
commit); the Prometheus families (counters, histograms) are built from a copy of them when scraped.
What can be read cheaply then (live sessions, mailbox and pending depth, the store's size, the
Supervisor's counters) is read then by `_ScrapeCollector`, so it costs the sessions nothing at all.

The endpoint is a WSGI server on a daemon thread of its own, serving `/metrics` (404 elsewhere), and
closed at shutdown.
"""

from __future__ import annotations

import itertools
import threading
import typing
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vigil.errors import StartupError
from vigil.logs import get_logger
from vigil.model.prices import cost_micros
from vigil.ports import ModelErrorKind, ModelResponse, Store, TurnKind
from vigil.telemetry.metrics import (
    TOKEN_KINDS,
    BeatDecision,
    BeatSkip,
    RetryReason,
    ScheduleOutcome,
    SessionsView,
    SlotsView,
    SupervisorView,
    call_figures,
    model_label,
    skip_label,
)

# Turns take from well under a second (a short answer) to minutes (tools, long replies).
TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TEXT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
# One durable LMDB commit is an fsync: tenths of a millisecond on an SSD, far more on a busy disk.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
FINAL_STATUSES = ("done", "stopped", "failed", "interrupted")
CALL_OUTCOMES = ("ok", "cancelled", *typing.get_args(ModelErrorKind))


class _Silent(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # a scrape every 15 s is not worth a line on stderr each


class _Histogram:
    """Observations per bucket and their sum; the caller holds the lock. Buckets count `value <= bound`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposed(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets as Prometheus shows them, and the sum."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return buckets, self.sum


def _zeros(*labels: Iterable[Any]) -> dict[Any, int]:
    """A counter per label value (or tuple of values), present at 0 from the start: rate() needs the series."""
    if len(labels) == 1:
        return dict.fromkeys(labels[0], 0)
    return dict.fromkeys(itertools.product(*labels), 0)


class PromMetrics(Collector):
    """Metrics on: plain numbers behind one lock on the hot paths, Prometheus families built when scraped.

    prometheus_client's own Counter and Histogram take a lock per increment (a histogram two per
    observation): a turn's figures were a dozen lock round trips, about 4x the cost of one locked update
    of plain numbers per event, which is what this keeps (measured: vigil/bench/_metrics.py).
    """

    def __init__(self, listen: str, registry: SessionsView, store: Store, slots: SlotsView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._listen = listen
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._scrape = _ScrapeCollector(registry, store, slots)
        self._lock = threading.Lock()
        kinds = typing.get_args(TurnKind)
        self._turns: dict[tuple[str, str], int] = _zeros(kinds, FINAL_STATUSES)
        self._turn_seconds = {kind: _Histogram(TURN_BUCKETS) for kind in kinds}
        self._first_text = {kind: _Histogram(FIRST_TEXT_BUCKETS) for kind in kinds}
        self._calls: dict[str, int] = _zeros(CALL_OUTCOMES)
        self._tokens = [0, 0, 0, 0]  # TOKEN_KINDS
        self._cost_micros: dict[str, int] = {}  # by model label
        self._labels: dict[str, str] = {}  # model name -> its label, for the names the price table knows
        self._searches = 0
        self._beats_fired: dict[str, int] = _zeros(typing.get_args(BeatDecision))
        self._beats_skipped: dict[str, int] = _zeros(typing.get_args(BeatSkip))
        self._schedules: dict[str, int] = _zeros(typing.get_args(ScheduleOutcome))
        self._failures: dict[str, int] = _zeros(("permanent", "transient"))
        self._retries: dict[str, int] = _zeros(typing.get_args(RetryReason))
        self._commits = _Histogram(COMMIT_BUCKETS)
        self.registry.register(self)
        self.registry.register(self._scrape)
        ProcessCollector(registry=self.registry)
        self._log = get_logger(__name__)

    # ------------------------------------------------------------------ the port

    @property
    def address(self) -> tuple[str, int] | None:
        server = self._server
        return (str(server.server_address[0]), int(server.server_address[1])) if server is not None else None

    def turn(self, kind: str, outcome: str, seconds: float, first_text_s: float | None = None) -> None:
        with self._lock:
            self._turns[(kind, outcome)] = self._turns.get((kind, outcome), 0) + 1
            histogram = self._turn_seconds.get(kind) or self._turn_seconds.setdefault(kind, _Histogram(TURN_BUCKETS))
            histogram.observe(seconds)
            if first_text_s is not None:
                first = self._first_text.get(kind) or self._first_text.setdefault(kind, _Histogram(FIRST_TEXT_BUCKETS))
                first.observe(first_text_s)

    def model_call(self, model: str, response: ModelResponse | None, error: BaseException | None) -> None:
        try:
            self._model_call(model, response, error)
        except Exception as exc:  # a model worker thread calls this: nothing here may end it
            self._log.error("metrics.model_call_failed", error=repr(exc))

    def _model_call(self, model: str, response: ModelResponse | None, error: BaseException | None) -> None:
        outcome, model, usage = call_figures(model, response, error)
        if outcome not in self._calls:
            outcome = "internal"
        if usage is None:
            with self._lock:
                self._calls[outcome] += 1
            return
        micros = cost_micros(model, usage)
        label = self._labels.get(model) or self._label(model)
        searches = getattr(usage, "web_searches", 0)  # added to the usage by the web tools' part, if merged
        with self._lock:
            self._calls[outcome] += 1
            tokens = self._tokens
            tokens[0] += usage.input_tokens
            tokens[1] += usage.output_tokens
            tokens[2] += usage.cache_read_tokens
            tokens[3] += usage.cache_write_tokens
            self._cost_micros[label] = self._cost_micros.get(label, 0) + micros
            self._searches += searches

    def _label(self, model: str) -> str:
        label = model_label(model)
        if label != "other":  # any name typed into /model must not grow this cache
            self._labels[model] = label
        return label

    def heartbeat_fired(self, decision: BeatDecision) -> None:
        with self._lock:
            self._beats_fired[decision] += 1

    def heartbeat_skipped(self, reason: str) -> None:
        with self._lock:
            self._beats_skipped[skip_label(reason)] += 1

    def schedule(self, outcome: ScheduleOutcome) -> None:
        with self._lock:
            self._schedules[outcome] += 1

    def delivery_failed(self, permanent: bool) -> None:
        with self._lock:
            self._failures["permanent" if permanent else "transient"] += 1

    def delivery_retry(self, reason: RetryReason) -> None:
        with self._lock:
            self._retries[reason] += 1

    def store_commit(self, seconds: float) -> None:
        with self._lock:
            self._commits.observe(seconds)

    def watch(self, supervisor: SupervisorView) -> None:
        self._scrape.supervisor = supervisor

    # ------------------------------------------------------------------ scraped

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # a copy, so the sessions never wait behind the exposition
            turns, calls, tokens = dict(self._turns), dict(self._calls), list(self._tokens)
            cost, searches = dict(self._cost_micros), self._searches
            histograms = [(name, doc, {kind: h.exposed() for kind, h in source.items()}) for name, doc, source in (
                ("vigil_turn_seconds", "Time from a turn's start to its reply finished", self._turn_seconds),
                ("vigil_turn_first_text_seconds", "Time from a turn's start until its first text was visible "
                 "in the chat", self._first_text))]
            commits = self._commits.exposed()
            plain = [(name, doc, label, dict(values)) for name, doc, label, values in (
                ("vigil_heartbeats_fired", "Heartbeats run, by what they came to", "decision", self._beats_fired),
                ("vigil_heartbeats_skipped", "Heartbeats due but not run, by reason", "reason", self._beats_skipped),
                ("vigil_schedules", "Scheduled messages that fell due, by outcome", "outcome", self._schedules),
                ("vigil_delivery_failures", "Replies the channel did not take (permanent: blocked or gone; "
                 "transient: retries ran out)", "kind", self._failures),
                ("vigil_delivery_retries", "Deliveries tried again, by reason", "reason", self._retries))]
        family = CounterMetricFamily("vigil_turns", "Turns answered, by kind and final status",
                                     labels=("kind", "outcome"))
        for (kind, outcome), count in turns.items():
            family.add_metric((kind, outcome), count)
        yield family
        for name, doc, by_kind in histograms:
            histogram = HistogramMetricFamily(name, doc, labels=("kind",))
            for kind, (buckets, total) in by_kind.items():
                histogram.add_metric((kind,), buckets, total)
            yield histogram
        yield _labelled("vigil_model_calls", "Model calls, by outcome (ok, cancelled or the error kind)",
                        "outcome", calls)
        yield _labelled("vigil_model_tokens", "Tokens of model calls, by kind", "kind",
                        dict(zip(TOKEN_KINDS, tokens, strict=True)))
        yield _labelled("vigil_model_cost_dollars", "What model calls cost, in US dollars, by model", "model",
                        {model: micros / 1_000_000 for model, micros in cost.items()})
        yield CounterMetricFamily("vigil_web_searches", "Web searches the model ran (billed per search)",
                                  value=searches)
        for name, doc, label, values in plain:
            yield _labelled(name, doc, label, values)
        buckets, total = commits
        yield HistogramMetricFamily("vigil_store_commit_seconds", "One store transaction's commit and fsync",
                                    buckets=buckets, sum_value=total)

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


def _labelled(name: str, doc: str, label: str, values: dict[str, int] | dict[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=(label,))
    for value, count in values.items():
        family.add_metric((value,), count)
    return family


def _family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _ScrapeCollector(Collector):
    """What is read when Prometheus asks: cheap gauges and the Supervisor's own counters."""

    def __init__(self, registry: SessionsView, store: Store, slots: SlotsView) -> None:
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
