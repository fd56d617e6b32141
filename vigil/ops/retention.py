"""`VIGIL_RETENTION`: the store does not grow forever. Old sessions and old conversations go, pinned ones stay.

With a retention set (e.g. `180d`), every session idle for longer (no message, no turn) is deleted
whole (history of every conversation, notes, settings, its inbox entries and indexes), and in the
sessions that stay, every past conversation (a generation other than the current one) whose last
activity is older goes; the files only the deleted records named go with the media sweep that the
deletion asks for (vigil/media/sweep.py). Usage rows are kept: they are the money history (`/usage`,
the daily budget), accounting rather than conversation. Pinned sessions (`/pin`) are kept whole.

What is old and how it is deleted is not decided here: this is a caller of the cleanup flow
(vigil/control/cleanup.py, `Cleanup.expire`), the same code as `/sessions cleanup`, so a live session is
deleted by its own actor (dropping what it holds in memory) and only if it is still idle then.

It runs on a daemon thread of its own: once at start-up, then every `period_for(retention)` (a day,
or a tenth of the retention when that is shorter, so that nothing lives much longer than the
retention says), never on an actor's thread and never blocking the adapters.
"""

from __future__ import annotations

import threading
import time

from vigil.control.cleanup import Cleanup
from vigil.durations import format_duration
from vigil.logs import get_logger

DAY_S = 86400.0
MIN_PERIOD_S = 1.0


def period_for(retention_s: float) -> float:
    """How often a pass runs: daily, or more often for a retention short enough to need it."""
    return min(DAY_S, max(MIN_PERIOD_S, retention_s / 10))


class Retention:
    """One background thread deleting what is older than the retention, at start and then periodically."""

    def __init__(self, cleanup: Cleanup, retention_s: float) -> None:
        self.cleanup = cleanup
        self.retention_s = retention_s
        self.period_s = period_for(retention_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.log = get_logger(__name__)

    @classmethod
    def start_for(cls, cleanup: Cleanup, retention_s: float) -> Retention | None:
        """Started when a retention is set (None when off)."""
        if retention_s <= 0:
            return None
        retention = cls(cleanup, retention_s)
        retention._thread.start()
        return retention

    def run_once(self) -> tuple[int, int]:
        """One pass; (sessions, conversations) deleted."""
        started = time.monotonic()
        sessions, conversations = self.cleanup.expire(self.retention_s)
        self.log.info("retention.pass", retention=format_duration(self.retention_s), sessions=sessions,
                      conversations=conversations, ms=round((time.monotonic() - started) * 1000))
        return sessions, conversations

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the next pass tries again; retention must never stop the service
                if self._stop.is_set():
                    return
                self.log.error("retention.failed", error=repr(exc))
            self._stop.wait(self.period_s)

    def stop(self, timeout: float = 5.0) -> None:
        """No new pass; a pass under way ends once the sessions it asked have answered (they stop too)."""
        self._stop.set()
        self._thread.join(timeout)
