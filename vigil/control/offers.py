"""What a `/sessions cleanup` prompt offered, so that its button deletes exactly that.

The "Delete them" button used to carry only an age; the press recomputed the
idle sessions with the rights of whoever pressed it, so an admin pressing a
member's prompt in a group deleted every user's idle sessions. Now the prompt
keeps its list server-side under a random token (Telegram's callback data holds
64 bytes, not a list of sessions), for the one who asked, for `OFFER_TTL_S`.

Kept in memory, not in LMDB: a prompt is a question that lives ten minutes; if
vigil restarts meanwhile its button answers that it expired and deletes
nothing, which is the safe outcome, and a store record (a sub-database and a
schema kept forever) would buy nothing more.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

OFFER_TTL_S = 600.0
MAX_OFFERS = 1000  # prompts nobody answered are dropped oldest first beyond this

EXPIRED = "This cleanup prompt has expired; nothing was deleted. Run /sessions cleanup again."
NOT_YOURS = "Only the person who asked for this cleanup can confirm it; nothing was deleted."


@dataclass(frozen=True)
class Listed:
    """One session as the prompt showed it: it is deleted only if it is still exactly this, and idle."""

    key: str
    incarnation: int
    activity: float  # its last activity when listed
    title: str
    turns: int


@dataclass(frozen=True)
class Offer:
    asker: int
    chat_key: str  # the chat the prompt was sent in
    age_s: float
    sessions: tuple[Listed, ...]
    prune: tuple[str, ...]  # sessions whose past generations ended before `prune_before` go too
    prune_before: float
    created_at: float


class Offers:
    """Thread-safe; one per Control."""

    def __init__(self, ttl_s: float = OFFER_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._offers: OrderedDict[str, Offer] = OrderedDict()

    def put(self, offer: Offer) -> str:
        """Keep an offer; the token for its button (22 characters)."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            self._offers[token] = offer
            while len(self._offers) > MAX_OFFERS:
                self._offers.popitem(last=False)
        return token

    def refusal(self, token: str, user_id: int, chat_key: str) -> str:
        """Why a press by `user_id` would take nothing (EXPIRED, NOT_YOURS), or "" if it would; nothing is used up."""
        with self._lock:
            self._expire()
            offer = self._offers.get(token)
        if offer is None:
            return EXPIRED
        return NOT_YOURS if offer.asker != user_id or offer.chat_key != chat_key else ""

    def take(self, token: str, user_id: int, chat_key: str) -> tuple[Offer | None, str]:
        """The offer behind a press, used up; else (None, why not) and nothing is used up."""
        with self._lock:
            self._expire()
            offer = self._offers.get(token)
            if offer is None:
                return None, EXPIRED
            if offer.asker != user_id or offer.chat_key != chat_key:
                return None, NOT_YOURS
            del self._offers[token]  # one press acts once
            return offer, ""

    def _expire(self) -> None:
        cutoff = self._clock() - self._ttl_s
        while self._offers:
            token, offer = next(iter(self._offers.items()))
            if offer.created_at > cutoff:
                break
            del self._offers[token]
