"""Webhook mode: Telegram POSTs each update to vigil, which answers 200 only once the update is durable.

Why not PTB's own webhook server (`Updater.start_webhook`): its handler puts the update on a queue and
answers 200 at once, so an update vigil dies on before it reaches the inbox is gone: Telegram only
delivers again what was not answered with a 2xx. So this module runs its own small handler on the
same server library (tornado, PTB's `webhooks` extra) and feeds `Application.process_update` through
the application's update processor (`PerChatOrder`: chats side by side, each in order, /stop out of
band), exactly as polling does, and answers when the update's effect is on disk:

- **The durable point.** A message (or a command for its session) is durable when its inbox write is
  committed (`vigil/inbox.py`); the request's `Receipt` (`vigil/receipt.py`) collects that write while
  the handlers run, and the answer waits for it. An update that leaves nothing in the inbox (a command
  answered out of band, a refusal, an outsider, a button, a message for another bot) is answered once its
  handling is over. Album parts are the one exception: Telegram sends a chat's next update only after
  the previous one was answered, so a part that waited for its album would end the album; each part is
  answered when it is held, and the album keeps the short in-memory window polling has (albums.py).
  If the store cannot confirm the write, the answer is 503 and Telegram delivers the update again. A
  handler that fails (a bug) is logged and its update answered 200, as polling would have confirmed it:
  a 5xx would have Telegram resend that update for a day, holding up every later update of its chat.
- **Duplicates.** Telegram delivers an update again when it got no 2xx in time: vigil died after the
  update was durable but before the answer left, or the answer took longer than Telegram's timeout.
  The dedupe key is the update id: its mark is written in the same transaction as the inbox entry (or
  on its own, for an update that put nothing there), and an update whose mark is on disk is answered
  200 without being handled again; one that arrives again while it is still being taken in waits for
  that take and gets its answer. (The inbox itself keys on arrival ids, which a redelivery does not keep.)
  Marks older than two days are dropped: Telegram stops redelivering long before.
- **The secret.** Every request must carry `X-Telegram-Bot-Api-Secret-Token` equal to the secret
  registered with setWebhook (compared in constant time); any other request is answered 403 before its
  body is even parsed, so nothing of it reaches a session or the store.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import tornado.web
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application
from tornado.httpserver import HTTPServer

from vigil.errors import StartupError
from vigil.logs import get_logger
from vigil.ports import Store, WriteFuture
from vigil.receipt import CURRENT, Receipt
from vigil.settings import Settings
from vigil.webhook import path_of, secret_token

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DURABLE_TIMEOUT_S = 50.0  # below Telegram's 60 s: a store that does not confirm gets a 503, not a hang-up
MARK_DAYS = 2.0
PRUNE_EVERY_S = 6 * 3600.0
MAX_BODY = 4 * 1024 * 1024  # an update is a few kilobytes; files come by getFile, never in the update
MAX_CONNECTIONS = 40  # Telegram's default: chats are delivered side by side, each chat in order


async def start_webhook(settings: Settings, app: Application, store: Store,  # type: ignore[type-arg]
                        allowed_updates: Sequence[str]) -> WebhookServer:
    """Listen first, then register: Telegram's first delivery finds vigil listening.

    Updates Telegram queued meanwhile (a restart, polling before) are kept: `drop_pending_updates=False`.
    """
    url = settings.webhook_url
    assert url is not None
    secret = await asyncio.to_thread(secret_token, settings)
    server = WebhookServer(UpdateReceiver(app, store), app, store, secret, path_of(url), settings.webhook_listen)
    await server.start()
    try:
        await app.bot.set_webhook(url, secret_token=secret, allowed_updates=list(allowed_updates),
                                  drop_pending_updates=False, max_connections=MAX_CONNECTIONS)
    except TelegramError as exc:
        await server.stop(0)
        raise StartupError(f"Telegram refused the webhook VIGIL_WEBHOOK_URL={url} ({exc})") from None
    return server


class UpdateReceiver:
    """Takes one update in and says what to answer: the dedupe by update id, and the durable point."""

    def __init__(self, app: Application, store: Store) -> None:  # type: ignore[type-arg]
        self._app = app
        self._store = store
        self._running: dict[int, asyncio.Task[int]] = {}
        self._log = get_logger(__name__)

    @property
    def running(self) -> int:
        """Updates being taken in now."""
        return len(self._running)

    async def take(self, update: Update) -> int:
        """The HTTP status to answer this delivery of `update` with."""
        update_id = update.update_id
        task = self._running.get(update_id)
        if task is None:
            if self._store.update_taken(update_id):  # a cheap LMDB read: fine on the loop
                self._log.info("webhook.duplicate", update_id=update_id)
                return 200
            task = asyncio.get_running_loop().create_task(self._take(update), name=f"webhook update {update_id}")
            self._running[update_id] = task
            task.add_done_callback(lambda _: self._running.pop(update_id, None))
        else:
            self._log.info("webhook.duplicate_in_flight", update_id=update_id)
        # Shielded: a request given up (Telegram's timeout, a shutdown) must not cut the update's handling short.
        return await asyncio.shield(task)

    async def _take(self, update: Update) -> int:
        receipt = Receipt(update.update_id)
        CURRENT.set(receipt)  # this task's own context: what the handlers write, this update waits for
        try:
            await self._app.update_processor.process_update(update, self._app.process_update(update))
        except Exception as exc:  # PTB hands handler errors to the error handler; this is anything else
            self._log.error("webhook.update_failed", update_id=update.update_id, error=repr(exc))
            receipt.close()
            return 500
        writes, marked = receipt.close()
        try:
            if not marked:
                writes.append(self._store.mark_updates((update.update_id,)))
            await asyncio.to_thread(_durable, writes, DURABLE_TIMEOUT_S)
        except Exception as exc:  # StoreError, a full disk, a store that did not answer in time
            self._log.error("webhook.not_saved", update_id=update.update_id, error=repr(exc))
            return 503
        return 200

    async def idle(self, timeout: float) -> bool:
        """Wait until no update is being taken in (at shutdown); False if some still were after `timeout`."""
        tasks = list(self._running.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending


def _durable(writes: Sequence[WriteFuture], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for write in writes:
        write.result(max(0.0, deadline - time.monotonic()))


class WebhookServer:
    """The HTTP side: one path, POST only, the secret checked first."""

    def __init__(self, receiver: UpdateReceiver, app: Application, store: Store,  # type: ignore[type-arg]
                 secret: str, path: str, listen: tuple[str, int]) -> None:
        self.receiver = receiver
        self._app = app
        self._store = store
        self._secret = secret.encode()
        self._listen = listen
        pattern = re.escape(path.rstrip("/")) + "/?"
        self._web = _Web([(pattern, _Endpoint, {"hook": self})])
        self._http: HTTPServer | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._log = get_logger(__name__)

    async def start(self) -> None:
        host, port = self._listen
        http = HTTPServer(self._web, max_body_size=MAX_BODY, idle_connection_timeout=120.0)
        try:
            http.listen(port, address=host)
        except OSError as exc:
            raise StartupError(f"cannot listen on VIGIL_WEBHOOK_LISTEN={host}:{port} ({exc.strerror or exc})") from None
        self._http = http
        self._pruner = asyncio.get_running_loop().create_task(self._prune(), name="webhook marks")
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
        return await self.receiver.take(update)

    async def stop(self, grace: float) -> None:
        """Take no new requests, let those being taken in finish (up to `grace`), then close every connection."""
        if self._pruner is not None:
            self._pruner.cancel()
        http, self._http = self._http, None
        if http is None:
            return
        http.stop()
        if not await self.receiver.idle(grace):
            self._log.warning("webhook.unanswered_at_exit", updates=self.receiver.running)
        await http.close_all_connections()

    async def _prune(self) -> None:
        while True:
            try:
                dropped = await asyncio.to_thread(self._forget_old)
                if dropped:
                    self._log.info("webhook.marks_dropped", marks=dropped)
            except Exception as exc:
                self._log.warning("webhook.marks_not_dropped", error=repr(exc))
            await asyncio.sleep(PRUNE_EVERY_S)


    def _forget_old(self) -> int:
        return int(self._store.forget_updates(time.time() - MARK_DAYS * 86400).result())


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
