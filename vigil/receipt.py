"""What a webhook request is waiting for: the durable writes its update caused, and its update id.

Telegram resends a webhook update until it gets a 2xx answer, so the answer must wait until whatever
the update became is on disk; and an update sent again after vigil died between that point and its
answer must be recognised. The adapter's handlers are shared with polling and know nothing of HTTP,
so the request's `Receipt` travels in a context variable instead of through every call: the webhook
sets it around the update's handling, and `Inbox.accept` (reached from the handlers, on the loop or
in a worker thread: `asyncio.to_thread` copies the context) adds the inbox write to it and has that
write mark the update as taken in the same transaction.

Once the request is answered the receipt is closed: work the update started that outlives it (an
album's parts are handed on together, later) no longer claims its mark, which was written on its own.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

from vigil.ports import WriteFuture


class Receipt:
    """One webhook update being taken in."""

    __slots__ = ("_lock", "_marked", "_open", "_writes", "update_id")

    def __init__(self, update_id: int) -> None:
        self.update_id = update_id
        self._lock = threading.Lock()  # handlers add from worker threads too
        self._writes: list[WriteFuture] = []
        self._marked = False
        self._open = True

    def marks(self) -> tuple[int, ...]:
        """The update ids a write made now must mark as taken: this update's, while the request is open."""
        with self._lock:
            if not self._open:
                return ()
            self._marked = True
            return (self.update_id,)

    def add(self, write: WriteFuture) -> None:
        with self._lock:
            if self._open:
                self._writes.append(write)

    def close(self) -> tuple[list[WriteFuture], bool]:
        """End the request's claim: the writes to wait for, and whether one of them marks the update."""
        with self._lock:
            self._open = False
            return list(self._writes), self._marked


CURRENT: ContextVar[Receipt | None] = ContextVar("vigil_webhook_receipt", default=None)
