"""What one turn's model calls used so far, the call in flight included.

A turn is charged when it ends; one cut short by `/stop`, a crash or a shutdown
must still be charged for what it consumed. The runner tells the meter what
each call reported (the input at `message_start`, the output at the end) and
how much text it has streamed; the session writes `usage()` into the open turn
whenever it writes that turn down, so a recovery finds it, and asks for it
before each call to check the budget. Output not yet reported is estimated
from the streamed text (`vigil.model.prices.output_estimate`).
"""

from __future__ import annotations

import threading

import msgspec

from vigil.model.prices import output_estimate, to_usage
from vigil.ports import TokenUsage
from vigil.records.schema import Usage


class Meter:
    """What one turn's model calls used so far, the call in flight included; read from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[str, TokenUsage]] = []
        self._live: tuple[str, TokenUsage] | None = None  # the call in flight, as last reported
        self._live_chars = 0

    def started(self, model: str, usage: TokenUsage) -> None:
        """The call in flight reported its usage (the input at message_start, the output at message_delta)."""
        with self._lock:
            self._live = (model, usage)

    def streamed(self, chars: int) -> None:
        with self._lock:
            self._live_chars += chars

    def add(self, model: str, usage: TokenUsage) -> None:
        """A call ended (or was cut short): its usage is final."""
        with self._lock:
            self._calls.append((model, usage))
            self._live, self._live_chars = None, 0

    def end_live(self) -> None:
        """The call in flight ended without a word on its usage: keep what it reported, if anything."""
        with self._lock:
            live = self._live_call()
            if live is not None:
                self._calls.append(live)
            self._live, self._live_chars = None, 0

    def _live_call(self) -> tuple[str, TokenUsage] | None:
        """The call in flight as known now: its reported usage, output at least what it streamed. Holds the lock."""
        if self._live is None:
            return None
        model, live = self._live
        output = max(live.output_tokens, output_estimate(self._live_chars))
        return model, msgspec.structs.replace(live, output_tokens=output)

    @property
    def calls(self) -> tuple[tuple[str, TokenUsage], ...]:
        with self._lock:
            return tuple(self._calls)

    def usage(self) -> Usage:
        with self._lock:
            live = self._live_call()
            calls = [*self._calls, live] if live is not None else list(self._calls)
        total = Usage()
        for model, usage in calls:
            total = total + to_usage(model, usage)
        return total
