"""One streamed reply on Telegram: drafted in a private chat, edited in place in a group.

Private chats (Bot API 9.5+): the growing reply is shown with `sendMessageDraft`, an animated
preview the client drops after about 30 s, under one non-zero draft id per message so updates
animate; the reply is then sent for good with `sendMessage` when it ends, and also whenever it
outgrows one message (its beginning is cut off at a settled place and sent, and a new draft
goes on with the rest). A draft leaves nothing in the chat, so it may show text that is not on
disk yet; what is sent for good is only ever taken from text the session made durable first
(`update(..., durable=True)`, asked for through `needs_checkpoint`).

Groups (no drafts there), and a private chat whose draft was refused (a 400, flood control):
one message is edited in place as the reply grows, plain text, only with durable text, at most
once per edit interval; the final reply replaces it. Nothing a draft does can lose the reply:
the final `sendMessage` goes out whatever became of the drafts.

In a group the first preview comes FIRST_WORDS_S after the first words (the session makes them
durable at once: actors/engine/display.py), not a whole interval later, so a reply done sooner is still
sent once, final; edits then keep to the group's interval. Telegram allows a group about 20 messages
and edits a minute, counted over every topic of it and every reply at once: previews use at most
PREVIEW_BUDGET of those (the outbox counts them, `preview_room`), leaving the rest to final replies,
commands and prompts; a preview that would exceed it is skipped, never the reply.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import threading
import time
from typing import TYPE_CHECKING

from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from vigil.actors.engine.display import FIRST_WORDS_S
from vigil.adapters.telegram.render import (
    TELEGRAM_TEXT_LIMIT,
    Chunk,
    preview_text,
    settled_cut,
    split_for_telegram,
    utf16_len,
)
from vigil.adapters.telegram.send.errors import Undeliverable
from vigil.adapters.telegram.send.thought import MARK as THOUGHT_MARK
from vigil.adapters.telegram.send.thought import with_thought
from vigil.logs import get_logger
from vigil.records.schema import Target

if TYPE_CHECKING:
    from vigil.adapters.telegram.send.lane import OutboxLane

PROGRESS_MARK = "🔧"
EDIT_INTERVAL_S = 1.0  # a private chat whose drafts were refused is edited at the usual pace
_log = get_logger(__name__)


def new_draft_id() -> int:
    """A non-zero draft id, fresh for each message a reply becomes (ids are the chat's, not ours)."""
    return secrets.randbelow(2**31 - 1) + 1


class TelegramStream:
    """ReplyStream: one reply, drafted (private chats) or edited in place, then finished into messages."""

    def __init__(self, outbox: OutboxLane, key: str, target: Target, ref: int | None = None,
                 drafts: bool = False) -> None:
        self._outbox = outbox
        self._key = key
        self._target = target
        self._ref = ref
        self._lock = threading.Lock()
        # Shared with the session's threads (under _lock):
        self._text = ""
        self._durable = ""  # the newest text the session said is on disk
        self._progress = ""
        self._scheduled = False
        self._drafts = drafts
        self._offset = 0  # how much of the reply's source was already sent for good (drafts only)
        self._sent_prefix = ""
        # The loop's own:
        self._draft_id = new_draft_id()
        self._message_id: int | None = None
        self._shown: str | None = None
        self._last_edit = 0.0
        self._finished = False
        self._first_at = 0.0  # when the first update came (a group's first preview waits FIRST_WORDS_S from it)

    # ------------------------------------------------------------------ the port (session threads)

    def update(self, text: str, durable: bool = True) -> None:
        with self._lock:
            if text != self._text:
                self._progress = ""  # the model is writing again: the tool it ran is done
            self._text = text
            if durable:
                self._durable = text
            self._schedule()

    def progress(self, line: str) -> None:
        with self._lock:
            self._progress = line
            self._schedule()

    def needs_checkpoint(self, text: str) -> bool:
        with self._lock:
            if not self._drafts:
                return True
            rest = self._rest(text)
        return bool(rest.strip()) and settled_cut(rest) > 0

    def finish(self, text: str, note: str = "", thinking: str = "") -> None:
        self._outbox.submit(self._finish(text, note, thinking),
                            None if self._ref is None else (self._key, self._ref))

    def _schedule(self) -> None:
        if not self._first_at:
            self._first_at = time.monotonic()
        if not self._scheduled:
            self._scheduled = True
            self._outbox.submit(self._flush())

    def _rest(self, text: str) -> str:
        """What of `text` is not sent for good yet (all of it if it does not start as what was sent)."""
        if self._offset and text.startswith(self._sent_prefix):
            return text[self._offset:]
        return text  # nothing sent yet, or (never seen) a rewritten beginning: better twice than lost

    # ------------------------------------------------------------------ on the loop

    async def _flush(self) -> None:
        if not self._drafts:
            # Edits keep to the edit pace; updates meanwhile coalesce into the one that follows. A group's
            # first preview waits a moment: a reply done by then is sent once, final, with no edit.
            if self._message_id is None and self._target.chat_id < 0:
                wait = self._first_at + FIRST_WORDS_S - time.monotonic()
            else:
                pace = EDIT_INTERVAL_S if self._target.chat_id > 0 else self._outbox.update_interval(self._target)
                wait = self._last_edit + pace - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        async with self._outbox.lock(self._target):
            with self._lock:
                text, durable, progress, drafts = self._text, self._durable, self._progress, self._drafts
                self._scheduled = False
            if self._finished:
                return  # the final reply went out; a late preview must not follow it
            if drafts:
                await self._draft(text, durable, progress)
            else:
                await self._edit(durable, progress)

    async def _draft(self, text: str, durable: str, progress: str) -> None:
        if durable and durable == text:
            await self._settle(durable)
        with self._lock:
            rest = self._rest(text)
        footer = _footer(progress)
        # Nothing written yet and no tool running: an empty draft, which Telegram shows as "Thinking…".
        body = preview_text(rest, TELEGRAM_TEXT_LIMIT - utf16_len(footer)) if rest.strip() else ""
        preview = (body + footer).strip()
        if preview == self._shown:
            return
        if not preview and self._shown is not None:
            return  # "Thinking…" only before a draft's first words, never in place of them
        try:
            await self._outbox.bot.send_message_draft(self._target.chat_id, self._draft_id, preview,
                                                      message_thread_id=self._target.thread_id)
            self._shown = preview
        except BadRequest as exc:  # a chat without drafts (a 400), a text it would not take
            self._give_up_drafts(exc)
        except NetworkError as exc:  # a timeout, a dropped connection: the next update tries again
            _log.debug("outbox.draft_lost", error=str(exc))
        except TelegramError as exc:  # flood control outlasting the rate limiter's retries, blocked, moved
            self._give_up_drafts(exc)

    def _give_up_drafts(self, exc: Exception) -> None:
        """The chat refused a draft: stream this reply by editing a message instead, as in groups."""
        _log.warning("outbox.draft_refused", error=str(exc))
        with self._lock:
            self._drafts = False
            if self._durable:
                self._schedule()

    async def _settle(self, durable: str) -> None:
        """Send for good the beginning of a durable reply that no longer fits one draft."""
        with self._lock:
            rest = self._rest(durable)
            base = self._offset if durable.startswith(self._sent_prefix) else 0
        cut = settled_cut(rest) if rest.strip() else 0
        if not cut:
            return
        for chunk in split_for_telegram(rest[:cut]):
            await self._outbox.send_chunk(self._key, self._target, chunk)
        with self._lock:
            self._offset = base + cut
            self._sent_prefix = durable[:self._offset]
        self._draft_id = new_draft_id()  # the rest is a new message: its draft starts afresh
        self._shown = None

    async def _edit(self, durable: str, progress: str) -> None:
        footer = _footer(progress)
        with self._lock:
            rest = self._rest(durable)
        if not rest.strip() and not footer:
            return
        preview = preview_text(rest, TELEGRAM_TEXT_LIMIT - utf16_len(footer)) + footer
        if preview == self._shown:
            return
        if not self._outbox.preview_room(self._target.chat_id):
            _log.debug("outbox.preview_skipped", chat_id=self._target.chat_id)  # the group's minute is spoken for
            return
        # Previews go as plain text: half a reply is rarely balanced Markdown.
        chunk = Chunk(html="", plain=preview)
        try:
            if self._message_id is None or not await self._outbox.edit_chunk(
                    self._key, self._target, self._message_id, chunk, plain_only=True):
                sent = await self._outbox.send_chunk(self._key, self._target, chunk, plain_only=True)
                self._message_id = sent.message_id if sent is not None else None
            self._shown = preview
            self._last_edit = time.monotonic()
        except (Undeliverable, BadRequest, NetworkError, RetryAfter) as exc:
            _log.debug("outbox.preview_lost", error=str(exc))  # a lost preview is not worth more

    async def _finish(self, text: str, note: str, thinking: str = "") -> None:
        async with self._outbox.lock(self._target):
            self._finished = True
            with self._lock:
                rest = self._rest(text)
            chunks = split_for_telegram(rest) if rest.strip() else []
            if note:
                chunks = _with_note(chunks, note)
            chunks = with_thought(chunks, thinking)  # `/think show`: the quote above the answer
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


def _footer(progress: str) -> str:
    """The progress line under a preview: a tool at work (🔧), or the model thinking (its own 💭)."""
    if not progress:
        return ""
    return f"\n\n{progress}" if progress.startswith(THOUGHT_MARK) else f"\n\n{PROGRESS_MARK} {progress}"


def _with_note(chunks: list[Chunk], note: str) -> list[Chunk]:
    """Append a note (e.g. "⏹ stopped") in italics to the last chunk, or as a message of its own."""
    note_html = f"<i>{html.escape(note, quote=False)}</i>"
    if chunks:
        last = chunks[-1]
        plain = f"{last.plain}\n\n{note}"
        if utf16_len(plain) <= TELEGRAM_TEXT_LIMIT:
            return [*chunks[:-1], Chunk(html=f"{last.html}\n\n{note_html}", plain=plain)]
    return [*chunks, Chunk(html=note_html, plain=note)]
