"""The heartbeat timer: one thread, a heap of due times, waking sessions through the Supervisor.

The schedule itself lives in each session's stored header (and the heartbeat
index beside it), so it outlives actors and processes; this thread only holds
the due times in memory. It is loaded from the index at start, so beats resume
after a restart without any user message; beats missed while vigil was down
are due at once and fire once each (spread over a few seconds, not a burst: a
fifth of a second apart on average, so a lone reminder missed during a restart
still comes at once). The due time of a session is the earliest of its beat and
its schedules (vigil/records/wake.py).
After firing, a key is re-armed for a retry in case its session dies mid-beat;
the session reschedules it properly when it handles the beat.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable, Iterable

from vigil.actors.core.protocol import HeartbeatDue
from vigil.logs import get_logger

RETRY_S = 120.0
CATCH_UP_SPREAD_S = 10.0
CATCH_UP_PER_KEY_S = 0.2


class HeartbeatTimer:
    """Thread-safe; `schedule(key, due)` from any thread, `None` to cancel."""

    def __init__(self, deliver: Callable[[HeartbeatDue], object], clock: Callable[[], float] = time.time) -> None:
        self._deliver = deliver
        self._clock = clock
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="heartbeat-timer", daemon=True)
        self._log = get_logger(__name__)
        self.fired = 0

    def load(self, schedule: Iterable[tuple[str, float]]) -> int:
        """The stored schedule at start; overdue beats are spread over a few seconds."""
        now = self._clock()
        entries = list(schedule)
        spread = min(CATCH_UP_SPREAD_S, CATCH_UP_PER_KEY_S * sum(1 for _, due in entries if due < now))
        count = 0
        with self._cond:
            for key, due in entries:
                if due < now:
                    due = now + random.uniform(0, spread)
                self._set(key, due)
                count += 1
            self._cond.notify()
        return count

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def schedule(self, key: str, due: float | None) -> None:
        with self._cond:
            if due is None:
                self._due.pop(key, None)
            else:
                self._set(key, due)
            self._cond.notify()

    def due_of(self, key: str) -> float | None:
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._due)

    def _set(self, key: str, due: float) -> None:
        if self._due.get(key) == due:
            return  # already in the heap: a second entry would only be dropped later
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))

    def _run(self) -> None:
        while True:
            ready: list[tuple[str, float]] = []
            with self._cond:
                while not self._stopped:
                    # Drop heap entries that were rescheduled or cancelled since they were pushed.
                    while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, key = self._heap[0]
                    wait = due - self._clock()
                    if wait > 0:
                        if ready:
                            break  # deliver what is due now, not after the next one's wait
                        self._cond.wait(min(wait, 60.0))
                        continue
                    heapq.heappop(self._heap)
                    ready.append((key, due))
                    self._set(key, self._clock() + RETRY_S)
                    if not self._heap or self._heap[0][0] > self._clock():
                        break
                if self._stopped:
                    return
            for key, due in ready:
                self.fired += 1
                try:
                    self._deliver(HeartbeatDue(key=key, due=due))
                except Exception as exc:  # the Supervisor is gone: we are shutting down
                    self._log.warning("timer.deliver_failed", session=key, error=repr(exc))
