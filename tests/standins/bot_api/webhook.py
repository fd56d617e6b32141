"""The webhook deliverer: Telegram's side of webhook mode, POSTing each pending update to the URL.

As Telegram does: an update is delivered until it is answered with a 2xx; any other answer, a refused
or dropped connection and a timeout are retried (after ``WebhookControls.retry_s``, much shorter than
Telegram's backoff, so tests see the redelivery soon); updates of one chat go one at a time and in
order (the next waits for the previous one's answer), different chats side by side, up to the
webhook's ``max_connections``; every request carries ``X-Telegram-Bot-Api-Secret-Token`` when a secret
was set. Each attempt is recorded (`model.WebhookDelivery`). A new connection per request: a vigil that
was killed and started again is reached at once, with nothing stale pooled.

Tests hold deliveries with ``WebhookControls``: ``paused`` delivers nothing; ``lose_answers`` throws the
next answers away as if the connection broke just before them (the update is delivered again), and
``pause_after_lost`` pauses right then, so a test can kill vigil before the redelivery.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from tests.standins.bot_api.methods.updates import wanted
from tests.standins.bot_api.model import Webhook, WebhookDelivery
from tests.standins.bot_api.state import World

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Deliverer:
    """One thread choosing what to deliver, one short-lived thread per POST."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._in_flight: set[int] = set()
        self._busy: set[object] = set()  # chats with an update in flight
        self._retry_at: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, name="webhook-deliverer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        """After the world is stopping: the chooser ends (POSTs under way end on their own timeout)."""
        self._thread.join(timeout)

    def _run(self) -> None:
        world = self._world
        with world.cond:
            while not world.stopping:
                hook = world.webhook
                update = self._next(hook) if hook is not None and not world.webhook_controls.paused else None
                if update is None:
                    world.cond.wait(self._idle_wait())
                    continue
                assert hook is not None
                self._in_flight.add(update["update_id"])
                self._busy.add(_chat_of(update))
                threading.Thread(target=self._deliver, args=(hook, update), daemon=True,
                                 name=f"webhook-post-{update['update_id']}").start()

    def _next(self, hook: Webhook) -> dict[str, Any] | None:
        """The first update that may go now: its chat has nothing in flight or waiting for a retry before it."""
        if len(self._in_flight) >= hook.max_connections:
            return None
        now = time.monotonic()
        held: set[object] = set()
        for update in self._world.updates:
            if not wanted(self._world, update):
                continue
            chat = _chat_of(update)
            update_id = update["update_id"]
            if chat in held or chat in self._busy:
                held.add(chat)
                continue
            if update_id in self._in_flight or self._retry_at.get(update_id, 0.0) > now:
                held.add(chat)  # the chat's later updates wait behind it
                continue
            return update
        return None

    def _idle_wait(self) -> float:
        """Until the next retry is due (a change of the world wakes the chooser sooner)."""
        now = time.monotonic()
        due = [at - now for at in self._retry_at.values() if at > now]
        return max(0.01, min([0.2, *due]))

    def _deliver(self, hook: Webhook, update: dict[str, Any]) -> None:
        world = self._world
        started = time.monotonic()
        status, error = _post(hook, update, world.webhook_controls.timeout_s)
        with world.cond:
            controls = world.webhook_controls
            if status is not None and controls.lose_answers > 0:
                controls.lose_answers -= 1
                error = "lost"
                if controls.pause_after_lost:
                    controls.paused = True
            delivery = WebhookDelivery(update_id=update["update_id"], secret_token=hook.secret_token, status=status,
                                       error=error, time=started, duration=time.monotonic() - started)
            world.webhook_deliveries.append(delivery)
            self._in_flight.discard(update["update_id"])
            self._busy.discard(_chat_of(update))
            if delivery.accepted:
                self._retry_at.pop(update["update_id"], None)
                world.updates = [u for u in world.updates if u["update_id"] != update["update_id"]]
            else:
                self._retry_at[update["update_id"]] = time.monotonic() + controls.retry_s
            world.cond.notify_all()


def _post(hook: Webhook, update: dict[str, Any], timeout: float) -> tuple[int | None, str]:
    """(HTTP status, "") or (None, why there was no answer)."""
    parts = urlsplit(hook.url)
    if parts.scheme != "http" or parts.hostname is None:
        return None, "the stand-in delivers over plain http only"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json"}
    if hook.secret_token:
        headers[SECRET_HEADER] = hook.secret_token
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request("POST", path, body=json.dumps(update).encode(), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, ""
    except ConnectionRefusedError:
        return None, "refused"
    except TimeoutError:
        return None, "timeout"
    except (http.client.HTTPException, OSError):
        return None, "dropped"
    finally:
        connection.close()


def _chat_of(update: dict[str, Any]) -> object:
    """The chat whose updates go one at a time (an update of no chat is a lane of its own)."""
    for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if kind in update:
            return update[kind]["chat"]["id"]
    query = update.get("callback_query")
    if query is not None and "message" in query:
        return query["message"]["chat"]["id"]
    return ("update", update["update_id"])
