"""The files the bot sends and fetches: sendDocument, sendPhoto (multipart uploads, or a file_id sent
again) and getFile, with Telegram's limits and words.

Every file lands in the world's store (`World.store_file`), so what the bot uploaded can be fetched back,
and a file_id sent again is the same content. Each send is recorded as a `SentFile` with the exact bytes
that reached the chat. Limits, as Telegram answers them: a request body over 50 MB is 413 (the Bot API
server refuses it before reading it); a photo over 10 MB, with width + height over 10000 or a side ratio
over 20 is 400; getFile of a file over 20 MB is 400 "file is too big". The stand-in cannot fetch URLs,
so an http(s) URL is answered as Telegram answers one it could not download.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from tests.standins.bot_api.media import document_of, photo_sizes
from tests.standins.bot_api.model import (
    MAX_CAPTION_LENGTH,
    MAX_DOWNLOAD_BYTES,
    MAX_PHOTO_BYTES,
    MAX_PHOTO_DIMENSIONS,
    MAX_PHOTO_RATIO,
    MAX_UPLOAD_BYTES,
    Chat,
    SentFile,
    StoredFile,
)
from tests.standins.bot_api.params import chat_param, format_text, markup_param, reply_param, thread_param
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import utf16_len
from tests.standins.bot_api.wire import ApiError, Request, Upload, bad
from tests.standins.images import image_info

_BAD_REFERENCE: Final = "wrong file identifier/HTTP URL specified"


def _caption_param(world: World, req: Request) -> tuple[str, list[dict[str, Any]]]:
    raw = req.params.get("caption")
    if raw in (None, ""):
        return "", []
    caption, entities = format_text(world, raw, req.params.get("parse_mode"), req.params.get("caption_entities"))
    if utf16_len(caption) > MAX_CAPTION_LENGTH:
        raise bad("message caption is too long")
    return caption, entities


def _file_param(world: World, req: Request, name: str) -> Upload | StoredFile:
    """The uploaded part named ``name``, or the stored file its string value refers to."""
    upload = req.files.get(name)
    if upload is not None:
        if not upload.content:
            raise bad("file must be non-empty")
        return upload
    ref = req.params.get(name)
    if ref in (None, ""):
        raise bad(f"there is no {name} in the request")
    ref = str(ref)
    if ref.startswith(("http://", "https://")):
        raise bad("failed to get HTTP URL content")  # loopback: no URL is reachable
    known = world.files.get(ref)
    if known is None:
        raise bad(_BAD_REFERENCE)
    return known


def _send(world: World, req: Request, chat: Chat, kind: Literal["document", "photo"],
          media: dict[str, Any], content: bytes, filename: str, mime_type: str, file_id: str) -> Any:
    thread_id = thread_param(chat, req)
    caption, caption_entities = _caption_param(world, req)
    markup = markup_param(req)
    reply_to, thread_id = reply_param(world, chat, req, thread_id)
    msg = world.new_message(
        chat,
        world.bot_user,
        thread_id=thread_id,
        reply_to=reply_to,
        reply_markup=markup if markup and "inline_keyboard" in markup else None,
    )
    msg.media = media
    msg.caption = caption or None
    msg.caption_entities = caption_entities
    raw_caption = req.params.get("caption")
    world.uploads.append(
        SentFile(
            chat_id=chat.id,
            thread_id=thread_id,
            filename=filename,
            content=content,
            caption=caption or None,
            message_id=msg.message_id,
            mime_type=mime_type,
            raw_caption=raw_caption if isinstance(raw_caption, str) else None,
            parse_mode=req.params.get("parse_mode") or None,
            kind=kind,
            file_id=file_id,
        )
    )
    world.cond.notify_all()
    return world.message_json(msg)


def send_document(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    source = _file_param(world, req, "document")
    if isinstance(source, StoredFile):
        if source.kind == "photo":
            raise bad("type of file mismatch")
        stored = source
    else:
        if len(source.content) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        thread_param(chat, req)  # refuse a bad topic before keeping anything
        stored = world.store_file(source.content, "document", source.filename, source.content_type)
    return _send(world, req, chat, "document", {"document": document_of(stored)}, stored.content,
                 stored.file_name or "", stored.mime_type or "application/octet-stream", stored.file_id)


def send_photo(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    source = _file_param(world, req, "photo")
    if isinstance(source, StoredFile):
        if source.kind != "photo":
            raise bad("type of file mismatch")
        # Sent again by file_id: the same sizes the photo has wherever it was seen.
        sizes = _sizes_of(world, source)
        return _send(world, req, chat, "photo", {"photo": sizes}, source.content, source.file_name or "",
                     source.mime_type or "image/jpeg", source.file_id)
    content = source.content
    if len(content) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    if len(content) > MAX_PHOTO_BYTES:
        raise bad(f"file of size {len(content)} bytes is too big for a photo; "
                  f"the maximum size is {MAX_PHOTO_BYTES} bytes")
    info = image_info(content)
    if info is None:
        raise bad("IMAGE_PROCESS_FAILED")
    width, height = info.width, info.height
    if width < 1 or height < 1 or width + height > MAX_PHOTO_DIMENSIONS or \
            max(width, height) > MAX_PHOTO_RATIO * min(width, height):
        raise bad("PHOTO_INVALID_DIMENSIONS")
    thread_param(chat, req)
    sizes = photo_sizes(world, content, cap=True)
    return _send(world, req, chat, "photo", {"photo": sizes}, content, source.filename, source.content_type,
                 sizes[-1]["file_id"])


def _sizes_of(world: World, stored: StoredFile) -> list[dict[str, Any]]:
    for msg in world.messages.values():
        sizes = msg.photo
        if sizes and any(s["file_id"] == stored.file_id for s in sizes):
            return [dict(s) for s in sizes]
    info = image_info(stored.content)
    width, height = (info.width, info.height) if info else (0, 0)
    return [{"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.file_size,
             "width": width, "height": height}]


def get_file(world: World, req: Request) -> Any:
    file_id = req.params.get("file_id")
    if file_id in (None, ""):
        raise bad("file_id is empty")  # PTB never sends this; a raw call might
    stored = world.files.get(str(file_id))
    if stored is None:
        raise bad("invalid file_id")
    if stored.file_size > MAX_DOWNLOAD_BYTES:
        raise bad("file is too big")
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.file_size,
        "file_path": stored.file_path,
    }
