"""Who may talk, how fast, and for how much: the gate in front of the sessions.

Outsiders get one polite refusal (per user per hour, kept in memory only:
nothing of theirs reaches the store or the model) telling them their numeric
id. Allowed users are limited to `VIGIL_MESSAGES_PER_MINUTE` messages a minute
and `VIGIL_DAILY_BUDGET_USD` of model spend per UTC day; admins are exempt.
Each refusal says when the limit resets.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from vigil.durations import format_duration
from vigil.settings import Settings
from vigil.store.store import utc_day

REFUSAL_EVERY_S = 3600.0
_REMEMBERED = 10_000


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reply: str | None = None  # what to tell the user (None: stay silent)


class Gate:
    """Thread-safe; one per process."""

    def __init__(self, settings: Settings, spent_today: Callable[[int, str], int],
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._spent_today = spent_today
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: OrderedDict[int, float] = OrderedDict()
        self._recent: dict[int, deque[float]] = {}
        self._told_slow: dict[int, float] = {}

    def is_admin(self, user_id: int) -> bool:
        return self._settings.is_admin(user_id)

    def admit(self, user_id: int) -> Verdict:
        """May this user talk at all? Outsiders are refused once an hour, then ignored."""
        if self._settings.is_allowed(user_id):
            return Verdict(True)
        now = self._clock()
        with self._lock:
            last = self._refused.get(user_id)
            if last is not None and now - last < REFUSAL_EVERY_S:
                return Verdict(False)
            self._refused[user_id] = now
            self._refused.move_to_end(user_id)
            while len(self._refused) > _REMEMBERED:
                self._refused.popitem(last=False)
        return Verdict(False, (
            "Sorry, this vigil is private and you are not on its list of users. "
            f"Your Telegram user id is {user_id}; if you should have access, send that number to "
            "whoever runs this bot."))

    def spend(self, user_id: int) -> Verdict:
        """May this user's message go to the model now (rate and budget)?"""
        if self.is_admin(user_id):
            return Verdict(True)
        now = self._clock()
        limit = self._settings.messages_per_minute
        with self._lock:
            window = self._recent.setdefault(user_id, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= limit:
                wait = 60 - (now - window[0])
                if now - self._told_slow.get(user_id, 0.0) < wait:
                    return Verdict(False)  # already told for this window: don't add to the flood
                self._told_slow[user_id] = now
                return Verdict(False, (f"⏳ You've sent {limit} messages in the last minute, the most this bot "
                                       f"takes; try again in {format_duration(max(1.0, wait))}."))
            window.append(now)
        budget = self._settings.daily_budget_usd
        spent = self._spent_today(user_id, utc_day(now))
        if spent >= budget * 1_000_000:
            midnight = (int(now // 86400) + 1) * 86400
            return Verdict(False, (f"💸 You've used your daily budget of ${budget:.2f} "
                                   f"(${spent / 1_000_000:.2f} today). It resets at 00:00 UTC, in "
                                   f"{format_duration(midnight - now)}."))
        return Verdict(True)
