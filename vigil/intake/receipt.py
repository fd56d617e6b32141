"""What confirming a Telegram update waits for: the durable writes its handling made, and its mark.

Telegram forgets an update once it is confirmed (a webhook's 2xx answer, the next getUpdates offset
past it), so the confirmation must wait until whatever the update became is on disk, and an update
sent again after vigil died between that point and the confirmation must be recognised. The adapter's
handlers know nothing of either, so the update's `Receipt` travels in a context variable instead of
through every call: the receiver (adapters/telegram/receive/receiver.py) sets it around the update's handling,
and `Inbox.accept` (reached from the handlers, on the loop or in a worker thread: `asyncio.to_thread`
copies the context) submits the inbox write through it, so that write marks the update as taken in the
same transaction.

Three ways an update reaches its durable point, all under the receipt's lock so that the store's writer
(first in, first out) sees them in a consistent order:
- a write that marks it (its message in the inbox), or the mark on its own when the handling is over;
- its held copy (`hold`): the update as it came, kept until it is marked, for an update that must be
  confirmed before its handling is over (an album part, a file still downloading, a slow handler);
- `hand_over`: work that outlives the handling (the album the part joins) answers for the update from
  then on, under a receipt of its own; the update is held first, so a crash loses nothing meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar

from vigil.ports import WriteFuture

Submit = Callable[[tuple[int, ...]], WriteFuture]
"""Submits a write that marks the given updates as taken (none: it marks nothing)."""


class Receipt:
    """One piece of work answering for some Telegram updates: one update's handling, or an album's."""

    __slots__ = ("_held", "_hold", "_lock", "_open", "_writes", "handed", "marked", "updates")

    def __init__(self, updates: Sequence[int], hold: Callable[[], WriteFuture] | None = None) -> None:
        self.updates = tuple(updates)
        self._hold = hold  # keeps the update as it came; None: its parts are held already (an album)
        self._lock = threading.Lock()  # handlers write from worker threads too
        self._writes: list[WriteFuture] = []
        self._held = False
        self._open = True
        self.marked = False
        self.handed = False

    @property
    def held(self) -> bool:
        return self._held

    def write(self, submit: Submit) -> WriteFuture:
        """Submit a write; while this receipt still answers for its updates, that write marks them."""
        with self._lock:
            ids = self.updates if self._open and not self.handed else ()
            future = submit(ids)
            if ids:
                self.marked = True
            if self._open:
                self._writes.append(future)
            return future

    def hold(self) -> bool:
        """Keep the update as it came, unless something marks (or will mark) it already; whether it was held."""
        with self._lock:
            if self._held or self.marked or self.handed or not self._open or self._hold is None:
                return self._held
            self._writes.append(self._hold())
            self._held = True
            return True

    def hand_over(self) -> tuple[int, ...]:
        """The updates later work answers for from now on (held first); this receipt marks nothing more."""
        self.hold()
        with self._lock:
            if self.marked or self.handed:
                return ()
            self.handed = True
            return self.updates

    def writes(self) -> list[WriteFuture]:
        """The writes so far: once they are durable, so is whatever this receipt has reached."""
        with self._lock:
            return list(self._writes)

    def finish(self, mark: Submit) -> list[WriteFuture]:
        """The handling is over: mark the updates if nothing did (dropping held copies); every write made."""
        with self._lock:
            if self._open and not (self.marked or self.handed):
                self._writes.append(mark(self.updates))
                self.marked = True
            self._open = False
            return list(self._writes)

    @property
    def reached(self) -> bool:
        """Whether the update's durable point is decided: held, marked, or handed over (once its writes land)."""
        with self._lock:
            return self._held or self.marked or self.handed


CURRENT: ContextVar[Receipt | None] = ContextVar("vigil_update_receipt", default=None)
