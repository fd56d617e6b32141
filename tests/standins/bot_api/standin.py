"""`BotAPI`, the face of the Bot API stand-in: what a test starts, builds, drives, observes and breaks.

It owns the parts and wires them: the world (`state.World`), the faults (`faults.Faults`) and the
HTTP server (`server.Router` on `tests.standins.loopback`). Building the world and the users' actions
are `scene`'s, the answers to the bot are `methods`'; what stays here is lifecycle, observing (snapshots
and waits on the world's condition) and arming faults.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.standins.bot_api import scene
from tests.standins.bot_api.faults import Fault, Faults, fault_method
from tests.standins.bot_api.model import (
    ANY,
    AnyThread,
    ApiCall,
    CallbackQuery,
    Chat,
    Download,
    Draft,
    Message,
    SentFile,
    SentMessage,
    User,
    Webhook,
    WebhookDelivery,
)
from tests.standins.bot_api.posting import Posting
from tests.standins.bot_api.server import FILE_PREFIX, BotServer, Router
from tests.standins.bot_api.state import World
from tests.standins.bot_api.webhook import Deliverer
from tests.standins.bot_api.wire import TOKEN_RE

T = TypeVar("T")


class BotAPI(Posting):
    """The Telegram Bot API on loopback, with a world that tests drive and observe.

    What users post (``send_text``, ``send_photo``, ``send_album``, ``send_document``, ``send_voice``...)
    and the files on the servers (``add_file``, ``file``) come from `Posting`."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "vigil_test_bot",
        *,
        strict_ampersand: bool = True,
        privacy_mode: bool = False,
    ) -> None:
        if not TOKEN_RE.fullmatch(token):
            raise ValueError(f"not a bot token: {token!r}")
        self.token = token
        self.base_url = ""
        self.base_file_url = ""  # PTB's base_file_url: downloads are GET <base_file_url><token>/<file_path>
        bot_user = User(int(token.split(":")[0]), "Vigil", bot_username, is_bot=True)
        self._world = World(bot_user, strict_ampersand=strict_ampersand, privacy_mode=privacy_mode)
        self._faults = Faults(self._world.cond)
        self._server: BotServer | None = None
        self._deliverer: Deliverer | None = None
        self._t0 = time.monotonic()

    # -- what the world records, and its settings --------------------------------------------

    @property
    def bot_user(self) -> User:
        return self._world.bot_user

    @property
    def calls(self) -> list[ApiCall]:
        """Every request and its outcome, in arrival order."""
        return self._world.calls

    @property
    def uploads(self) -> list[SentFile]:
        """Every file the bot sent (sendDocument and sendPhoto), in order, with the bytes that reached the chat."""
        return self._world.uploads

    @property
    def documents(self) -> list[SentFile]:
        """The files the bot sent with sendDocument."""
        with self._world.cond:
            return [u for u in self._world.uploads if u.kind == "document"]

    @property
    def photos(self) -> list[SentFile]:
        """The photos the bot sent with sendPhoto (``content``: the bytes uploaded or sent again by file_id)."""
        with self._world.cond:
            return [u for u in self._world.uploads if u.kind == "photo"]

    @property
    def downloads(self) -> list[Download]:
        """Every ``GET /file/bot<token>/<file_path>``, answered or refused, in order."""
        return self._world.downloads

    @property
    def downloads_waiting(self) -> int:
        """File downloads held right now (see ``hold_downloads``)."""
        with self._world.cond:
            return self._world.downloads_waiting

    def hold_downloads(self, held: bool = True) -> None:
        """Hold every file download from now on (the request read, no byte answered) until released with
        ``hold_downloads(False)``: a test acts while a download is under way, waiting on
        ``downloads_waiting`` rather than a clock."""
        with self._world.cond:
            self._world.downloads_held = held
            self._world.cond.notify_all()

    @property
    def chat_actions(self) -> list[tuple[int, int | None, str]]:
        """(chat id, thread id, action) of each sendChatAction."""
        return self._world.chat_actions

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The command menu set last, in any scope; emptied when the default scope's is deleted."""
        return self._world.commands

    @property
    def strict_ampersand(self) -> bool:
        return self._world.strict_ampersand

    @strict_ampersand.setter
    def strict_ampersand(self, value: bool) -> None:
        self._world.strict_ampersand = value

    @property
    def privacy_mode(self) -> bool:
        return self._world.privacy_mode

    @privacy_mode.setter
    def privacy_mode(self, value: bool) -> None:
        self._world.privacy_mode = value

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> BotAPI:
        if self._server is not None:
            return self
        self._server = BotServer(Router(self._world, self._faults, self.token))
        self.base_url = f"http://127.0.0.1:{self._server.port}/bot"
        self.base_file_url = f"http://127.0.0.1:{self._server.port}{FILE_PREFIX}"
        self._server.serve_in_thread("bot-api-standin")
        self._deliverer = Deliverer(self._world)
        self._deliverer.start()
        return self

    def stop(self) -> None:
        with self._world.cond:
            self._world.stopping = True
            self._world.cond.notify_all()  # release long polls
        self._world.stop_event.set()  # release stalls
        if self._deliverer is not None:
            self._deliverer.join()
            self._deliverer = None
        server, self._server = self._server, None
        if server is None:
            return
        server.close()

    def __enter__(self) -> BotAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- world -------------------------------------------------------------------------------

    def add_user(self, user_id: int, first_name: str = "User", username: str | None = None) -> User:
        return scene.add_user(self._world, user_id, first_name, username)

    def add_private_chat(self, user: User) -> Chat:
        return scene.add_private_chat(self._world, user)

    def add_group(self, chat_id: int, title: str, supergroup: bool = False, forum: bool = False) -> Chat:
        """A group the bot is in.  Forums are always supergroups: ``forum`` implies ``supergroup``.

        Message 1 is the group's creation service message (made before the bot joined, so not
        delivered); that is also why a forum's General topic is thread 1 and real topics are >1.
        """
        return scene.add_group(self._world, chat_id, title, supergroup, forum)

    def promote(self, chat_id: int, user_id: int, anonymous: bool = False, title: str | None = None) -> None:
        """``user_id`` becomes an administrator of the group (``anonymous``: they may write as the group).

        The group's creator (``add_group``'s "Group Admin", id 999000001) is its owner from the start;
        getChatAdministrators and getChatMember answer from these, as Telegram does."""
        scene.promote(self._world, chat_id, user_id, anonymous, title)

    def demote(self, chat_id: int, user_id: int) -> None:
        scene.demote(self._world, chat_id, user_id)

    def create_topic(self, chat_id: int, name: str, creator_id: int | None = None) -> int:
        """Creates a forum topic; its thread id is the id of its creation service message."""
        return scene.create_topic(self._world, chat_id, name, creator_id)

    def block(self, chat_id: int) -> None:
        """The user blocked the bot (or, for a group, the bot was kicked)."""
        scene.block(self._world, chat_id)

    def unblock(self, chat_id: int) -> None:
        scene.unblock(self._world, chat_id)

    def delete_chat(self, chat_id: int) -> None:
        scene.delete_chat(self._world, chat_id)

    def migrate_to_supergroup(self, old_chat_id: int, new_chat_id: int) -> None:
        scene.migrate_to_supergroup(self._world, old_chat_id, new_chat_id)

    # -- driving vigil -----------------------------------------------------------------------

    def press_button(self, chat_id: int, user_id: int, message_id: int, data: str) -> CallbackQuery:
        """A user presses the inline button with ``callback_data == data`` on a bot message."""
        return scene.press_button(self._world, chat_id, user_id, message_id, data)

    def enqueue_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Escape hatch: queue any update (``kind`` like "edited_message"); returns its id."""
        with self._world.cond:
            return self._world.enqueue(kind, payload)

    # -- observing ---------------------------------------------------------------------------

    def bot_messages(self, chat_id: int, thread_id: int | AnyThread | None = ANY) -> list[SentMessage]:
        """Snapshots of the bot's visible text messages in a chat (None = outside any topic)."""
        with self._world.cond:
            return [
                copy.deepcopy(s)
                for (cid, _), s in sorted(self._world.sent.items())
                if cid == chat_id and not s.deleted and (thread_id is ANY or s.thread_id == thread_id)
            ]

    def drafts(self, chat_id: int | None = None, draft_id: int | None = None) -> list[Draft]:
        """The drafts the bot streamed (sendMessageDraft), in arrival order, optionally of one chat/draft."""
        with self._world.cond:
            return [
                copy.copy(d)
                for d in self._world.drafts
                if (chat_id is None or d.chat_id == chat_id) and (draft_id is None or d.draft_id == draft_id)
            ]

    def wait_for_draft(self, chat_id: int, needle: str = "", timeout: float = 10.0) -> Draft:
        """The first draft in ``chat_id`` whose text contains ``needle`` ("" matches any, even "Thinking…")."""

        def found() -> Draft | None:
            return next((d for d in self.drafts(chat_id) if needle in d.text), None)

        return self.wait_for(found, timeout, f"a draft containing {needle!r} in chat {chat_id}")

    def history(self, chat_id: int) -> list[Message]:
        """Every message in a chat (users', bot's, service), deleted ones included, in order."""
        with self._world.cond:
            return [copy.deepcopy(m) for (cid, _), m in sorted(self._world.messages.items()) if cid == chat_id]

    def callback_query(self, query_id: str) -> CallbackQuery:
        with self._world.cond:
            return copy.copy(self._world.queries[query_id])

    def failed_calls(self, method: str | None = None) -> list[ApiCall]:
        with self._world.cond:
            return [c for c in self._world.calls if not c.ok and (method is None or c.method == method)]

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._world.cond:
            return len(self._world.updates)

    @property
    def polls_waiting(self) -> int:
        """getUpdates calls currently blocked in a long poll."""
        with self._world.cond:
            return self._world.polls_waiting

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "") -> T:
        """Re-evaluates ``predicate`` on every state change until it is truthy; returns its value.

        Blocking: call it from a test thread, or through ``asyncio.to_thread`` when the bot runs
        on the same thread's event loop (or use ``wait_for_async``).
        """
        deadline = time.monotonic() + timeout
        with self._world.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {message or predicate!r}\n"
                        f"recent Bot API calls:\n{self._dump_calls()}"
                    )
                # A cap on the wait re-checks predicates that depend on state outside the stand-in.
                self._world.cond.wait(min(remaining, 0.25))

    async def wait_for_async(self, predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "") -> T:
        """``wait_for`` for code running on an event loop: waits in a worker thread."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, message)

    def wait_for_bot_text(
        self, chat_id: int, needle: str, thread_id: int | AnyThread | None = ANY, timeout: float = 10.0
    ) -> SentMessage:
        def found() -> SentMessage | None:
            return next((s for s in self.bot_messages(chat_id, thread_id) if needle in s.text), None)

        where = "" if thread_id is ANY else f" thread {thread_id}"
        return self.wait_for(found, timeout, f"a bot message containing {needle!r} in chat {chat_id}{where}")


    # -- webhook mode --------------------------------------------------------------------------

    @property
    def webhook(self) -> Webhook | None:
        """The webhook set now (setWebhook), or None: updates wait for getUpdates."""
        with self._world.cond:
            return copy.copy(self._world.webhook)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every POST of an update to the webhook and what came of it, in order."""
        with self._world.cond:
            return list(self._world.webhook_deliveries)

    def queued_updates(self) -> list[dict[str, Any]]:
        """The updates not yet confirmed (by a getUpdates offset, or a webhook's 2xx), as Telegram sends them."""
        with self._world.cond:
            return copy.deepcopy(self._world.updates)

    def pause_webhook(self, paused: bool = True) -> None:
        """Deliver nothing to the webhook until resumed (updates keep queueing)."""
        with self._world.cond:
            self._world.webhook_controls.paused = paused
            self._world.cond.notify_all()

    def lose_webhook_answers(self, times: int = 1, then_pause: bool = False) -> None:
        """Throw the next ``times`` webhook answers away, as if the connection broke just before each: Telegram
        delivers the update again. ``then_pause``: deliveries pause at that moment (see ``pause_webhook``)."""
        with self._world.cond:
            self._world.webhook_controls.lose_answers = times
            self._world.webhook_controls.pause_after_lost = then_pause

    # -- faults ------------------------------------------------------------------------------

    def flood(
        self, times: int = 1, retry_after: int = 1, method: str | None = None, chat_id: int | None = None
    ) -> None:
        """The next ``times`` matching calls answer 429 "Too Many Requests: retry after N"."""
        self._faults.add(Fault("flood", times, fault_method(method), chat_id, retry_after=retry_after))

    def fail(self, times: int = 1, status: int = 502, method: str | None = None, chat_id: int | None = None) -> None:
        """The next matching calls answer ``status``; 502/504 come as a proxy's HTML page."""
        self._faults.add(Fault("fail", times, fault_method(method), chat_id, status=status))

    def stall(self, seconds: float, times: int = 1, method: str | None = None, chat_id: int | None = None) -> None:
        """The next matching calls take effect but their answer is held back ``seconds``."""
        self._faults.add(Fault("stall", times, fault_method(method), chat_id, seconds=seconds))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _dump_calls(self, last: int = 15) -> str:
        shown = ("chat_id", "message_id", "message_thread_id", "text", "caption", "action", "offset")
        lines = []
        for c in self._world.calls[-last:]:
            params = {}
            for k in shown:
                if k in c.params:
                    v = c.params[k]
                    params[k] = v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v
            outcome = "ok" if c.ok else f"{c.error_code} {c.description}"
            gone = " (client gone)" if c.client_gone else ""
            lines.append(f"  +{c.time - self._t0:8.3f}s {c.method} {params} -> {outcome}{gone}")
        return "\n".join(lines) or "  (none)"
