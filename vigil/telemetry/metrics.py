"""The metrics port: what vigil counts for an operator's graphs and alerts, and its no-op twin.

The code that does the work (a turn's end, a model call, the store writer's commit, a delivery that
failed) tells a `Metrics` what happened, in a call or two at a few clear points. Which `Metrics` it
is is decided once, by the runtime (`build_metrics`): with `VIGIL_METRICS_LISTEN` unset it is
`NULL_METRICS`, whose methods do nothing, so the hot paths pay one empty method call and
`prometheus_client` (85 ms to import) is never loaded; set, it is `vigil.telemetry.prometheus.PromMetrics`,
which keeps the Prometheus objects in a registry of its own and serves `/metrics`.

Labels are closed sets, never free text and never a user or chat id: every label value a caller
can pass is mapped here onto a short fixed word (`skip_label`, `model_label`), so a new sentence,
a model name typed into `/model` or a chat's id can never become a time series of its own.
What is cheap to read when scraped (live sessions, mailboxes, the store's size, the
Supervisor's spawn/evict/respawn counters) is read then, and costs the hot paths nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from vigil.ports import ModelError, ModelResponse, TokenUsage

BeatDecision = Literal["spoke", "silent", "failed", "cut"]
"""What a heartbeat that ran came to: it sent something, said nothing, failed, or was cut by a shutdown."""

BeatSkip = Literal["turn_running", "messages_waiting", "outside_hours", "too_soon", "limit", "other"]
"""Why a heartbeat that fell due did not run (`limit`: its owner's budget or rate limit)."""

ScheduleOutcome = Literal["fired", "skipped", "failed"]
"""What became of a scheduled message (the `schedule` tool) when it fell due."""

RetryReason = Literal["flood", "timeout", "network"]
"""Why a delivery to the channel was tried again: a 429 outlasting the rate limiter, a timeout, a network error."""

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

# heartbeat.py's skip sentences (shown in /heartbeat status) onto their labels; any other is "other".
_SKIPS: dict[str, BeatSkip] = {
    "a turn was running": "turn_running",
    "messages waiting": "messages_waiting",
    "outside active hours": "outside_hours",
    "the last beat was less than an interval ago": "too_soon",
}
_SKIP_LABELS = frozenset(("turn_running", "messages_waiting", "outside_hours", "too_soon", "limit", "other"))


def skip_label(reason: str) -> BeatSkip:
    """A heartbeat's skip reason (a label, or heartbeat.py's sentence) as a label of the closed set."""
    if reason in _SKIP_LABELS:
        return reason  # type: ignore[return-value]
    return _SKIPS.get(reason, "other")


def model_label(model: str) -> str:
    """The model's name when the price table knows it, else "other": `/model` takes any `claude-*` name."""
    from vigil.model.prices import price_for

    return model if price_for(model)[1] else "other"


def call_figures(model: str, response: ModelResponse | None, error: BaseException | None
                 ) -> tuple[str, str, TokenUsage | None]:
    """(outcome, model, usage) of an ended model call: "ok", "cancelled" (/stop) or its ModelErrorKind, the model
    that answered, and what the API reported it used (an error's partial response carries that too)."""
    if response is not None:
        return ("cancelled" if response.stop_reason == "cancelled" else "ok"), response.model or model, response.usage
    if isinstance(error, ModelError):
        partial = error.partial
        return error.kind, (partial.model if partial is not None and partial.model else model), (
            partial.usage if partial is not None else None)
    return "internal", model, None


class SessionsView(Protocol):
    """What the scrape reads from the registry of live sessions (`vigil.actors.core.registry.Registry`)."""

    def live_count(self) -> int:
        """Sessions with a live actor."""

    def busy_count(self) -> int:
        """Sessions answering (a turn or a heartbeat) now."""

    def queued_count(self) -> int:
        """Messages the live sessions hold waiting for their turn."""


class SlotsView(Protocol):
    """What the scrape reads from the model-call slots (`vigil.actors.engine.slots.QuerySlots`)."""

    @property
    def in_flight(self) -> int:
        """Model calls running now."""


class SupervisorView(Protocol):
    """What the scrape reads from the Supervisor: its counters and its live actors (key -> ActorRef)."""

    @property
    def spawned(self) -> int: ...

    @property
    def evicted(self) -> int: ...

    @property
    def respawned(self) -> int: ...

    @property
    def live(self) -> Mapping[str, Any]: ...


class Metrics(Protocol):
    """What vigil tells its metrics. Every method returns at once and never raises into its caller."""

    @property
    def address(self) -> tuple[str, int] | None:
        """Where `/metrics` is served (after `start`), or None."""
        ...

    def turn(self, kind: str, outcome: str, seconds: float, first_text_s: float | None = None) -> None:
        """A turn was answered: its kind (TurnKind), final status (TurnStatus), duration, and when its
        first text was visible (None: it showed none)."""
        ...

    def model_call(self, model: str, response: ModelResponse | None, error: BaseException | None) -> None:
        """A model call to `model` ended with `response` or `error` (see `call_figures`)."""
        ...

    def heartbeat_fired(self, decision: BeatDecision) -> None: ...

    def heartbeat_skipped(self, reason: str) -> None:
        """A heartbeat fell due and was not run (a BeatSkip label, or heartbeat.py's sentence for it)."""
        ...

    def schedule(self, outcome: ScheduleOutcome) -> None:
        """A scheduled message fell due (for the `schedule` tool's part: `session.deps.metrics.schedule(...)`)."""
        ...

    def delivery_failed(self, permanent: bool) -> None:
        """The channel did not take a reply: for good (blocked, chat gone) or after its retries ran out."""
        ...

    def delivery_retry(self, reason: RetryReason) -> None: ...

    def store_commit(self, seconds: float) -> None:
        """One write transaction of the store was committed and synced, taking `seconds`."""
        ...

    def watch(self, supervisor: SupervisorView) -> None:
        """The Supervisor to read at scrape time (it hands itself over when it starts)."""
        ...

    def start(self) -> None:
        """Serve `/metrics`; raises StartupError if the address can't be listened on."""
        ...

    def close(self) -> None: ...


class NullMetrics:
    """Metrics off: nothing is counted, nothing is served, nothing is imported."""

    address = None

    def turn(self, kind: str, outcome: str, seconds: float, first_text_s: float | None = None) -> None:
        return None

    def model_call(self, model: str, response: ModelResponse | None, error: BaseException | None) -> None:
        return None

    def heartbeat_fired(self, decision: BeatDecision) -> None:
        return None

    def heartbeat_skipped(self, reason: str) -> None:
        return None

    def schedule(self, outcome: ScheduleOutcome) -> None:
        return None

    def delivery_failed(self, permanent: bool) -> None:
        return None

    def delivery_retry(self, reason: RetryReason) -> None:
        return None

    def store_commit(self, seconds: float) -> None:
        return None

    def watch(self, supervisor: SupervisorView) -> None:
        return None

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


NULL_METRICS = NullMetrics()
