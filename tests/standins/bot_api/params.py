"""Reading a method's parameters against the world, with Telegram's refusals: which chat, which topic,
which message a reply is to, the text after parse_mode, the inline keyboard.

Every sending method shares these, so each rule (the General topic is addressed by leaving
``message_thread_id`` out; a reply goes to the replied message's topic...) is written once.
"""

from __future__ import annotations

import json
from typing import Any, Final

from tests.standins.bot_api.html import HtmlParseError, checked_link, parse_html
from tests.standins.bot_api.model import Chat
from tests.standins.bot_api.state import World
from tests.standins.bot_api.text import finalize_text, utf16_len
from tests.standins.bot_api.wire import ApiError, Request, as_int, bad, decoded

_BUTTON_KINDS: Final = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def chat_param(world: World, req: Request, *, check_block: bool = True) -> Chat:
    raw = req.params.get("chat_id")
    if raw is None or raw == "":
        raise bad("chat_id is empty")
    chat: Chat | None = None
    if isinstance(raw, str) and raw.startswith("@"):
        chat = next((c for c in world.chats.values() if c.username and "@" + c.username == raw), None)
    else:
        chat_id = as_int(raw)
        chat = world.chats.get(chat_id) if chat_id is not None else None
    if chat is None or chat.deleted:
        raise bad("chat not found")
    if chat.migrated_to is not None:
        raise bad("group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": chat.migrated_to})
    if check_block and chat.blocked:
        if chat.type == "private":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        kind = "supergroup" if chat.type == "supergroup" else "group"
        raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
    return chat


def thread_param(chat: Chat, req: Request) -> int | None:
    raw = req.params.get("message_thread_id")
    if raw is None or raw == "" or raw == 0:
        return None
    thread_id = as_int(raw)
    # The General topic (1) must be addressed by leaving message_thread_id out.
    if thread_id is None or not chat.is_forum or thread_id not in chat.topics:
        raise bad("message thread not found")
    return thread_id


def message_id_param(req: Request) -> int:
    raw = req.params.get("message_id")
    if raw is None or raw == "":
        raise bad("message identifier is not specified")
    mid = as_int(raw)
    if mid is None:
        raise bad("message identifier is not specified")
    return mid


def reply_param(world: World, chat: Chat, req: Request, thread_id: int | None) -> tuple[int | None, int | None]:
    """Resolves reply_parameters (or the legacy reply_to_message_id); may pick the thread."""
    raw = req.params.get("reply_parameters")
    allow = bool(req.params.get("allow_sending_without_reply", False))
    if raw not in (None, ""):
        raw = decoded(raw, "reply parameters")
        if not isinstance(raw, dict) or as_int(raw.get("message_id")) is None:
            raise bad("can't parse reply parameters JSON object")
        mid = as_int(raw["message_id"])
        allow = bool(raw.get("allow_sending_without_reply", allow))
        other = raw.get("chat_id")
        if other is not None and as_int(other) != chat.id:
            raise bad("message to be replied not found")  # cross-chat replies: not modelled
    elif req.params.get("reply_to_message_id") not in (None, "", 0):
        mid = as_int(req.params["reply_to_message_id"])
    else:
        return None, thread_id
    target = world.messages.get((chat.id, mid)) if mid is not None else None
    if target is None or target.deleted:
        if allow:
            return None, thread_id
        raise bad("message to be replied not found")
    if chat.is_forum:
        if thread_id is None:
            thread_id = target.thread_id  # a reply goes to the replied message's topic
        elif target.thread_id != thread_id:
            raise bad("message to be replied not found")
    return target.message_id, thread_id


def format_text(world: World, raw: Any, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    mode = (parse_mode or "") if isinstance(parse_mode, str) else ""
    if entities not in (None, ""):
        parsed = explicit_entities(text, entities)
    elif mode.lower() == "html":
        try:
            text, parsed = parse_html(text, world.strict_ampersand)
        except HtmlParseError as e:
            raise bad(f"can't parse entities: {e}") from None
    elif mode.lower() in ("markdown", "markdownv2"):
        raise bad(
            f"can't parse entities: parse_mode {mode} is not supported by this stand-in; "
            "vigil must send HTML or plain text"
        )
    elif mode == "":
        parsed = []
    else:
        raise bad("unsupported parse_mode")
    resolved: list[dict[str, Any]] = []
    for entity in parsed:
        if entity["type"] == "text_mention":
            user = world.users.get(entity["user"]["id"])
            if user is None:
                continue  # a user the bot can't see: Telegram drops the mention
            entity = {**entity, "user": user.to_dict()}
        resolved.append(entity)
    return finalize_text(text, resolved)


def explicit_entities(text: str, raw: Any) -> list[dict[str, Any]]:
    raw = decoded(raw, "entities")
    if not isinstance(raw, list):
        raise bad("can't parse entities JSON object")
    length = utf16_len(text)
    out = []
    for e in raw:
        if not isinstance(e, dict) or not isinstance(e.get("type"), str):
            raise bad('can\'t parse MessageEntity: Field "type" must be of type String')
        offset, size = as_int(e.get("offset")), as_int(e.get("length"))
        if offset is None or size is None or offset < 0 or size < 0 or offset + size > length:
            raise bad("can't parse entities: entity is out of the text")
        out.append({**e, "offset": offset, "length": size})
    return out


def markup_param(req: Request) -> dict[str, Any] | None:
    raw = req.params.get("reply_markup")
    if raw is None or raw == "":
        return None
    raw = decoded(raw, "reply keyboard markup")
    if not isinstance(raw, dict):
        raise bad("object expected as reply markup")
    if "inline_keyboard" in raw:
        rows = raw["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
        for row in rows:
            for button in row:
                _check_button(button)
        if not any(rows):
            return None  # an empty keyboard is no keyboard
        return raw
    if any(k in raw for k in ("keyboard", "remove_keyboard", "force_reply")):
        return raw
    raise bad("can't parse reply keyboard markup JSON object")


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad("can't parse inline keyboard button: InlineKeyboardButton should be an Object")
    if not isinstance(button.get("text"), str):
        raise bad('can\'t parse inline keyboard button: Field "text" must be of type String')
    if not any(kind in button for kind in _BUTTON_KINDS):
        raise bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise bad("BUTTON_DATA_INVALID")
    if "url" in button and (not isinstance(button["url"], str) or checked_link(button["url"]) is None):
        raise bad("BUTTON_URL_INVALID")
