"""The process-wide cap on model calls in flight (VIGIL_MAX_CONCURRENT_QUERIES), shared by every session.

Its own module because the turn runner (actors/engine/runner.py) and the runtime both hold it; a turn waiting for
a slot gives up the moment it is cancelled (`/stop`), so a full cap never makes /stop wait.
"""

from __future__ import annotations

import threading

from vigil.cancel import CancelToken


class QuerySlots:
    """The process-wide cap on model calls in flight (VIGIL_MAX_CONCURRENT_QUERIES)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._waiting = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self, cancel: CancelToken) -> bool:
        """Wait for a slot; False if the turn was cancelled while waiting."""
        with self._lock:  # the common case: a slot is free
            if self._in_flight < self.limit and not self._waiting:
                self._in_flight += 1
                return True
        with cancel.on_cancel(self._wake), self._cond:
            self._waiting += 1
            try:
                while self._in_flight >= self.limit:
                    if cancel.cancelled:
                        return False
                    self._cond.wait()
                if cancel.cancelled:
                    return False
                self._in_flight += 1
                return True
            finally:
                self._waiting -= 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._waiting:
                self._cond.notify()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
