"""Faults a test injects into the Bot API stand-in: flood waits (429), failures (5xx) and stalls.

Each fault is used up by the next matching calls. A fault without a method never hits getUpdates:
PTB's background poll would otherwise swallow faults meant for the call the test is about.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from tests.standins.bot_api.methods import METHOD_NAMES
from tests.standins.bot_api.wire import as_int


@dataclass
class Fault:
    kind: str  # "flood" | "fail" | "stall"
    remaining: int
    method: str | None  # lower-cased method name
    chat_id: int | None = None
    retry_after: int = 0
    status: int = 0
    seconds: float = 0.0


def fault_method(method: str | None) -> str | None:
    """The lower-cased method a fault targets; a name Telegram does not know is a mistake in the test."""
    if method is None:
        return None
    if method.lower() not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}")
    return method.lower()


class Faults:
    """The faults waiting for their calls, guarded by the world's lock."""

    def __init__(self, lock: threading.Condition) -> None:
        self._lock = lock
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method_lc: str, params: dict[str, Any]) -> Fault | None:
        """The first fault matching this call, counted down (and dropped once used up); None if none."""
        with self._lock:
            for fault in self._faults:
                if fault.method is None and method_lc == "getupdates":
                    continue
                if fault.method is not None and fault.method != method_lc:
                    continue
                if fault.chat_id is not None and as_int(params.get("chat_id")) != fault.chat_id:
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
            return None
