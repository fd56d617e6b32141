"""Webhook mode: Telegram POSTs each update to vigil, which answers 200 only once the update is durable.

Why not PTB's own webhook server (`Updater.start_webhook`): its handler puts the update on a queue and
answers 200 at once, so an update vigil dies on before it reaches the inbox is gone: Telegram only
delivers again what was not answered with a 2xx. So this module runs its own small handler on the
same server library (tornado, PTB's `webhooks` extra) and hands each update to the `UpdateReceiver`
(receiver.py), as polling does: the answer is the receiver's, 200 once the update's effect (or its
held copy) is on disk, 503 if the store could not save it, so Telegram delivers it again. Telegram
sends a chat's next update only after the previous one was answered: an album part is answered on its
held copy, so the album goes on arriving while it is gathered (albums.py).

**The secret.** Every request must carry `X-Telegram-Bot-Api-Secret-Token` equal to the secret
registered with setWebhook (compared in constant time); any other request is answered 403 before its
body is even parsed, so nothing of it reaches a session or the store.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any

import tornado.web
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application
from tornado.httpserver import HTTPServer

from vigil.adapters.telegram.receive.receiver import UpdateReceiver
from vigil.config.settings import Settings
from vigil.config.webhook import path_of, secret_token
from vigil.errors import StartupError
from vigil.logs import get_logger

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 4 * 1024 * 1024  # an update is a few kilobytes; files come by getFile, never in the update
MAX_CONNECTIONS = 40  # Telegram's default: chats are delivered side by side, each chat in order


async def start_webhook(settings: Settings, app: Application, receiver: UpdateReceiver,  # type: ignore[type-arg]
                        allowed_updates: Sequence[str]) -> WebhookServer:
    """Listen first, then register: Telegram's first delivery finds vigil listening.

    Updates Telegram queued meanwhile (a restart, polling before) are kept: `drop_pending_updates=False`.
    """
    url = settings.webhook_url
    assert url is not None
    secret = await asyncio.to_thread(secret_token, settings.webhook_secret, settings.data_dir)
    server = WebhookServer(receiver, app, secret, path_of(url), settings.webhook_listen)
    await server.start()
    try:
        await app.bot.set_webhook(url, secret_token=secret, allowed_updates=list(allowed_updates),
                                  drop_pending_updates=False, max_connections=MAX_CONNECTIONS)
    except TelegramError as exc:
        await server.stop(0)
        raise StartupError(f"Telegram refused the webhook VIGIL_WEBHOOK_URL={url} ({exc})") from None
    return server


class WebhookServer:
    """The HTTP side: one path, POST only, the secret checked first."""

    def __init__(self, receiver: UpdateReceiver, app: Application,  # type: ignore[type-arg]
                 secret: str, path: str, listen: tuple[str, int]) -> None:
        self.receiver = receiver
        self._app = app
        self._secret = secret.encode()
        self._listen = listen
        pattern = re.escape(path.rstrip("/")) + "/?"
        self._web = _Web([(pattern, _Endpoint, {"hook": self})])
        self._http: HTTPServer | None = None
        self._log = get_logger(__name__)

    async def start(self) -> None:
        host, port = self._listen
        http = HTTPServer(self._web, max_body_size=MAX_BODY, idle_connection_timeout=120.0)
        try:
            http.listen(port, address=host)
        except OSError as exc:
            raise StartupError(f"cannot listen on VIGIL_WEBHOOK_LISTEN={host}:{port} ({exc.strerror or exc})") from None
        self._http = http
        self._log.info("webhook.listening", host=host, port=port)

    async def answer(self, secret: str | None, body: bytes) -> int:
        """The status for one POST: 403 without the right secret, 400 if it is no update, else the take's."""
        if secret is None or not hmac.compare_digest(secret.encode(), self._secret):
            self._log.warning("webhook.refused", reason="no secret token" if secret is None else "wrong secret token")
            return 403
        try:
            update = Update.de_json(json.loads(body), self._app.bot)
        except Exception as exc:
            self._log.warning("webhook.unreadable", error=repr(exc))
            return 400
        return await self.receiver.take(update, body)

    async def stop(self, grace: float) -> None:
        """Take no new requests, let those being taken in be answered (up to `grace`), then close every connection."""
        http, self._http = self._http, None
        if http is None:
            return
        http.stop()
        if not await self.receiver.answered(grace):
            self._log.warning("webhook.unanswered_at_exit", updates=self.receiver.running)
        await http.close_all_connections()


class _Web(tornado.web.Application):
    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Every delivery would be a line: vigil logs what matters itself (refusals, duplicates, failures)."""


class _Endpoint(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("POST",)

    def initialize(self, hook: WebhookServer) -> None:
        self.hook = hook

    async def post(self, *args: Any) -> None:
        status = await self.hook.answer(self.request.headers.get(SECRET_HEADER), self.request.body)
        self.set_status(status)
        await self.finish()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        get_logger(__name__).error("webhook.request_failed", error=repr(value))
