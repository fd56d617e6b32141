"""What a streamed reply and a file upload use of the outbox: a Protocol, so they don't import it.

The outbox (`outbox.TelegramOutbox`) hands out streams (`stream.py`) and runs uploads (`files.py`); they
call back into it for the chat's lock, its retry policy and the group's pace. Naming that here keeps
the arrows one way: outbox → stream, files → lane (tests/test_layout.py forbids a circle, even one
only a type checker follows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message

from vigil.adapters.telegram.render import Chunk
from vigil.records.schema import Target

T = TypeVar("T")

__all__ = ["OutboxLane"]


class OutboxLane(Protocol):
    @property
    def bot(self) -> Bot:
        """PTB's bot, once the outbox is attached to the running application."""

    def update_interval(self, target: Target) -> float:
        """Seconds between two updates of a streamed preview in this chat (drafts in private, edits in groups)."""

    def submit(self, coroutine: Coroutine[Any, Any, Any], ref: tuple[str, int] | None = None) -> None:
        """Run `coroutine` on PTB's event loop (from an actor's thread)."""

    def report_failure(self, key: str, reason: str, ref: int | None) -> None:
        """Tell the session a delivery failed for good (it marks the turn's reply undelivered)."""

    def lock(self, target: Target) -> asyncio.Lock:
        """The chat's lock: one delivery at a time per chat (and topic), so messages keep their order."""

    def preview_room(self, chat_id: int) -> bool:
        """Whether a streamed preview fits the group's minute; private chats have no such limit."""

    async def send_chunk(self, key: str, target: Target, chunk: Chunk,
                         markup: InlineKeyboardMarkup | None = None, plain_only: bool = False) -> Message | None:
        """One message as HTML, or as plain text if Telegram can't parse the HTML (or if asked to)."""

    async def edit_chunk(self, key: str, target: Target, message_id: int, chunk: Chunk,
                         markup: InlineKeyboardMarkup | None = None, plain_only: bool = False) -> bool:
        """Edit a message to `chunk`; False if the message is gone (the caller sends a new one)."""

    async def call(self, key: str, target: Target, request: Callable[[int], Awaitable[T]],
                   idempotent: bool = False) -> T:
        """One Bot API call with vigil's retry policy; raises `Undeliverable` when it fails for good."""
