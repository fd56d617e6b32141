"""WriteFuture: a write's outcome, available once it is durable; waiting for it commits it if need be."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class _Leader(Protocol):
    def lead(self, future: WriteFuture) -> None:
        """Commit the queue now if nobody is committing (vigil.store.engine.writer.GroupCommitWriter)."""


class WriteFuture:
    """The outcome of a write, available once it is durable; waiting for it commits it if need be.

    The store's side of `vigil.ports.WriteFuture`: callers name the Protocol, so the contract needs no lmdb.

    A lock used as a latch: far cheaper than concurrent.futures.Future (which builds
    a Condition per instance), and there are one or two of these per turn.
    """

    __slots__ = ("_error", "_latch", "_value", "_writer")

    def __init__(self, writer: _Leader | None = None) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._value: Any = None
        self._error: BaseException | None = None
        self._writer = writer

    def set_result(self, value: Any) -> None:
        self._value = value
        self._latch.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._latch.release()

    def done(self) -> bool:
        if self._latch.acquire(blocking=False):
            self._latch.release()
            return True
        return False

    def result(self, timeout: float | None = None) -> Any:
        """Wait until durable; raises what the write raised (or TimeoutError)."""
        if self._writer is not None and not self.done():
            self._writer.lead(self)
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the store did not confirm the write in time")
        self._latch.release()
        if self._error is not None:
            raise self._error
        return self._value
