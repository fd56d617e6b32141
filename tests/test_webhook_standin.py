"""The Bot API stand-in's webhook side: setWebhook/deleteWebhook/getWebhookInfo with Telegram's rules (driven
by real PTB), and the deliverer POSTing updates to a small HTTP server of the test's own."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from telegram import Bot
from telegram.error import BadRequest, Conflict

from tests.ptb import ALICE, with_bot
from tests.standins.bot_api import BotAPI


@dataclass
class Hook:
    """A webhook endpoint: answers each POST with the next status of `statuses` (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[int, str | None, str]] = field(default_factory=list)  # (update_id, secret, path)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.received.append((body["update_id"], self.headers.get("X-Telegram-Bot-Api-Secret-Token"),
                                       self.path))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_set_webhook_follows_telegrams_rules(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
            await bot.set_webhook("http://bot.example.org/hook")
        with pytest.raises(BadRequest, match=r"(?i)ports 80, 88, 443 or 8443"):
            await bot.set_webhook("https://bot.example.org:9443/hook")
        with pytest.raises(BadRequest, match=r"(?i)unallowed characters"):
            await bot.set_webhook("https://bot.example.org/hook", secret_token="no spaces allowed")
        with pytest.raises(BadRequest, match=r"(?i)too long"):
            await bot.set_webhook("https://bot.example.org/hook", secret_token="x" * 257)
        assert bot_api.webhook is None
        assert await bot.set_webhook("https://bot.example.org:8443/hook", secret_token="A-z_09" * 40,
                                     allowed_updates=["message"], max_connections=10)
        info = await bot.get_webhook_info()
        assert (info.url, info.max_connections, info.allowed_updates) == (
            "https://bot.example.org:8443/hook", 10, ("message",))
        with pytest.raises(Conflict, match=r"(?i)webhook is active"):
            await bot.get_updates(timeout=0)
        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
        assert await bot.get_updates(timeout=0) == ()

    with_bot(bot_api, body)


def test_updates_are_posted_with_the_secret_until_a_2xx(bot_api: BotAPI, hook: Hook) -> None:
    hook.statuses = [500, 403]
    bot_api.send_text(ALICE, ALICE, "one")
    bot_api.send_text(ALICE, ALICE, "two")

    async def body(bot: Bot) -> None:
        await bot.set_webhook(f"http://127.0.0.1:{hook.port}/tg", secret_token="s3cret")

    with_bot(bot_api, body)
    bot_api.wait_for(lambda: not bot_api.queued_updates(), 10, "every update delivered")
    with hook.lock:
        received = list(hook.received)
    ids = [update_id for update_id, _, _ in received]
    first_id = ids[0]
    # The first update was refused twice and delivered the third time; the chat's second waited behind it.
    assert ids == [first_id, first_id, first_id, first_id + 1]
    assert {(secret, path) for _, secret, path in received} == {("s3cret", "/tg")}
    attempts = [(d.update_id, d.status, d.accepted) for d in bot_api.webhook_deliveries]
    assert attempts == [(first_id, 500, False), (first_id, 403, False), (first_id, 200, True),
                        (first_id + 1, 200, True)]


def test_a_webhook_nobody_listens_on_is_retried_and_lost_answers_deliver_again(bot_api: BotAPI, hook: Hook) -> None:
    bot_api.pause_webhook()
    bot_api.send_text(ALICE, ALICE, "anyone there?")

    async def body(bot: Bot) -> None:
        with socket.socket() as unused:  # bound, never listening: connections are refused
            unused.bind(("127.0.0.1", 0))
            await bot.set_webhook(f"http://127.0.0.1:{unused.getsockname()[1]}/tg", secret_token="s")
        bot_api.pause_webhook(False)
        bot_api.wait_for(lambda: len(bot_api.webhook_deliveries) >= 2, 10, "two refused attempts")
        assert {d.error for d in bot_api.webhook_deliveries} == {"refused"}
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1 and info.last_error_message == "refused"
        bot_api.lose_webhook_answers(1, then_pause=True)
        await bot.set_webhook(f"http://127.0.0.1:{hook.port}/tg", secret_token="s")

    with_bot(bot_api, body)
    bot_api.wait_for(lambda: any(d.error == "lost" for d in bot_api.webhook_deliveries), 10, "the lost answer")
    assert len(bot_api.queued_updates()) == 1  # answered, but "Telegram" never saw it: still pending
    bot_api.pause_webhook(False)
    bot_api.wait_for(lambda: not bot_api.queued_updates(), 10, "the update delivered again")
    with hook.lock:
        assert len(hook.received) == 2
