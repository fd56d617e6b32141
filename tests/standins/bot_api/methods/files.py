"""sendDocument: a file the bot uploads (or sends again by file_id), with its caption.

Uploaded files are kept by file_id, so a document sent again by reference is the same content.
"""

from __future__ import annotations

from typing import Any

from tests.standins.bot_api.model import MAX_CAPTION_LENGTH, MAX_UPLOAD_BYTES, SentDocument
from tests.standins.bot_api.params import chat_param, format_text, markup_param, reply_param, thread_param
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import utf16_len
from tests.standins.bot_api.wire import ApiError, Request, Upload, bad


def send_document(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    thread_id = thread_param(chat, req)
    upload = req.files.get("document")
    if upload is None:
        ref = req.params.get("document")
        if ref in (None, ""):
            raise bad("there is no document in the request")
        known = world.files.get(str(ref))
        if known is None:
            raise bad("wrong file identifier/HTTP URL specified")
        upload = Upload(known["file_name"], known["_content"], known["mime_type"])
    if not upload.content:
        raise bad("file must be non-empty")
    if len(upload.content) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    caption_raw = req.params.get("caption")
    caption: str = ""
    caption_entities: list[dict[str, Any]] = []
    if caption_raw not in (None, ""):
        caption, caption_entities = format_text(world,
            caption_raw, req.params.get("parse_mode"), req.params.get("caption_entities")
        )
        if utf16_len(caption) > MAX_CAPTION_LENGTH:
            raise bad("message caption is too long")
    markup = markup_param(req)
    reply_to, thread_id = reply_param(world, chat, req, thread_id)
    number = next(world.file_ids)
    file_id = f"BQACAgIAAxkBAAI{number:08d}standin"
    document = {
        "file_id": file_id,
        "file_unique_id": f"AgAD{number:08d}",
        "file_name": upload.filename,
        "mime_type": upload.content_type,
        "file_size": len(upload.content),
    }
    world.files[file_id] = {**document, "_content": upload.content}
    msg = world.new_message(
        chat,
        world.bot_user,
        thread_id=thread_id,
        reply_to=reply_to,
        reply_markup=markup if markup and "inline_keyboard" in markup else None,
    )
    msg.document = document
    msg.caption = caption or None
    msg.caption_entities = caption_entities
    world.documents.append(
        SentDocument(
            chat_id=chat.id,
            thread_id=thread_id,
            filename=upload.filename,
            content=upload.content,
            caption=caption or None,
            message_id=msg.message_id,
            mime_type=upload.content_type,
            raw_caption=caption_raw if isinstance(caption_raw, str) else None,
            parse_mode=req.params.get("parse_mode") or None,
        )
    )
    return world.message_json(msg)
