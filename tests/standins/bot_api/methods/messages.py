"""The methods that send, edit and delete the bot's messages, and the small answers around them
(chat actions, callback query answers).

Each keeps the visible state (`World.messages`) and the bot's own view for tests (`World.sent`) in step.
editMessageText without ``reply_markup`` removes the keyboard, as Telegram does, so the keyboard is
part of the "message is not modified" comparison.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from typing import Any, Final

from tests.standins.bot_api.model import CHAT_ACTIONS, MAX_TEXT_LENGTH, Chat, Message, SentMessage
from tests.standins.bot_api.params import (
    chat_param,
    format_text,
    markup_param,
    message_id_param,
    reply_param,
    thread_param,
)
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import utf16_len
from tests.standins.bot_api.wire import ApiError, Request, as_bool, bad

_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD: Final = "Bad Request: query is too old and response timeout expired or query ID is invalid"


def text_param(world: World, req: Request) -> tuple[str, list[dict[str, Any]]]:
    raw = req.params.get("text")
    if raw is None or raw == "":
        raise bad("message text is empty")
    text, entities = format_text(world, raw, req.params.get("parse_mode"), req.params.get("entities"))
    if not text:
        raise bad("message text is empty")
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise bad("message is too long")
    return text, entities


def send_message(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    thread_id = thread_param(chat, req)
    text, entities = text_param(world, req)
    markup = markup_param(req)
    reply_to, thread_id = reply_param(world, chat, req, thread_id)
    msg = world.new_message(
        chat,
        world.bot_user,
        text=text,
        entities=entities,
        thread_id=thread_id,
        reply_to=reply_to,
        reply_markup=markup if markup and "inline_keyboard" in markup else None,
    )
    raw = req.params["text"]
    world.sent[(chat.id, msg.message_id)] = SentMessage(
        chat_id=chat.id,
        message_id=msg.message_id,
        thread_id=thread_id,
        text=text,
        raw=raw if isinstance(raw, str) else json.dumps(raw),
        parse_mode=req.params.get("parse_mode") or None,
        entities=[(e["type"], e["offset"], e["length"]) for e in entities],
        reply_markup=copy.deepcopy(markup),
        date=msg.date,
        reply_to_message_id=reply_to,
    )
    return world.message_json(msg)


def editable(world: World, req: Request) -> tuple[Chat, Message]:
    if req.params.get("inline_message_id"):
        raise bad("MESSAGE_ID_INVALID")  # inline messages are not modelled
    chat = chat_param(world, req)
    mid = message_id_param(req)
    msg = world.messages.get((chat.id, mid))
    if msg is None or msg.deleted:
        raise bad("message to edit not found")
    if msg.from_user is not world.bot_user:
        raise bad("message can't be edited")
    return chat, msg


def edit_message_text(world: World, req: Request) -> Any:
    chat, msg = editable(world, req)
    if msg.text is None:
        raise bad("there is no text in the message to edit")
    text, entities = text_param(world, req)
    markup = markup_param(req)
    inline = markup if markup and "inline_keyboard" in markup else None
    # Leaving reply_markup out removes the keyboard, so it is part of the comparison.
    if text == msg.text and entities == msg.entities and inline == msg.reply_markup:
        raise bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
    msg.text, msg.entities, msg.reply_markup = text, entities, inline
    msg.edit_date = int(time.time())
    sent = world.sent.get((chat.id, msg.message_id))
    if sent is not None:
        raw = req.params["text"]
        sent.text = text
        sent.raw = raw if isinstance(raw, str) else json.dumps(raw)
        sent.parse_mode = req.params.get("parse_mode") or None
        sent.entities = [(e["type"], e["offset"], e["length"]) for e in entities]
        sent.reply_markup = copy.deepcopy(inline)
        sent.edits += 1
    world.cond.notify_all()
    return world.message_json(msg)


def edit_message_reply_markup(world: World, req: Request) -> Any:
    chat, msg = editable(world, req)
    markup = markup_param(req)
    inline = markup if markup and "inline_keyboard" in markup else None
    if inline == msg.reply_markup:
        raise bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
    msg.reply_markup = inline
    msg.edit_date = int(time.time())
    sent = world.sent.get((chat.id, msg.message_id))
    if sent is not None:
        sent.reply_markup = copy.deepcopy(inline)
        sent.edits += 1
    world.cond.notify_all()
    return world.message_json(msg)


def delete_one(world: World, chat: Chat, mid: int) -> None:
    msg = world.messages.get((chat.id, mid))
    if msg is None or msg.deleted:
        raise bad("message to delete not found")
    if msg.from_user is not world.bot_user and chat.type != "private":
        raise bad("message can't be deleted for everyone")  # the bot is no admin here
    msg.deleted = True
    sent = world.sent.get((chat.id, mid))
    if sent is not None:
        sent.deleted = True
    world.cond.notify_all()


def delete_message(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    delete_one(world, chat, message_id_param(req))
    return True


def delete_messages(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    ids = req.params.get("message_ids")
    if isinstance(ids, str):
        try:
            ids = json.loads(ids)
        except ValueError:
            ids = None
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise bad("message identifiers are not specified")
    for mid in ids:
        # Telegram skips messages it can't delete.
        with contextlib.suppress(ApiError, ValueError, TypeError):
            delete_one(world, chat, int(mid))
    return True


def send_chat_action(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    thread_id = thread_param(chat, req)
    action = req.params.get("action")
    if action not in CHAT_ACTIONS:
        raise bad("wrong parameter action in request")
    world.chat_actions.append((chat.id, thread_id, str(action)))
    world.cond.notify_all()
    return True


def answer_callback_query(world: World, req: Request) -> Any:
    query = world.queries.get(str(req.params.get("callback_query_id") or ""))
    # A query is answered once: Telegram refuses a second answer as it refuses an unknown or expired query.
    if query is None or query.answered:
        raise bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
    text = req.params.get("text")
    if isinstance(text, str) and len(text) > 200:
        raise bad("MESSAGE_TOO_LONG")
    query.answered = True
    query.answer_text = text if isinstance(text, str) else None
    query.show_alert = as_bool(req.params.get("show_alert"))
    world.cond.notify_all()
    return True
