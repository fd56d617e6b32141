"""Telegram updates handled side by side across chats, in order within a chat.

With PTB's `concurrent_updates(False)` one update was handled at a time: a slow
command (`/export` of a long history, a cleanup waiting on sessions, a Bot API
call held up by flood control) delayed every chat, `/stop` included. This
processor starts each update at once unless an earlier update of the same chat
(forum topic) is still being handled, and then it waits its turn behind it: an
`asyncio.Lock` per chat, FIFO, made when an update arrives and dropped when the
last update holding or waiting for it is done.

`/stop` and `/status` skip the line of their own chat as well: they only signal
a cancel flag or read a published snapshot (see actors/core/registry.py), so they
must not wait behind a slow command of that chat either, and they cannot
overtake anything they depend on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from telegram import Message, MessageEntity, Update
from telegram.ext import BaseUpdateProcessor

from vigil.adapters.telegram.receive.keys import topic_of
from vigil.logs import get_logger

# Updates waiting behind a slow one of their chat hold a slot too, so the cap is far above any real load:
# it only bounds memory if Telegram floods us.
MAX_CONCURRENT_UPDATES = 4096
OUT_OF_BAND = frozenset({"stop", "status"})
SLOW_UPDATE_S = 1.0

Lane = tuple[int, int | None]  # (chat id, forum topic)


@dataclass
class _Line:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # updates holding or waiting for the lock


class PerChatOrder(BaseUpdateProcessor):
    """`ApplicationBuilder().concurrent_updates(PerChatOrder())`."""

    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._lines: dict[Lane, _Line] = {}
        self._log = get_logger(__name__)

    @property
    def lines(self) -> int:
        """Chats with an update in hand (tests: idle chats leave nothing behind)."""
        return len(self._lines)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        started = time.monotonic()
        lanes = lanes_of(update)
        lines = []
        for lane in lanes:
            line = self._lines.get(lane)
            if line is None:
                line = self._lines[lane] = _Line()
            line.users += 1
            lines.append(line)
        try:
            async with contextlib.AsyncExitStack() as held:
                # No await before the first lock: updates reach their chat's lock in the order PTB started them.
                for line in lines:  # several only for a migration; sorted, so two can never wait for each other
                    await held.enter_async_context(line.lock)
                await coroutine
        finally:
            for lane, line in zip(lanes, lines, strict=True):
                line.users -= 1
                if not line.users:
                    del self._lines[lane]
            elapsed = time.monotonic() - started
            if elapsed >= SLOW_UPDATE_S:
                self._log.info("telegram.slow_update", chat_id=lanes[0][0] if lanes else None, what=describe(update),
                               ms=round(elapsed * 1000))

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def lanes_of(update: object) -> tuple[Lane, ...]:
    """The chat (topic) whose order an update keeps; none: it runs at once (out of band, or no chat).

    A group's upgrade to a supergroup keeps the order of both chats: the new chat's first messages must
    find the old session's alias in place.
    """
    if not isinstance(update, Update) or command_of(update) in OUT_OF_BAND:
        return ()
    chat = update.effective_chat
    if chat is None:
        return ()
    message = update.effective_message
    if not isinstance(message, Message):
        return ((chat.id, None),)
    other = message.migrate_to_chat_id or message.migrate_from_chat_id
    if other:
        return tuple(sorted({(chat.id, None), (int(other), None)}))
    return ((chat.id, topic_of(message)),)


def command_of(update: Update) -> str | None:
    """The bot command a message starts with ("stop" for "/stop@vigil_bot now"), if any."""
    message = update.message
    if message is None or not message.text:
        return None
    if not any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in message.entities or ()):
        return None
    return message.text.split(maxsplit=1)[0][1:].split("@", 1)[0].lower()


def describe(update: object) -> str:
    if not isinstance(update, Update):
        return type(update).__name__
    if update.callback_query is not None:
        return f"button {(update.callback_query.data or '')[:32]}"
    command = command_of(update)
    return f"/{command}" if command else "message"
