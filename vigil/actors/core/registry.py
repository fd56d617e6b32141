"""Out-of-band access to live sessions: status snapshots and cancel flags.

`/status` and `/stop` must not queue behind a running turn in the actor's
mailbox. Each live actor publishes an immutable status snapshot and its
current cancel token here; adapters read and cancel from their own threads.
"""

from __future__ import annotations

import threading
import time

import msgspec

from vigil.cancel import CancelToken
from vigil.ports import SessionState
from vigil.records.schema import SessionHeader


class SessionStatus(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    state: SessionState = "idle"
    since: float = 0.0
    queued: int = 0
    header: SessionHeader | None = None


class SessionControl:
    """One live session's published state; written by its actor, read by anyone."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._status = SessionStatus()
        self._cancel: CancelToken | None = None

    @property
    def status(self) -> SessionStatus:
        return self._status

    @property
    def busy(self) -> bool:
        return self._status.state != "idle"

    def publish(self, header: SessionHeader | None, queued: int | None = None) -> None:
        current = self._status
        self._status = msgspec.structs.replace(
            current, header=header, queued=current.queued if queued is None else queued)

    def begin(self, state: SessionState, cancel: CancelToken) -> None:
        with self._lock:
            self._cancel = cancel
            self._status = msgspec.structs.replace(self._status, state=state, since=time.time())

    def end(self) -> None:
        with self._lock:
            self._cancel = None
            self._status = msgspec.structs.replace(self._status, state="idle", since=time.time())

    def stop(self, reason: str = "stopped") -> bool:
        """Cancel the turn in progress; False if there is none."""
        with self._lock:
            cancel = self._cancel
        return cancel.cancel(reason) if cancel is not None else False


class Registry:
    """The live sessions' controls, plus the process-wide shutdown flag."""

    def __init__(self) -> None:
        self._controls: dict[str, SessionControl] = {}
        self._lock = threading.Lock()
        self.shutting_down = threading.Event()

    def add(self, key: str) -> SessionControl:
        with self._lock:
            control = self._controls[key] = SessionControl(key)
            return control

    def remove(self, key: str, control: SessionControl) -> None:
        with self._lock:
            if self._controls.get(key) is control:
                del self._controls[key]

    def get(self, key: str) -> SessionControl | None:
        return self._controls.get(key)

    def live_count(self) -> int:
        return len(self._controls)

    def busy_count(self) -> int:
        return sum(1 for c in list(self._controls.values()) if c.busy)

    def queued_count(self) -> int:
        """Messages the live sessions hold waiting for their turn (read by the metrics at scrape time)."""
        return sum(c.status.queued for c in list(self._controls.values()))

    def cancel_all(self, reason: str) -> int:
        return sum(1 for c in list(self._controls.values()) if c.stop(reason))
