"""Files back to the chat (Claude's `send_file`): one upload, and one sentence for whatever went wrong.

A file goes as a document (the exact bytes, under its name) or, when asked, as a photo (shown
inline, recompressed by Telegram). Its caption is the model's Markdown rendered like a reply when
it fits Telegram's 1024 characters, and the plain source otherwise (which then must fit itself).
An upload is never repeated blindly: the same 50 MB again after a 413 would only be refused again,
and a timeout after the bytes left may mean it arrived. Every refusal becomes one sentence the
model can act on; the session learns of a chat gone for good as with any other delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telegram import InputFile
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from vigil.adapters.telegram.render import split_for_telegram, utf16_len
from vigil.adapters.telegram.send.errors import AmbiguousTimeout, Undeliverable
from vigil.logs import get_logger
from vigil.ports import FileDelivery, OutgoingFile
from vigil.records.schema import Target

if TYPE_CHECKING:
    from vigil.adapters.telegram.send.lane import OutboxLane

CAPTION_LIMIT = 1024  # Telegram's limit on a caption, after entities parsing
UPLOAD_BYTES_PER_S = 256 * 1024  # the slowest upload we wait for before calling it timed out
_log = get_logger(__name__)


class TooLarge(Exception):
    """Telegram (413) or its Bot API refused the upload for its size; sending it again cannot help."""


def caption_parts(caption: str) -> tuple[str, str | None] | None:
    """(text, parse mode) of a caption: rendered HTML when it fits, else the plain source; None if too long."""
    text = caption.strip()
    if not text:
        return "", None
    chunks = split_for_telegram(text, CAPTION_LIMIT)
    if len(chunks) == 1:
        return chunks[0].html, ParseMode.HTML
    if utf16_len(text) <= CAPTION_LIMIT:
        return text, None
    return None


def _too_large(exc: NetworkError) -> bool:
    reason = str(exc).lower()
    return "413" in reason or "too large" in reason or "too big" in reason


def _sentence(exc: Exception, file: OutgoingFile) -> str:
    """One sentence for the model on why the file did not arrive."""
    kind = "photo" if file.as_photo else "file"
    if isinstance(exc, TooLarge):
        return (f"not sent: Telegram refused the {kind} as too large ({len(file.content):,} bytes); "
                f"send a smaller or compressed one")
    if isinstance(exc, AmbiguousTimeout):
        return ("not confirmed: the upload timed out after it was sent; the file may have arrived, "
                "so it was not sent again")
    if isinstance(exc, Undeliverable):
        return f"not sent: this chat cannot receive messages from the bot ({exc})"
    if isinstance(exc, BadRequest):
        return f"not sent: Telegram refused the {kind} ({exc})"
    if isinstance(exc, RetryAfter):
        return "not sent: Telegram's flood control held it back for too long; try again later"
    return f"not sent: Telegram could not be reached ({exc})"


async def upload(outbox: OutboxLane, key: str, target: Target, file: OutgoingFile) -> FileDelivery:
    """Send `file` in order with the chat's other deliveries; the outcome, never an exception."""
    parts = caption_parts(file.caption)
    if parts is None:
        return FileDelivery(delivered=False, detail=f"not sent: the caption is longer than Telegram's "
                                                    f"{CAPTION_LIMIT} characters; shorten it")
    caption, mode = parts
    # PTB's write timeout (20 s) is too short for 50 MB on a slow uplink; a lost upload costs the whole file.
    write_timeout = max(20.0, len(file.content) / UPLOAD_BYTES_PER_S)

    async def send(chat: int, caption: str = caption, mode: str | None = mode) -> Any:
        document = InputFile(file.content, filename=file.filename)
        try:
            if file.as_photo:
                return await outbox.bot.send_photo(chat, photo=document, caption=caption or None, parse_mode=mode,
                                                   message_thread_id=target.thread_id, write_timeout=write_timeout)
            return await outbox.bot.send_document(chat, document=document, caption=caption or None,
                                                  parse_mode=mode, message_thread_id=target.thread_id,
                                                  write_timeout=write_timeout, disable_content_type_detection=True)
        except TimedOut:
            raise
        except NetworkError as exc:
            if not isinstance(exc, BadRequest) and _too_large(exc):
                raise TooLarge(str(exc)) from exc
            raise

    async with outbox.lock(target):
        try:
            try:
                await outbox.call(key, target, send)
            except BadRequest as exc:
                if mode is None or "parse entities" not in str(exc).lower():
                    raise
                # The rendered caption was refused: its plain source then (if that fits too).
                plain = file.caption.strip()
                if utf16_len(plain) > CAPTION_LIMIT:
                    raise
                await outbox.call(key, target, lambda chat: send(chat, plain, None))
        except (TooLarge, Undeliverable, TelegramError) as exc:
            _log.info("outbox.file_refused", error=str(exc), size=len(file.content), photo=file.as_photo)
            return FileDelivery(delivered=False, detail=_sentence(exc, file))
        except Exception as exc:  # a bug must cost one tool call, not the turn
            _log.error("outbox.file_failed", error=repr(exc))
            return FileDelivery(delivered=False, detail=f"not sent: {exc!r}")
    how = "as a photo" if file.as_photo else "as a document"
    return FileDelivery(delivered=True, detail=f"sent {how}: {file.filename} ({len(file.content):,} bytes)")
