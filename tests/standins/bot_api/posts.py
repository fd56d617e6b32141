"""What users post, as Telegram delivers it: text, photos, albums, documents, voice and audio, video
notes; each possibly a reply (to the bot's message or anyone's, with the replied-to Message inside),
quoting part of what it replies to (a TextQuote), or forwarded (a MessageOrigin).

Each post becomes a message in the world and, when privacy mode lets it through, one ``message`` update
in the queue; an album is one update per item sharing a ``media_group_id``, the caption on the first only,
as clients send it. Entities Telegram detects (commands, mentions, hashtags) are marked in captions too.
Files a user sends are stored in the world, so getFile and downloads serve exactly these bytes.
What a client would never send (an empty caption-less message, a caption over 1024 characters, an
undecodable photo) is a ValueError: a mistake in the test, not a case for vigil. A user may edit what they
sent (``edit``): the bot gets an ``edited_message`` update.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tests.standins.bot_api.entities import find_auto_entities
from tests.standins.bot_api.media import audio_of, document_of, photo_sizes, video_note_of, voice_of
from tests.standins.bot_api.model import (
    GENERAL_TOPIC_ID,
    MAX_CAPTION_LENGTH,
    Chat,
    FileKind,
    ForwardOrigin,
    Message,
    Quote,
    StoredFile,
    User,
)
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import finalize_text, utf16_len

MAX_ALBUM_ITEMS = 10


class HasMessageId(Protocol):
    @property
    def message_id(self) -> int: ...


# A message to reply to: its id, or any record of it (a Message, the bot's SentMessage or SentFile).
ReplyTarget = int | HasMessageId


@dataclass(frozen=True)
class Context:
    """What a post points at: its topic, the message it replies to, the part it quotes, its origin."""

    thread_id: int | None = None
    reply_to: ReplyTarget | None = None
    quote: Quote | str | None = None
    forward_origin: ForwardOrigin | None = None
    as_group: bool = False  # an anonymous admin posts it: from GroupAnonymousBot, sender_chat the group


def add_file(world: World, data: bytes, kind: FileKind = "document", file_name: str | None = None,
             mime_type: str | None = None) -> StoredFile:
    with world.cond:
        return world.store_file(bytes(data), kind, file_name, mime_type)


def _sender(world: World, chat: Chat, user_id: int) -> User:
    if chat.migrated_to is not None:
        raise ValueError(f"chat {chat.id} was migrated to {chat.migrated_to}")
    user = world.users.get(user_id)
    if user is None or user.is_bot:
        raise ValueError(f"unknown user {user_id}")
    if chat.type == "private" and chat.id != user_id:
        raise ValueError("in a private chat only its user writes")
    if chat.type != "private":
        chat.members.add(user_id)
    return user


def _target(world: World, chat: Chat, reply_to: ReplyTarget | None) -> Message | None:
    if reply_to is None:
        return None
    mid = reply_to if isinstance(reply_to, int) else reply_to.message_id
    target = world.messages.get((chat.id, mid))
    if target is None or target.deleted:
        raise ValueError(f"no message {mid} in chat {chat.id}")
    return target


def _quote(target: Message | None, quote: Quote | str | None) -> dict[str, Any] | None:
    if quote is None:
        return None
    if target is None:
        raise ValueError("a quote needs reply_to: it quotes the message replied to")
    q = Quote(quote) if isinstance(quote, str) else quote
    source = target.text if target.text is not None else target.caption or ""
    units = source.encode("utf-16-le")
    wanted = q.text.encode("utf-16-le")
    if q.position is None:
        at = source.find(q.text)
        if not q.text or at < 0:
            raise ValueError(f"{q.text!r} is not in the replied message {source!r}")
        position = utf16_len(source[:at])
    else:
        position = q.position
        if not wanted or units[2 * position : 2 * position + len(wanted)] != wanted:
            raise ValueError(f"{q.text!r} is not at UTF-16 offset {position} of {source!r}")
    payload: dict[str, Any] = {"text": q.text, "position": position}
    if q.is_manual:
        payload["is_manual"] = True
    return payload


def _caption(caption: str | None) -> tuple[str | None, list[dict[str, Any]]]:
    if caption is None:
        return None, []
    clean, _ = finalize_text(caption, [])
    if utf16_len(clean) > MAX_CAPTION_LENGTH:
        raise ValueError("Telegram clients don't send captions over 1024 characters")
    return clean or None, find_auto_entities(clean)


def post(
    world: World,
    chat_id: int,
    user_id: int,
    context: Context,
    *,
    text: str | None = None,
    caption: str | None = None,
    media: dict[str, Any] | None = None,
    media_group_id: str | None = None,
) -> Message:
    """A user's message: in the world, and queued as an update if the bot may see it."""
    with world.cond:
        chat = world.existing_chat(chat_id)
        user = _sender(world, chat, user_id)
        admin = chat.admins.get(user_id)
        if context.as_group and (admin is None or not admin.is_anonymous):
            raise ValueError(f"user {user_id} is no anonymous admin of {chat_id}: only those write as the group")
        thread_id = context.thread_id
        if thread_id == GENERAL_TOPIC_ID and chat.is_forum:
            thread_id = None
        if thread_id is not None and (not chat.is_forum or thread_id not in chat.topics):
            raise ValueError(f"no topic {thread_id} in chat {chat_id}")
        target = _target(world, chat, context.reply_to)
        if target is not None and thread_id is None and chat.is_forum and target.is_topic_message:
            thread_id = target.thread_id
        quote = _quote(target, context.quote)
        entities: list[dict[str, Any]] = []
        if text is not None:
            text, _ = finalize_text(text, [])
            if not text:
                raise ValueError("Telegram clients don't send empty messages")
            entities = find_auto_entities(text)
        clean_caption, caption_entities = _caption(caption)
        msg = world.new_message(
            chat,
            world.anonymous if context.as_group else user,
            text=text,
            entities=entities,
            thread_id=thread_id,
            reply_to=target.message_id if target is not None else None,
        )
        msg.media = media or {}
        msg.caption, msg.caption_entities = clean_caption, caption_entities
        msg.media_group_id = media_group_id
        msg.quote = quote
        msg.forward_origin = context.forward_origin.payload if context.forward_origin else None
        if context.as_group:
            msg.sender_chat = chat.to_dict()
            msg.author_signature = admin.custom_title if admin is not None else None
        if world.delivered_to_bot(chat, msg):
            world.enqueue("message", world.message_json(msg))
        return msg


def send_photo(world: World, chat_id: int, user_id: int, photo: bytes | Sequence[bytes], caption: str | None,
               context: Context, media_group_id: str | None = None) -> Message:
    with world.cond:
        sizes = photo_sizes(world, photo)
        return post(world, chat_id, user_id, context, caption=caption, media={"photo": sizes},
                    media_group_id=media_group_id)


def send_album(world: World, chat_id: int, user_id: int, photos: Sequence[bytes | Sequence[bytes]],
               caption: str | None, context: Context) -> list[Message]:
    if not 2 <= len(photos) <= MAX_ALBUM_ITEMS:
        raise ValueError(f"an album holds 2..{MAX_ALBUM_ITEMS} items")
    with world.cond:
        group = str(next(world.media_group_ids))
        return [
            send_photo(world, chat_id, user_id, p, caption if i == 0 else None, context, media_group_id=group)
            for i, p in enumerate(photos)
        ]


def send_document(world: World, chat_id: int, user_id: int, data: bytes, file_name: str, mime_type: str,
                  caption: str | None, context: Context) -> Message:
    if not data:
        raise ValueError("Telegram clients don't send empty files")
    with world.cond:
        stored = world.store_file(bytes(data), "document", file_name, mime_type)
        return post(world, chat_id, user_id, context, caption=caption, media={"document": document_of(stored)})


def send_voice(world: World, chat_id: int, user_id: int, data: bytes, duration: int, mime_type: str,
               caption: str | None, context: Context) -> Message:
    with world.cond:
        stored = world.store_file(bytes(data), "voice", None, mime_type, extension=".oga")
        return post(world, chat_id, user_id, context, caption=caption, media={"voice": voice_of(stored, duration)})


def send_audio(world: World, chat_id: int, user_id: int, data: bytes, duration: int, file_name: str,
               mime_type: str, performer: str | None, title: str | None, caption: str | None,
               context: Context) -> Message:
    with world.cond:
        stored = world.store_file(bytes(data), "audio", file_name, mime_type)
        audio = audio_of(stored, duration, performer, title)
        return post(world, chat_id, user_id, context, caption=caption, media={"audio": audio})


def send_video_note(world: World, chat_id: int, user_id: int, data: bytes, duration: int, length: int,
                    context: Context) -> Message:
    with world.cond:
        stored = world.store_file(bytes(data), "video_note", None, "video/mp4", extension=".mp4")
        return post(world, chat_id, user_id, context, media={"video_note": video_note_of(stored, duration, length)})


def edit(world: World, chat_id: int, user_id: int, message_id: int, *, text: str | None = None,
         caption: str | None = None) -> Message:
    """A user edits a message they sent, as a client allows: a text message's text, a media message's caption.

    Telegram sends the bot an ``edited_message`` update holding the whole message as it now reads (with
    ``edit_date``), when privacy mode lets the edited message through. Only the author edits; a client sends
    nothing for an edit that changes nothing, and cannot turn text into a caption or empty a text message.
    """
    with world.cond:
        chat = world.existing_chat(chat_id)
        msg = world.messages.get((chat.id, message_id))
        if msg is None or msg.deleted:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        if msg.from_user is None or msg.from_user.id != user_id:
            raise ValueError("only its author edits a message")
        if (text is None) == (caption is None):
            raise ValueError("an edit changes the text or the caption")
        if text is not None:
            if msg.text is None:
                raise ValueError("a media message has a caption, not text")
            text, _ = finalize_text(text, [])
            if not text:
                raise ValueError("Telegram clients don't send empty messages")
            if text == msg.text:
                raise ValueError("clients send no edit that changes nothing")
            msg.text, msg.entities = text, find_auto_entities(text)
        else:
            if msg.text is not None:
                raise ValueError("a text message has no caption")
            clean_caption, entities = _caption(caption)
            if clean_caption == msg.caption:
                raise ValueError("clients send no edit that changes nothing")
            msg.caption, msg.caption_entities = clean_caption, entities
        msg.edit_date = int(time.time())
        if world.delivered_to_bot(chat, msg):
            world.enqueue("edited_message", world.message_json(msg))
        return msg
