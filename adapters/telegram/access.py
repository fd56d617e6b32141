"""Who may talk, how fast, and for how much: the gate in front of the sessions.

Outsiders get one polite refusal (per user per hour, kept in memory only:
nothing of theirs reaches the store or the model) telling them their numeric
id. Allowed users are limited to `VIGIL_MESSAGES_PER_MINUTE` model calls a
minute and `VIGIL_DAILY_BUDGET_USD` of model spend per UTC day; admins are
exempt. Those limits are `vigil.budget.Allowance`, shared with the sessions,
which check it again before every model call. Each refusal says when the limit
resets.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from vigil.budget import Allowance, Verdict
from vigil.settings import Settings

REFUSAL_EVERY_S = 3600.0
_REMEMBERED = 10_000

__all__ = ["Gate", "Verdict"]


class Gate:
    """Thread-safe; one per process."""

    def __init__(self, settings: Settings, allowance: Allowance, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._allowance = allowance
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: OrderedDict[int, float] = OrderedDict()

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
        """May this user's message go to the model now (rate and budget)? The rule every model call follows."""
        return self._allowance.admit_message(user_id)
