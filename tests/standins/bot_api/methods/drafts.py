"""sendMessageDraft (Bot API 9.5+): a reply streamed as an animated preview in a private chat.

A draft is no message: it has no message_id, leaves nothing in the chat's history and is gone after about
30 s, so the reply must still be sent with sendMessage. Private chats only (a group is answered
"TEXTDRAFT_PEER_INVALID", as Telegram answers); ``draft_id`` must be non-zero; the text is 0..4096
characters after entity parsing, and an empty or missing text shows "Thinking…" (Bot API 10.0).
Every accepted draft is recorded with the monotonic time it arrived, so a test can measure how soon the
first words appeared and how the preview grew.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.standins.bot_api.model import MAX_TEXT_LENGTH, Draft
from tests.standins.bot_api.params import chat_param, format_text, thread_param
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import utf16_len
from tests.standins.bot_api.wire import Request, as_int, bad


def send_message_draft(world: World, req: Request) -> Any:
    arrived = time.monotonic()
    chat = chat_param(world, req)
    if chat.type != "private":
        raise bad("TEXTDRAFT_PEER_INVALID")
    draft_id = as_int(req.params.get("draft_id"))
    if not draft_id:  # missing, malformed or zero (the stand-in's wording: Telegram's is undocumented)
        raise bad("draft_id must be non-zero")
    thread_id = thread_param(chat, req)
    raw = req.params.get("text")
    text: str = ""
    entities: list[dict[str, Any]] = []
    if raw not in (None, ""):
        text, entities = format_text(world, raw, req.params.get("parse_mode"), req.params.get("entities"))
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise bad("message is too long")
    world.drafts.append(
        Draft(
            chat_id=chat.id,
            draft_id=draft_id,
            thread_id=thread_id,
            text=text,
            entities=[(e["type"], e["offset"], e["length"]) for e in entities],
            raw="" if raw is None else raw if isinstance(raw, str) else json.dumps(raw),
            parse_mode=req.params.get("parse_mode") or None,
            time=arrived,
        )
    )
    world.cond.notify_all()
    return True
