"""The Outbox port for Telegram: actor threads hand deliveries to PTB's event loop.

Each call returns at once; the work is scheduled on the loop with
`run_coroutine_threadsafe`, and a lock per chat (topic) keeps one chat's
deliveries in the order the session made them. Streaming edits one message in
place, coalescing updates (only the latest text is sent), as plain text; the
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

from vigil.adapters.telegram.render import TELEGRAM_TEXT_LIMIT, Chunk, preview_text, split_for_telegram, utf16_len
from vigil.logs import get_logger
from vigil.ports import DeliveryFailure, Reply
from vigil.store.schema import Target

T = TypeVar("T")
NETWORK_ATTEMPTS = 6
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0)
PRIVATE_INTERVAL_S = 1.0
GROUP_INTERVAL_S = 3.0  # Telegram allows about 20 messages (and edits) a minute in a group
PROGRESS_MARK = "🔧"
_PERMANENT = ("chat not found", "message thread not found", "topic_deleted", "topic_closed", "have no rights",
              "not enough rights", "bot is not a member", "bot was kicked", "user is deactivated",
              "peer_id_invalid", "group chat was deactivated")


class Undeliverable(Exception):
    """Telegram refused for good (blocked, chat gone); the session was told."""


class AmbiguousTimeout(Undeliverable):
    """A new message timed out after it was sent: it probably arrived, so it is not sent again."""


def _not_sent(exc: TimedOut) -> bool:
    """Whether the request certainly never left (no connection, or no free one in the pool)."""
    cause = exc.__cause__
    return type(cause).__name__ in ("ConnectTimeout", "PoolTimeout") or "Pool timeout" in str(exc)


def markup_for(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data) for b in row]
                                 for row in reply.buttons])


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

    def __init__(self, on_failure: DeliveryFailure, on_moved: Callable[[str, int], object]) -> None:
        self._on_failure = on_failure
        self._on_moved = on_moved
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bot: Bot | None = None
        self._locks: dict[tuple[int, int | None], asyncio.Lock] = {}
        self._pending: dict[concurrent.futures.Future[Any], tuple[str, int] | None] = {}
        self._pending_lock = threading.Lock()
        self._log = get_logger(__name__)

    def attach(self, loop: asyncio.AbstractEventLoop, bot: Bot) -> None:
        self._loop = loop
        self._bot = bot

    @property
    def bot(self) -> Bot:
        assert self._bot is not None, "the outbox is not attached to a bot yet"
        return self._bot

    # ------------------------------------------------------------------ the port (any thread)

    def update_interval(self, target: Target) -> float:
        return PRIVATE_INTERVAL_S if target.chat_id > 0 else GROUP_INTERVAL_S

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        self.submit(self.deliver(key, target, reply, ref), None if ref is None else (key, ref))

    def stream(self, key: str, target: Target, ref: int | None = None) -> TelegramStream:
        return TelegramStream(self, key, target, ref)

    def typing(self, target: Target) -> None:
        self.submit(self._typing(target))

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

    async def deliver(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        async with self.lock(target):
            try:
                if reply.document is not None:
                    document = reply.document
                    await self.call(key, target, lambda chat: self.bot.send_document(
                        chat, document=InputFile(document.content, filename=document.filename),
                        caption=document.caption or None, message_thread_id=target.thread_id))
                    return
                markup = markup_for(reply)
                if reply.markdown:
                    chunks = split_for_telegram(reply.text)
                else:
                    chunks = [Chunk(html=html.escape(p, quote=False), plain=p) for p in plain_chunks(reply.text)]
                for index, chunk in enumerate(chunks):
                    await self.send_chunk(key, target, chunk, markup if index == len(chunks) - 1 else None)
            except Undeliverable:
                return
            except Exception as exc:  # retries ran out: the session keeps the reply to send again
                self._on_failure(key, False, str(exc), ref)

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
                return await request(chat_id)
            except ChatMigrated as exc:
                chat_id = int(exc.new_chat_id)
                self._on_moved(key, chat_id)
            except RetryAfter as exc:  # only when the rate limiter's own retries ran out
                failures += 1
                if failures >= NETWORK_ATTEMPTS:
                    raise
                delay = exc.retry_after
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
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])
            except NetworkError as exc:
                failures += 1
                if failures >= NETWORK_ATTEMPTS:
                    raise
                self._log.info("outbox.retrying", error=str(exc), attempt=failures)
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])

    async def _typing(self, target: Target) -> None:
        try:
            await self.bot.send_chat_action(target.chat_id, ChatAction.TYPING, message_thread_id=target.thread_id)
        except Exception as exc:  # a missed typing indicator is not worth a retry
            self._log.debug("outbox.typing_failed", error=repr(exc))


class TelegramStream:
    """One reply streaming into one message, edited in place; finished into its final chunks."""

    def __init__(self, outbox: TelegramOutbox, key: str, target: Target, ref: int | None = None) -> None:
        self._outbox = outbox
        self._key = key
        self._target = target
        self._ref = ref
        self._lock = threading.Lock()
        self._text = ""
        self._progress = ""
        self._scheduled = False
        self._message_id: int | None = None  # loop side only
        self._shown = ""

    def update(self, text: str) -> None:
        with self._lock:
            if text != self._text:
                self._progress = ""  # the model is writing again: the tool it ran is done
            self._text = text
            self._schedule()

    def progress(self, line: str) -> None:
        with self._lock:
            self._progress = line
            self._schedule()

    def finish(self, text: str, note: str = "") -> None:
        self._outbox.submit(self._finish(text, note), None if self._ref is None else (self._key, self._ref))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._outbox.submit(self._flush())

    async def _flush(self) -> None:
        async with self._outbox.lock(self._target):
            with self._lock:
                text, progress = self._text, self._progress
                self._scheduled = False
            footer = f"\n\n{PROGRESS_MARK} {progress}" if progress else ""
            preview = preview_text(text, TELEGRAM_TEXT_LIMIT - utf16_len(footer)) + footer
            if preview == self._shown:
                return
            # Previews go as plain text: half a reply is rarely balanced Markdown.
            chunk = Chunk(html="", plain=preview)
            try:
                if self._message_id is None or not await self._outbox.edit_chunk(
                        self._key, self._target, self._message_id, chunk, plain_only=True):
                    sent = await self._outbox.send_chunk(self._key, self._target, chunk, plain_only=True)
                    self._message_id = sent.message_id if sent is not None else None
                self._shown = preview
            except (Undeliverable, BadRequest, NetworkError, RetryAfter):
                return  # a lost preview is not worth more; the final reply tries again

    async def _finish(self, text: str, note: str) -> None:
        async with self._outbox.lock(self._target):
            chunks = split_for_telegram(text) if text.strip() else []
            if note:
                chunks = _with_note(chunks, note)
            try:
                for index, chunk in enumerate(chunks):
                    if index == 0 and self._message_id is not None:
                        if chunk.plain == self._shown and chunk.html == html.escape(chunk.plain, quote=False):
                            continue  # the preview already shows exactly this, unformatted
                        if await self._outbox.edit_chunk(self._key, self._target, self._message_id, chunk):
                            continue
                    await self._outbox.send_chunk(self._key, self._target, chunk)
            except Undeliverable:
                return
            except Exception as exc:  # retries ran out: the session keeps the reply to send again
                self._outbox.report_failure(self._key, str(exc), self._ref)


def _with_note(chunks: list[Chunk], note: str) -> list[Chunk]:
    """Append a note (e.g. "⏹ stopped") in italics to the last chunk, or as a message of its own."""
    note_html = f"<i>{html.escape(note, quote=False)}</i>"
    if chunks:
        last = chunks[-1]
        plain = f"{last.plain}\n\n{note}"
        if utf16_len(plain) <= TELEGRAM_TEXT_LIMIT:
            return [*chunks[:-1], Chunk(html=f"{last.html}\n\n{note_html}", plain=plain)]
    return [*chunks, Chunk(html=note_html, plain=note)]
