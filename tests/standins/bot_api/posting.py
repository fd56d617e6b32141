"""The users' posts on `BotAPI`'s face: text, photos, albums, documents, voice, audio and video notes, with
replies, quotes and forwards, and the files on the "Telegram servers" (``add_file``, ``file``).

A mixin so the face stays one class tests call (``api.send_photo(...)``) while this part of it, which
only forwards to `posts`, lives in its own module.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from tests.standins.bot_api import posts
from tests.standins.bot_api.model import FileKind, ForwardOrigin, Message, Quote, StoredFile
from tests.standins.bot_api.posts import Context, ReplyTarget
from tests.standins.bot_api.state import World


class Posting:
    """What users post, for `BotAPI`; each call queues the update(s) the bot gets and returns the message."""

    _world: World

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        *,
        reply_to: ReplyTarget | None = None,
        quote: Quote | str | None = None,
        forward_origin: ForwardOrigin | None = None,
        as_group: bool = False,
    ) -> Message:
        """A user writes ``text``; enqueues the message update and returns the message.

        ``reply_to`` (or ``reply_to_message_id``): the message replied to, by id or record (a `Message`, the
        bot's `SentMessage` or `SentFile`); the update carries it whole in ``reply_to_message``. ``quote``:
        the part of it quoted (a `Quote`, or its text, found in the replied message). ``forward_origin``:
        the message is a forward (`ForwardOrigin.user(...)`, ``.hidden_user(...)``, ``.channel(...)``).
        ``as_group``: the user is an anonymous admin (``promote(..., anonymous=True)``) and writes as the group:
        the message comes from GroupAnonymousBot with the group as ``sender_chat``, as Telegram sends it."""
        context = Context(thread_id, reply_to if reply_to is not None else reply_to_message_id, quote, forward_origin,
                          as_group)
        return posts.post(self._world, chat_id, user_id, context, text=text)

    def send_photo(
        self,
        chat_id: int,
        user_id: int,
        photo: bytes | Sequence[bytes],
        caption: str | None = None,
        *,
        media_group_id: str | None = None,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
        quote: Quote | str | None = None,
        forward_origin: ForwardOrigin | None = None,
    ) -> Message:
        """A user sends a photo. ``photo`` as bytes (PNG, JPEG, GIF, WebP; `tests.standins.images` makes
        them) becomes the largest of several PhotoSizes, the smaller ones JPEG thumbnails; a sequence of
        bytes gives the sizes themselves, smallest first. Each size is its own file (getFile, download).
        The caption gets the entities Telegram detects (mentions, commands)."""
        context = Context(thread_id, reply_to, quote, forward_origin)
        return posts.send_photo(self._world, chat_id, user_id, photo, caption, context, media_group_id)

    def send_album(
        self,
        chat_id: int,
        user_id: int,
        photos: Sequence[bytes | Sequence[bytes]],
        caption: str | None = None,
        *,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
    ) -> list[Message]:
        """A user sends 2..10 photos at once: one message update each, sharing a ``media_group_id``, the
        caption on the first only (as clients send albums)."""
        return posts.send_album(self._world, chat_id, user_id, photos, caption, Context(thread_id, reply_to))

    def send_document(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        file_name: str,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
        *,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
        quote: Quote | str | None = None,
        forward_origin: ForwardOrigin | None = None,
    ) -> Message:
        """A user sends a file. ``file_name`` is sent as given (a hostile one too: "../../x" is a test)."""
        context = Context(thread_id, reply_to, quote, forward_origin)
        return posts.send_document(self._world, chat_id, user_id, data, file_name, mime_type, caption, context)

    def send_voice(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        duration: int = 3,
        mime_type: str = "audio/ogg",
        caption: str | None = None,
        *,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
    ) -> Message:
        """A user records a voice note (OGG/Opus as clients record it; any bytes will do for the stand-in)."""
        context = Context(thread_id, reply_to)
        return posts.send_voice(self._world, chat_id, user_id, data, duration, mime_type, caption, context)

    def send_audio(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        duration: int = 3,
        file_name: str = "audio.mp3",
        mime_type: str = "audio/mpeg",
        *,
        performer: str | None = None,
        title: str | None = None,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
    ) -> Message:
        """A user sends a music file (an Audio, not a voice note)."""
        context = Context(thread_id, reply_to)
        return posts.send_audio(self._world, chat_id, user_id, data, duration, file_name, mime_type,
                                performer, title, caption, context)

    def send_video_note(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        duration: int = 3,
        length: int = 240,
        *,
        thread_id: int | None = None,
        reply_to: ReplyTarget | None = None,
    ) -> Message:
        """A user records a round video note (MP4; no caption, as Telegram has none for them)."""
        context = Context(thread_id, reply_to)
        return posts.send_video_note(self._world, chat_id, user_id, data, duration, length, context)

    def edit_message(self, chat_id: int, user_id: int, message_id: int, *, text: str | None = None,
                     caption: str | None = None) -> Message:
        """The user edits their message ``message_id``: its text (a text message) or its caption (a photo, a
        file); the bot gets an ``edited_message`` update with the message as it now reads and ``edit_date``."""
        return posts.edit(self._world, chat_id, user_id, message_id, text=text, caption=caption)

    def add_file(
        self, data: bytes, kind: FileKind = "document", file_name: str | None = None, mime_type: str | None = None
    ) -> tuple[str, str]:
        """Places a file on the "Telegram servers" without a message; returns (file_id, file_unique_id).

        getFile then answers its ``file_path`` (refusing it over 20 MB, "file is too big") and the bytes
        are served at ``base_file_url + token + "/" + file_path``."""
        stored = posts.add_file(self._world, data, kind, file_name, mime_type)
        return stored.file_id, stored.file_unique_id

    def file(self, file_id: str) -> StoredFile:
        """A stored file by file_id: what a user sent, what the bot uploaded, what a test placed."""
        with self._world.cond:
            return copy.copy(self._world.files[file_id])
