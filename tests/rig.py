"""The end-to-end rig: `vigil run` as a subprocess against the Bot API and Messages API stand-ins.

`make_rig` builds one (stand-ins started, settings in the environment, vigil not yet running) and
`close_rig` tears it down; `tests/conftest.py` turns them into the `shared`, `rig` and `fresh`
fixtures every `*_e2e.py` module uses. A `Rig` speaks for the people in the chats (`person`, `say`,
`ask`) and observes what the bot did (`replies`, `answer`, `text_calls`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.procs import VigilProcess, run_vigil, vigil_env
from tests.standins.bot_api import ANY, ApiCall, BotAPI, Chat, Message, SentMessage, User
from tests.standins.messages_api import MessagesAPI, RecordedRequest

BOT = "vigil_test_bot"
FIRST_USER = 1001
ALLOWED = range(FIRST_USER, FIRST_USER + 300)
TELEGRAM_LIMIT = 4096
ADMIN_ID = 9001  # in VIGIL_ADMIN_USERS, deliberately not in VIGIL_ALLOWED_USERS


def squash(text: str) -> str:
    """Text without any whitespace: for "equal modulo whitespace at the cuts"."""
    return "".join(text.split())


def chat_of(call: ApiCall) -> int | None:
    raw = call.params.get("chat_id")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class Rig:
    """The two stand-ins, a data dir, and (when started) a `vigil run` using them."""

    bot: BotAPI
    api: MessagesAPI
    env: dict[str, str]
    tmp: Path
    admin: User
    vigil: VigilProcess | None = None
    _users: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_USER))
    _groups: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_001))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> VigilProcess:
        vigil = VigilProcess(["run"], self.env)
        self.vigil = vigil
        vigil.err.wait_for(lambda t: '"service.ready"' in t, timeout=30, what="service.ready")
        return vigil

    def stop(self) -> float:
        """SIGTERMs vigil and checks it exited cleanly (code 0, no traceback); returns how long it took."""
        vigil = self.running()
        started = time.monotonic()
        code = vigil.terminate()
        elapsed = time.monotonic() - started
        stderr = vigil.err.wait_closed()
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        return elapsed

    def running(self) -> VigilProcess:
        assert self.vigil is not None
        return self.vigil

    def alive(self) -> bool:
        return self.vigil is not None and self.vigil.process.poll() is None

    # -- the world ------------------------------------------------------------------------------

    def person(self, name: str) -> User:
        """A new allowed user with a private chat with the bot."""
        user_id = next(self._users)
        assert user_id in ALLOWED, "raise ALLOWED: the rig ran out of allowed user ids"
        user = self.bot.add_user(user_id, name, name.lower())
        self.bot.add_private_chat(user)
        return user

    def group_id(self, supergroup: bool = False) -> int:
        """A chat id no chat has yet: -N for a basic group, -100N for a supergroup, as on Telegram."""
        number = next(self._groups)
        return -(1_000_000_000_000 + number) if supergroup else -number

    def group(self, title: str, supergroup: bool = False, forum: bool = False) -> Chat:
        return self.bot.add_group(self.group_id(supergroup or forum), title, supergroup=supergroup, forum=forum)

    def say(self, chat_id: int, user: User, text: str, thread: int | None = None,
            reply_to: int | None = None) -> Message:
        return self.bot.send_text(chat_id, user.id, text, thread_id=thread, reply_to_message_id=reply_to)

    # -- observing ------------------------------------------------------------------------------

    def replies(self, chat_id: int, after: Message, thread: int | object | None = ANY) -> list[SentMessage]:
        """The bot's messages in a chat (topic) sent after `after`."""
        return [m for m in self.bot.bot_messages(chat_id, thread)  # type: ignore[arg-type]
                if m.message_id > after.message_id]

    def answer(self, chat_id: int, after: Message, needle: str, thread: int | object | None = ANY,
               timeout: float = 10.0) -> SentMessage:
        """Waits for a bot message after `after` that contains `needle`."""
        def found() -> SentMessage | None:
            return next((m for m in self.replies(chat_id, after, thread) if needle in m.text), None)

        return self.bot.wait_for(found, timeout, f"a reply containing {needle!r} in chat {chat_id} after "
                                                 f"message {after.message_id}")

    def ask(self, chat_id: int, user: User, text: str, needle: str, thread: int | None = None,
            timeout: float = 10.0) -> SentMessage:
        """Says `text` and waits for the bot's message containing `needle`."""
        sent = self.say(chat_id, user, text, thread)
        return self.answer(chat_id, sent, needle, thread if thread is not None else ANY, timeout)

    def requests_with(self, words: str) -> list[RecordedRequest]:
        return [r for r in list(self.api.requests) if words in r.last_user_text()]

    def wait_request(self, words: str, timeout: float = 10.0) -> RecordedRequest:
        return self.bot.wait_for(lambda: next(iter(self.requests_with(words)), None), timeout,
                                 f"a model request with {words!r}")

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        return next(m for m in self.bot.bot_messages(chat_id) if m.message_id == message_id)

    def edited_to(self, chat_id: int, message_id: int, needle: str, timeout: float = 5.0) -> SentMessage:
        """Waits until the bot's message `message_id` shows `needle` (edited in place)."""
        def found() -> SentMessage | None:
            message = self.message(chat_id, message_id)
            return message if needle in message.text else None

        return self.bot.wait_for(found, timeout, f"message {message_id} in chat {chat_id} showing {needle!r}")

    def clean_up_idle(self, user: User) -> tuple[str, SentMessage]:
        """After more than 1 s of real idle time, `/sessions cleanup 1s` from `user`'s private chat, confirmed.

        Returns the confirmation prompt's text as it read before the button, and the final report.
        """
        time.sleep(1.2)  # real idle time: the session must be idle for longer than 1 s
        prompt = self.ask(user.id, user, "/sessions cleanup 1s", "🧹")
        listed = prompt.text
        self.bot.press_button(user.id, user.id, prompt.message_id, cleanup_button(prompt))
        return listed, self.edited_to(user.id, prompt.message_id, "Deleted")

    def text_calls(self, chat_id: int) -> list[ApiCall]:
        return [c for c in list(self.bot.calls)
                if c.method in ("sendMessage", "editMessageText") and chat_of(c) == chat_id]

    def exported(self, user: User) -> dict[str, Any]:
        """`/export` in the user's private chat: the JSON document it sends back, parsed."""
        before = len([d for d in self.bot.documents if d.chat_id == user.id])
        self.say(user.id, user, "/export")
        document = self.bot.wait_for(
            lambda: next(iter([d for d in self.bot.documents if d.chat_id == user.id][before:]), None), 10,
            "the exported document")
        result: dict[str, Any] = json.loads(document.content)
        return result

    def sessions_list(self) -> str:
        result = run_vigil(["sessions", "list"], self.env, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout


def cleanup_button(prompt: SentMessage) -> str:
    """The callback data of a cleanup prompt's "Delete them" button (it names the prompt's own list)."""
    buttons = [b for row in (prompt.reply_markup or {}).get("inline_keyboard", []) for b in row]
    return next(str(b["callback_data"]) for b in buttons if str(b["callback_data"]).startswith("sessions:cleanup-yes:"))


def make_rig(tmp: Path, **extra: str) -> Rig:
    bot = BotAPI(bot_username=BOT).start()
    api = MessagesAPI().start()
    settings = {
        "TELEGRAM_BOT_TOKEN": bot.token,
        "VIGIL_TELEGRAM_BASE_URL": bot.base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": api.base_url,
        "VIGIL_ALLOWED_USERS": ",".join(str(i) for i in ALLOWED),
        "VIGIL_ADMIN_USERS": str(ADMIN_ID),
        "VIGIL_MESSAGES_PER_MINUTE": "120",
        **extra,
    }
    admin = bot.add_user(ADMIN_ID, "Ada", "ada_admin")
    bot.add_private_chat(admin)
    return Rig(bot=bot, api=api, env=vigil_env(tmp, **settings), tmp=tmp, admin=admin)


@contextmanager
def running(rig: Rig) -> Iterator[Rig]:
    """`rig` started; after the block, checked (the Messages API refused nothing vigil built) and torn down."""
    try:
        rig.start()
        yield rig
        assert not rig.api.errors, rig.api.errors
    finally:
        close_rig(rig)


def close_rig(rig: Rig) -> None:
    try:
        if rig.alive():
            rig.stop()
    finally:
        if rig.vigil is not None:
            rig.vigil.__exit__()
        rig.bot.stop()
        rig.api.stop()


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def undelivered(rig: Rig, chat_id: int) -> list[ApiCall]:
    """Failed sendMessage/editMessageText calls in a chat that no later attempt made good."""
    calls = rig.text_calls(chat_id)
    bad = []
    for index, call in enumerate(calls):
        if call.ok or "message is not modified" in (call.description or ""):
            continue
        later = [c for c in calls[index + 1:] if c.method == call.method
                 and (call.method == "sendMessage" or c.params.get("message_id") == call.params.get("message_id"))]
        if not any(c.ok for c in later):
            bad.append(call)
    return bad
