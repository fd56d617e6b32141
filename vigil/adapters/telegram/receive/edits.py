"""Edited messages: Telegram's `edited_message` updates, handed to the session as edits.

An edit passes the same gates as a message (an outsider's is ignored, silently: they were told once
already; in a group only an edit addressed to the bot counts; the rate and budget apply), then goes
to the session like a message (`UserText` with `edited=True`: durable inbox first), which decides
what it means (actors/turns/edits.py): a replacement of a message not answered yet, or a correction of
one that was.

Not taken: edits of commands (a command has acted by the time it is edited; the edit would act
twice or not at all), edits of voice, audio and video notes (their transcript, not their caption,
is what the session holds), and edits of a message in an album (the session holds the album as one
message: its first part).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from telegram import Message, MessageEntity, Update

from vigil.actors.protocol import Sender, UserText
from vigil.adapters.telegram.keys import chat_title, chat_type
from vigil.adapters.telegram.receive.pointers import context_lines
from vigil.ports import Reply
from vigil.text import clean

if TYPE_CHECKING:
    from vigil.adapters.telegram.handlers import TelegramHandlers

_TRANSCRIBED = ("voice", "audio", "video_note")


def _is_command(message: Message) -> bool:
    entities = message.entities if message.text is not None else message.caption_entities
    return any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities or ())


async def take_edit(handlers: TelegramHandlers, update: Update) -> None:
    """One `edited_message` update: submitted as an edit, or dropped (see the module docstring)."""
    message = update.edited_message
    user = update.effective_user
    if message is None or user is None or user.is_bot:
        return
    raw = message.text if message.text is not None else message.caption
    if (raw is None or message.media_group_id or _is_command(message)
            or any(getattr(message, kind, None) for kind in _TRANSCRIBED)):
        return
    if not handlers.addressed(message, False):
        return
    if not handlers.runtime.settings.is_allowed(user.id):
        handlers.log.info("telegram.edit_refused", user_id=user.id, chat_id=message.chat.id)
        return
    key, target = handlers.key_and_target(message)
    spend = handlers.gate.spend(user.id)
    if not spend.allowed:
        if spend.reply:
            handlers.outbox.send(key, target, Reply(text=spend.reply))
        return
    said = handlers.without_mention(clean(raw))
    if not said.strip():
        return
    pointers = context_lines(message, handlers.bot_id)
    handlers.runtime.submit(UserText(
        key=key, target=target, sender=Sender(user_id=user.id, name=user.full_name, username=user.username or ""),
        text=f"{pointers}\n{said}" if pointers else said, at=time.time(), message_id=message.message_id,
        chat_title=chat_title(message.chat, user.full_name), chat_type=chat_type(message.chat), edited=True))
