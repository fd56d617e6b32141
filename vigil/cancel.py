"""A cancel token: `/stop` and shutdown reach a running turn through it, not the mailbox.

Setting it also runs the abort callbacks registered by whatever is blocking
the turn right now (an HTTP stream to close, a process group to kill), so the
turn ends at once instead of at its next checkpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vigil.logs import get_logger


class CancelToken:
    """Thread-safe, one-way: once cancelled it stays cancelled."""

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None  # made only for code that polls an Event (a subprocess)
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], None]] = []
        self.reason = ""

    def cancel(self, reason: str = "stopped") -> bool:
        """Cancel; returns False if it already was."""
        with self._lock:
            if self._cancelled:
                return False
            self.reason = reason
            self._cancelled = True
            if self._event is not None:
                self._event.set()
            aborts = list(self._aborts)
        for abort in aborts:
            try:
                abort()
            except Exception as exc:  # an abort racing a normal close must not break /stop
                get_logger(__name__).debug("cancel.abort_failed", error=repr(exc))
        return True

    @property
    def event(self) -> threading.Event:
        """An event set on cancel, for code that polls (a subprocess loop)."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            return self._event

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    @contextmanager
    def on_cancel(self, abort: Callable[[], None]) -> Iterator[None]:
        """Run `abort` if the token is cancelled while inside this block (at once if it already is)."""
        with self._lock:
            already = self._cancelled
            if not already:
                self._aborts.append(abort)
        if already:
            abort()
        try:
            yield
        finally:
            with self._lock:
                if abort in self._aborts:
                    self._aborts.remove(abort)
