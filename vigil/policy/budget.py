"""How fast and for how much a user may make the model work: one rule for every model call.

The per-user rate limit (`VIGIL_MESSAGES_PER_MINUTE`) and daily budget
(`VIGIL_DAILY_BUDGET_USD`) used to be checked once, when a user's message
arrived; a tool loop, a follow-up answering collected messages, or
`/heartbeat test` then spent freely. Now every model call made on a user's
behalf passes `before_call` first, and the Telegram gate asks the same object
about incoming messages, so one rate window sees both: one instance per
process (the Runtime owns it).

The rate window counts model calls. A message is counted when it is admitted
(its first call is paid for in advance, so a refused message costs nothing and
the user hears at once); calls beyond that (tool rounds, heartbeats) are
counted when made. The budget compares what the store says the user spent
today plus what the running turn has spent but not yet written down.

Admins are not limited, nor is the operator: user id 0 is the console (and a
heartbeat nobody owns); Telegram user ids are positive.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vigil.cancel import CancelToken
from vigil.config.settings import Settings
from vigil.durations import format_duration
from vigil.store.store import utc_day

WINDOW_S = 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reply: str | None = None  # what to tell the user (None: stay silent)
    retry_in: float = 0.0  # a rate refusal: seconds until the window has room again


ALLOWED = Verdict(True)


class Allowance:
    """Thread-safe; one per process, shared by the adapters and the sessions."""

    def __init__(self, settings: Settings, spent_today: Callable[[int, str], int],
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._spent_today = spent_today
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[int, deque[float]] = {}
        self._told_slow: dict[int, float] = {}

    def limited(self, user_id: int) -> bool:
        return user_id > 0 and not self._settings.is_admin(user_id)

    def admit_message(self, user_id: int) -> Verdict:
        """May this user's message go to the model now? Counts its first call in the rate window."""
        if not self.limited(user_id):
            return ALLOWED
        now = self._clock()
        with self._lock:
            wait = self._take_slot(user_id, now)
            if wait is not None:
                if now - self._told_slow.get(user_id, 0.0) < wait:
                    return Verdict(False, retry_in=wait)  # already told for this window: don't add to the flood
                self._told_slow[user_id] = now
                return Verdict(False, self._slow_text(wait), wait)
        return self._budget(user_id, now, 0)

    def before_call(self, user_id: int, pending_micros: int = 0, counted: bool = False) -> Verdict:
        """May a model call be made for this user now? `pending_micros`: spent by the running turn, not yet stored.

        `counted`: the call was paid for in the rate window already (the first call of a user's message).
        """
        if not self.limited(user_id):
            return ALLOWED
        now = self._clock()
        verdict = self._budget(user_id, now, pending_micros)
        if not verdict.allowed or counted:
            return verdict
        with self._lock:
            wait = self._take_slot(user_id, now)
        if wait is not None:
            return Verdict(False, self._slow_text(wait), wait)
        return ALLOWED

    # ------------------------------------------------------------------ the two limits

    def _take_slot(self, user_id: int, now: float) -> float | None:
        """Count one call in the user's window; None if it fit, else seconds until it would. Holds the lock."""
        window = self._recent.setdefault(user_id, deque())
        while window and now - window[0] >= WINDOW_S:
            window.popleft()
        if len(window) >= self._settings.messages_per_minute:
            return max(1.0, WINDOW_S - (now - window[0]))
        window.append(now)
        return None

    def _slow_text(self, wait: float) -> str:
        limit = self._settings.messages_per_minute
        return (f"⏳ You've reached this bot's limit of {limit} model calls a minute (each message is one, and so "
                f"is each step of a longer answer); try again in {format_duration(wait)}.")

    def _budget(self, user_id: int, now: float, pending_micros: int) -> Verdict:
        budget = self._settings.daily_budget_usd
        spent = self._spent_today(user_id, utc_day(now)) + pending_micros
        if spent < budget * 1_000_000:
            return ALLOWED
        midnight = (int(now // 86400) + 1) * 86400
        return Verdict(False, (f"💸 You've used your daily budget of ${budget:.2f} "
                               f"(${spent / 1_000_000:.2f} today). It resets at 00:00 UTC, in "
                               f"{format_duration(midnight - now)}."))


def call_guard(allowance: Allowance, user_id: int, cancel: CancelToken | None = None, first_counted: bool = False,
               on_wait: Callable[[str], None] | None = None) -> Callable[[int, int], str | None]:
    """The turn runner's `may_call` for calls paid by `user_id`.

    `first_counted`: the turn's first call was counted when its message was admitted. With `cancel`, a
    call over the rate limit waits for room (a turn under way slows down rather than stopping halfway;
    /stop ends the wait); without it, it is refused. The budget always refuses: waiting cannot fix it.
    """

    def may_call(round_no: int, pending_micros: int) -> str | None:
        while True:
            verdict = allowance.before_call(user_id, pending_micros, counted=first_counted and round_no == 0)
            if verdict.allowed:
                return None
            if cancel is None or not verdict.retry_in:
                return verdict.reply or "the model call was refused by the rate limit"
            if on_wait is not None:
                on_wait(f"⏳ rate limit: waiting {format_duration(verdict.retry_in)}")
            if cancel.wait(verdict.retry_in):
                return None  # stopped meanwhile: the runner sees the cancel and ends the turn

    return may_call
