"""Who may talk, how fast, and for how much: the gate in front of the sessions; and who a group's admins are.

Outsiders get one polite refusal (per user per hour, kept in memory only:
nothing of theirs reaches the store or the model) telling them their numeric
id. Allowed users are limited to `VIGIL_MESSAGES_PER_MINUTE` model calls a
minute and `VIGIL_DAILY_BUDGET_USD` of model spend per UTC day; admins are
exempt. Those limits are `vigil.policy.budget.Allowance`, shared with the sessions,
which check it again before every model call. Each refusal says when the limit
resets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from telegram import Bot

from vigil.config.settings import Settings
from vigil.logs import get_logger
from vigil.policy.budget import Allowance, Verdict
from vigil.policy.roles import ANONYMOUS_ADMIN

REFUSAL_EVERY_S = 3600.0
ADMIN_TTL_S = 120.0  # how stale vigil's idea of a group's admins may be
LOOKUP_TIMEOUT_S = 10.0
_REMEMBERED = 10_000

__all__ = ["ADMIN_TTL_S", "Gate", "TelegramAdmins", "Verdict"]


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
        if user_id == ANONYMOUS_ADMIN:
            return Verdict(False, (
                "You're writing as the group (an anonymous admin), so I can't tell who you are, and this vigil "
                "talks only to the people on its list; turn off \"Remain anonymous\" in your admin rights to use it."))
        return Verdict(False, (
            "Sorry, this vigil is private and you are not on its list of users. "
            f"Your Telegram user id is {user_id}; if you should have access, send that number to "
            "whoever runs this bot."))

    def spend(self, user_id: int) -> Verdict:
        """May this user's message go to the model now (rate and budget)? The rule every model call follows."""
        return self._allowance.admit_message(user_id)


class TelegramAdmins:
    """vigil/policy/roles.py's AdminLookup for Telegram: a group's creator and administrators, kept `ttl_s`.

    Asked with getChatAdministrators rather than getChatMember: Telegram guarantees getChatMember for
    other users only to a bot that is an admin itself, while the list of admins is given to any bot in
    the group, and one call answers for everyone in it (anonymous admins are listed by their own ids).
    A promotion or demotion reaches vigil within `ttl_s` (ADMIN_TTL_S): the staleness bound.

    Called from worker and actor threads: the call runs on the adapter's loop and the thread waits for
    it (at most LOOKUP_TIMEOUT_S; threads asking about one group at once share one call). Asked from the
    loop itself it would wait for itself, so that raises. A failure (the network, the bot removed from
    the group) is "can't tell" (None), not remembered: the next question asks again.
    """

    def __init__(self, ttl_s: float = ADMIN_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: OrderedDict[int, tuple[float, frozenset[int]]] = OrderedDict()
        self._asking: dict[int, concurrent.futures.Future[frozenset[int]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bot: Bot | None = None
        self._log = get_logger(__name__)

    def attach(self, loop: asyncio.AbstractEventLoop, bot: Bot) -> None:
        self._loop, self._bot = loop, bot

    def is_chat_admin(self, chat_id: int, user_id: int) -> bool | None:
        admins = self.admins(chat_id)
        return None if admins is None else user_id in admins

    def admins(self, chat_id: int) -> frozenset[int] | None:
        """The ids of the group's creator and administrators (None: Telegram could not be asked or refused)."""
        asked_at = self._clock()
        with self._lock:
            known = self._known.get(chat_id)
            if known is not None and asked_at - known[0] < self._ttl_s:
                return known[1]
            loop = self._loop
            if loop is None or loop.is_closed():
                return None
            if _running_loop() is loop:
                raise RuntimeError("TelegramAdmins.admins waits for the loop it was called on: call it from a thread")
            future = self._asking.get(chat_id)
            if future is None:
                future = self._asking[chat_id] = asyncio.run_coroutine_threadsafe(self._fetch(chat_id), loop)
        try:
            admins = future.result(LOOKUP_TIMEOUT_S)
        except Exception as exc:  # TelegramError, a timeout, the loop closing: nobody is taken for an admin
            self._log.warning("telegram.admins_unknown", chat_id=chat_id, error=repr(exc))
            admins = None
        with self._lock:
            if self._asking.get(chat_id) is future:
                del self._asking[chat_id]
                if admins is not None:
                    self._known[chat_id] = (asked_at, admins)  # counted from the question: never staler than ttl_s
                    self._known.move_to_end(chat_id)
                    while len(self._known) > _REMEMBERED:
                        self._known.popitem(last=False)
        return admins

    async def _fetch(self, chat_id: int) -> frozenset[int]:
        assert self._bot is not None
        members = await self._bot.get_chat_administrators(chat_id)
        return frozenset(m.user.id for m in members if m.status in ("creator", "administrator"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
