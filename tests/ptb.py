"""python-telegram-bot's own Bot pointed at the Bot API stand-in, for tests that drive PTB directly.

Alice (in a private chat with the bot) and Bob are the people of the `bot_api` fixture
(tests/conftest.py); their ids live here so a test module and the fixture cannot disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram import Bot
from telegram.request import HTTPXRequest

from tests.standins.bot_api import BotAPI

T = TypeVar("T")

ALICE = 1001
BOB = 1002


def with_bot(api: BotAPI, body: Callable[[Bot], Awaitable[T]], **request: Any) -> T:
    """Runs ``body`` with an initialised PTB Bot on the stand-in, downloads included.

    ``request``: settings of PTB's HTTPXRequest (timeouts, pool size), for a test about them."""

    async def main() -> T:
        kwargs: dict[str, Any] = {"base_url": api.base_url, "base_file_url": api.base_file_url}
        if request:
            kwargs["request"] = HTTPXRequest(**request)
        async with Bot(api.token, **kwargs) as bot:
            return await body(bot)

    return asyncio.run(main())
