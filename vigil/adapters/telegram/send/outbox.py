"""The Outbox port for Telegram: actor threads hand deliveries to PTB's event loop.

Each call returns at once (but `send_file`, which waits for Telegram's answer);
the work is scheduled on the loop with `run_coroutine_threadsafe`, and a lock
per chat (topic) keeps one chat's deliveries in the order the session made them.
Streaming (`stream.py`) drafts the reply in a private chat and edits one message
in place in a group, coalescing updates (only the latest text is sent); the
final reply is split at paragraph or line boundaries into messages of at most
4096 characters, sent as HTML and resent as plain text if Telegram still
refuses the HTML. Whatever the model writes is delivered, whole.

Failures: PTB's AIORateLimiter retries 429s (honouring retry_after); network
errors and timeouts are retried here with backoff; "not modified" is success;
a 403 (bot blocked) or a vanished chat is reported as permanent to the session;
a group upgraded to a supergroup is followed to its new id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

from vigil.adapters.telegram.render import TELEGRAM_TEXT_LIMIT, Chunk, split_for_telegram, utf16_len
from vigil.adapters.telegram.send.errors import AmbiguousTimeout as AmbiguousTimeout
from vigil.adapters.telegram.send.errors import Undeliverable as Undeliverable
from vigil.adapters.telegram.send.files import upload
from vigil.adapters.telegram.send.stream import TelegramStream
from vigil.cancel import CancelToken
from vigil.logs import get_logger
from vigil.ports import DeliveryFailure, FileDelivery, OutgoingFile, Reply
from vigil.records.schema import Target
from vigil.telemetry.metrics import RetryReason
from vigil.tools.approvals import parse_button

T = TypeVar("T")
NETWORK_ATTEMPTS = 6
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0)
# Drafts in private chats: the first goes out with the first words, then at most one per 0.6 s. The
# client animates between drafts, so that reads as continuous writing; and at the default of 16 model
# calls in flight, 16 chats drafting at once send ~27 a second, under Telegram's ~30 a second per bot,
# so drafts alone never push the bot into flood control (which would hold up the replies themselves).
DRAFT_INTERVAL_S = 0.6
GROUP_INTERVAL_S = 3.0  # Telegram allows about 20 messages (and edits) a minute in a group
GROUP_WINDOW_S = 60.0
# PTB's rate limiter counts every request about a group (typing too) against those 20, and holds the rest back:
# previews and typing leave room for final replies, commands and prompts, which are never skipped.
PREVIEW_BUDGET = 14  # previews only while the group's minute holds fewer requests than this
TYPING_BUDGET = 10  # the typing indicator only while it holds fewer than this, at most once per TYPING_EVERY_S
TYPING_EVERY_S = 4.5  # per group, all its topics together (Telegram shows it about 5 s)
_GROUPS_COUNTED = 1000
# (a private chat whose drafts were refused is edited about once a second: see stream.EDIT_INTERVAL_S)
_PERMANENT = ("chat not found", "message thread not found", "topic_deleted", "topic_closed", "have no rights",
              "not enough rights", "bot is not a member", "bot was kicked", "user is deactivated",
              "peer_id_invalid", "group chat was deactivated")


def _not_sent(exc: TimedOut) -> bool:
    """Whether the request certainly never left (no connection, or no free one in the pool)."""
    cause = exc.__cause__
    return type(cause).__name__ in ("ConnectTimeout", "PoolTimeout") or "Pool timeout" in str(exc)


def markup_for(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data) for b in row]
                                 for row in reply.buttons])


def _prompt_token(reply: Reply) -> str:
    """The approval prompt's token, if `reply` is one (its buttons carry it)."""
    for row in reply.buttons:
        for button in row:
            parsed = parse_button(button.data)
            if parsed is not None:
                return parsed[0]
    return ""


def plain_chunks(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Plain text cut at line boundaries (or hard, never inside a character) into messages that fit."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True) or [text]:
        while utf16_len(line) > limit:
            room = limit - utf16_len(current)
            if room <= 0:
                chunks.append(current)
                current, room = "", limit
            cut = 0
            used = 0
            while cut < len(line) and used + (2 if ord(line[cut]) > 0xFFFF else 1) <= room:
                used += 2 if ord(line[cut]) > 0xFFFF else 1
                cut += 1
            chunks.append(current + line[:cut])
            current, line = "", line[cut:]
        if utf16_len(current) + utf16_len(line) > limit:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    return [c.strip("\n") for c in chunks if c.strip()] or ["…"]


class TelegramOutbox:
    """Outbox port; attach() it to the running Application's loop and bot before use."""

    def __init__(self, on_failure: DeliveryFailure, on_moved: Callable[[str, int], object],
                 on_retry: Callable[[RetryReason], object] = lambda reason: None) -> None:
        self._on_failure = on_failure
        self._on_moved = on_moved
        self._on_retry = on_retry  # counted by the metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bot: Bot | None = None
        self._locks: dict[tuple[int, int | None], asyncio.Lock] = {}
        self._group_posts: dict[int, deque[float]] = {}  # a group's requests in the last minute (the loop's)
        self._group_typing: dict[int, float] = {}  # when the typing indicator last went to a group
        self._pending: dict[concurrent.futures.Future[Any], tuple[str, int] | None] = {}
        self._pending_lock = threading.Lock()
        self._log = get_logger(__name__)
        # Told each approval prompt sent, with how to close it (vigil.tools.approvals.PendingApprovals.posted).
        self.on_prompt: Callable[[str, Callable[[str], None]], None] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, bot: Bot) -> None:
        self._loop = loop
        self._bot = bot

    @property
    def bot(self) -> Bot:
        assert self._bot is not None, "the outbox is not attached to a bot yet"
        return self._bot

    # ------------------------------------------------------------------ the port (any thread)

    def update_interval(self, target: Target) -> float:
        return DRAFT_INTERVAL_S if target.chat_id > 0 else GROUP_INTERVAL_S

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        self.submit(self.deliver(key, target, reply, ref), None if ref is None else (key, ref))

    def stream(self, key: str, target: Target, ref: int | None = None) -> TelegramStream:
        # Drafts exist in private chats only (positive ids); groups edit one message in place.
        return TelegramStream(self, key, target, ref, drafts=target.chat_id > 0)

    def typing(self, target: Target) -> None:
        self.submit(self._typing(target))

    def send_file(self, key: str, target: Target, file: OutgoingFile, cancel: CancelToken) -> FileDelivery:
        loop = self._loop
        if loop is None or loop.is_closed():
            return FileDelivery(delivered=False, detail="not sent: vigil is not connected to Telegram right now")
        future = asyncio.run_coroutine_threadsafe(upload(self, key, target, file), loop)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        with cancel.on_cancel(done.set):
            done.wait()
        if not future.done():
            return FileDelivery(delivered=False, detail=("stopped before Telegram confirmed the upload; "
                                                         "the file may still arrive"))
        return future.result()

    def submit(self, coroutine: Coroutine[Any, Any, Any], ref: tuple[str, int] | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._log.error("outbox.not_running")
            coroutine.close()
            return
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        with self._pending_lock:
            self._pending[future] = ref
        future.add_done_callback(self._done)

    def unfinished(self) -> list[tuple[str, int]]:
        """(key, turn seq) of final replies still not delivered (asked at shutdown, after drain)."""
        with self._pending_lock:
            return [ref for future, ref in self._pending.items() if ref is not None and not future.done()]

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.pop(future, None)
        if not future.cancelled() and (error := future.exception()) is not None and not isinstance(
                error, Undeliverable):
            self._log.error("outbox.delivery_failed", error=repr(error))

    def report_failure(self, key: str, reason: str, ref: int | None) -> None:
        self._on_failure(key, False, reason, ref)

    async def drain(self, timeout: float) -> int:
        """Wait (on the loop) for deliveries in flight; returns how many did not finish."""
        with self._pending_lock:
            pending = [asyncio.wrap_future(f) for f in list(self._pending)]
        if not pending:
            return 0
        _, left = await asyncio.wait(pending, timeout=timeout)
        return len(left)

    # ------------------------------------------------------------------ delivery (on the loop)

    def lock(self, target: Target) -> asyncio.Lock:
        return self._locks.setdefault((target.chat_id, target.thread_id), asyncio.Lock())

    def _posted(self, chat_id: int) -> deque[float]:
        """A group's messages and edits sent in the last GROUP_WINDOW_S (all its topics and replies together)."""
        posts = self._group_posts.setdefault(chat_id, deque())
        cutoff = time.monotonic() - GROUP_WINDOW_S
        while posts and posts[0] <= cutoff:
            posts.popleft()
        return posts

    def _count_post(self, chat_id: int) -> None:
        self._posted(chat_id).append(time.monotonic())
        if len(self._group_posts) > _GROUPS_COUNTED:  # groups quiet for a minute are forgotten
            for quiet in [c for c in self._group_posts if not self._posted(c)]:
                del self._group_posts[quiet]
                self._group_typing.pop(quiet, None)

    def preview_room(self, chat_id: int) -> bool:
        """Whether a streamed preview fits the group's minute (PREVIEW_BUDGET); private chats have no such limit."""
        return chat_id > 0 or len(self._posted(chat_id)) < PREVIEW_BUDGET

    def _typing_room(self, chat_id: int) -> bool:
        if chat_id > 0:
            return True
        now = time.monotonic()
        if now - self._group_typing.get(chat_id, 0.0) < TYPING_EVERY_S or len(self._posted(chat_id)) >= TYPING_BUDGET:
            return False
        self._group_typing[chat_id] = now
        self._count_post(chat_id)
        return True

    async def deliver(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        async with self.lock(target):
            try:
                if reply.document is not None:
                    await self._document(key, target, reply)
                    if not reply.buttons:
                        return
                markup = markup_for(reply)
                if reply.markdown:
                    chunks = split_for_telegram(reply.text)
                else:
                    chunks = [Chunk(html=html.escape(p, quote=False), plain=p) for p in plain_chunks(reply.text)]
                sent = None
                for index, chunk in enumerate(chunks):
                    sent = await self.send_chunk(key, target, chunk, markup if index == len(chunks) - 1 else None)
                token = _prompt_token(reply)
                if token and sent is not None and self.on_prompt is not None:
                    message_id, text = sent.message_id, sent.text or ""
                    self.on_prompt(token, lambda line: self.submit(
                        self._close_prompt(key, target, message_id, f"{text}\n\n{line}")))
            except Undeliverable:
                return
            except Exception as exc:  # retries ran out: the session keeps the reply to send again
                self._on_failure(key, False, str(exc), ref)

    async def _document(self, key: str, target: Target, reply: Reply) -> None:
        """A reply's file. One with buttons is what they ask about (an approval prompt's whole command): they
        must not come without it, so if the file can't be sent its text goes in full across messages."""
        document = reply.document
        assert document is not None
        try:
            await self.call(key, target, lambda chat: self.bot.send_document(
                chat, document=InputFile(document.content, filename=document.filename),
                caption=document.caption or None, message_thread_id=target.thread_id))
        except Undeliverable:
            raise
        except AmbiguousTimeout:
            if not reply.buttons:
                raise  # sent, most likely: the prompt follows it, as if Telegram had said so
        except Exception as exc:
            if not reply.buttons:
                raise
            self._log.warning("outbox.document_refused", error=str(exc), sent_as="messages")
            for part in plain_chunks(document.content.decode(errors="replace")):
                await self.send_chunk(key, target, Chunk(html="", plain=part), plain_only=True)

    async def _close_prompt(self, key: str, target: Target, message_id: int, text: str) -> None:
        """An approval prompt closed without a press: its buttons go, and it says why (vigil/tools/approvals.py)."""
        async with self.lock(target):
            try:
                await self.edit_chunk(key, target, message_id, Chunk(html=html.escape(text, quote=False), plain=text),
                                      None, plain_only=True)
            except Exception as exc:  # a late press still says what became of it
                self._log.warning("outbox.prompt_not_closed", error=str(exc))

    async def send_chunk(self, key: str, target: Target, chunk: Chunk,
                         markup: InlineKeyboardMarkup | None = None, plain_only: bool = False) -> Message | None:
        """One message as HTML, or as plain text if Telegram can't parse the HTML (or if asked to)."""
        if plain_only:
            return await self.call(key, target, lambda chat: self.bot.send_message(
                chat, chunk.plain, message_thread_id=target.thread_id, reply_markup=markup,
                disable_web_page_preview=True))
        try:
            return await self.call(key, target, lambda chat: self.bot.send_message(
                chat, chunk.html, parse_mode=ParseMode.HTML, message_thread_id=target.thread_id,
                reply_markup=markup, disable_web_page_preview=True))
        except BadRequest as exc:
            if "parse entities" not in str(exc).lower():
                raise
            self._log.warning("outbox.html_refused", error=str(exc))
            return await self.call(key, target, lambda chat: self.bot.send_message(
                chat, chunk.plain, message_thread_id=target.thread_id, reply_markup=markup,
                disable_web_page_preview=True))

    async def edit_chunk(self, key: str, target: Target, message_id: int, chunk: Chunk,
                         markup: InlineKeyboardMarkup | None = None, plain_only: bool = False) -> bool:
        """Edit a message to `chunk`; False if the message is gone (the caller sends a new one)."""
        attempts: list[tuple[str, str | None]] = [(chunk.plain, None)]
        if not plain_only:
            attempts.insert(0, (chunk.html, ParseMode.HTML))
        for text, mode in attempts:

            async def edit(chat: int, text: str = text, mode: str | None = mode) -> Any:
                return await self.bot.edit_message_text(text, chat_id=chat, message_id=message_id, parse_mode=mode,
                                                        reply_markup=markup, disable_web_page_preview=True)

            try:
                await self.call(key, target, edit, idempotent=True)
                return True
            except BadRequest as exc:
                reason = str(exc).lower()
                if "not modified" in reason:
                    return True
                if "to edit not found" in reason or "can't be edited" in reason:
                    return False
                if "parse entities" in reason and mode is not None:
                    self._log.warning("outbox.html_refused", error=str(exc))
                    continue
                raise
        return True

    async def call(self, key: str, target: Target, request: Callable[[int], Awaitable[T]],
                   idempotent: bool = False) -> T:
        """One Bot API call with vigil's retry policy (429s are PTB's rate limiter's job).

        A call that timed out after it was sent may have taken effect: only an idempotent one
        (an edit) is retried then, or a new message would arrive twice.
        """
        chat_id = target.chat_id
        failures = 0
        while True:
            try:
                if chat_id < 0:
                    self._count_post(chat_id)
                return await request(chat_id)
            except ChatMigrated as exc:
                chat_id = int(exc.new_chat_id)
                self._on_moved(key, chat_id)
            except RetryAfter as exc:  # only when the rate limiter's own retries ran out
                failures += 1
                if failures >= NETWORK_ATTEMPTS:
                    raise
                delay = exc.retry_after
                self._on_retry("flood")
                await asyncio.sleep(delay if isinstance(delay, int | float) else delay.total_seconds())
            except Forbidden as exc:
                self._on_failure(key, True, str(exc), None)
                raise Undeliverable(str(exc)) from exc
            except BadRequest as exc:
                if any(marker in str(exc).lower() for marker in _PERMANENT):
                    self._on_failure(key, True, str(exc), None)
                    raise Undeliverable(str(exc)) from exc
                raise
            except TimedOut as exc:
                if not idempotent and not _not_sent(exc):
                    self._log.warning("outbox.timed_out_after_sending", error=str(exc))
                    raise AmbiguousTimeout(str(exc)) from exc
                failures += 1
                if failures >= NETWORK_ATTEMPTS:
                    raise
                self._log.info("outbox.retrying", error=str(exc), attempt=failures)
                self._on_retry("timeout")
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])
            except NetworkError as exc:
                failures += 1
                if failures >= NETWORK_ATTEMPTS:
                    raise
                self._log.info("outbox.retrying", error=str(exc), attempt=failures)
                self._on_retry("network")
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])

    async def _typing(self, target: Target) -> None:
        if not self._typing_room(target.chat_id):
            return  # the group's minute is for messages (a preview shows the reply is coming anyway)
        try:
            await self.bot.send_chat_action(target.chat_id, ChatAction.TYPING, message_thread_id=target.thread_id)
        except Exception as exc:  # a missed typing indicator is not worth a retry
            self._log.debug("outbox.typing_failed", error=repr(exc))
