"""Methods about the bot and its chats rather than messages: getMe, the command menu, getChat, close.

The command menu is kept per scope and language, as Telegram keeps it; `World.commands`, what tests
look at, is the menu set last (emptied when the default scope's is deleted).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from tests.standins.bot_api.params import chat_param
from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import Request, bad, decoded


def get_me(world: World, req: Request) -> Any:
    return {
        **world.bot_user.to_dict(),
        "can_join_groups": True,
        "can_read_all_group_messages": not world.privacy_mode,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def scope_key(req: Request) -> tuple[str, str]:
    scope = decoded(req.params.get("scope"), "BotCommandScope")
    if not scope:
        scope = {"type": "default"}
    lang = req.params.get("language_code") or ""
    if lang and not re.fullmatch(r"[a-z]{2}", str(lang)):
        raise bad("Invalid language code specified")
    return json.dumps(scope, sort_keys=True), str(lang)


def set_my_commands(world: World, req: Request) -> Any:
    raw = decoded(req.params.get("commands"), "commands")
    if not isinstance(raw, list):
        raise bad("can't parse commands JSON object")
    if len(raw) > 100:
        raise bad("too many commands")
    for c in raw:
        if not isinstance(c, dict) or not isinstance(c.get("command"), str):
            raise bad('can\'t parse BotCommand: Field "command" must be of type String')
        if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]):
            raise bad("BOT_COMMAND_INVALID")
        description = c.get("description")
        if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
            raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
    key = scope_key(req)
    world.commands_by_scope[key] = [{"command": c["command"], "description": c["description"]} for c in raw]
    world.commands = copy.deepcopy(world.commands_by_scope[key])
    return True


def get_my_commands(world: World, req: Request) -> Any:
    return copy.deepcopy(world.commands_by_scope.get(scope_key(req), []))


def delete_my_commands(world: World, req: Request) -> Any:
    key = scope_key(req)
    world.commands_by_scope.pop(key, None)
    if key == (json.dumps({"type": "default"}, sort_keys=True), ""):
        world.commands = []
    return True


def get_chat(world: World, req: Request) -> Any:
    chat = chat_param(world, req, check_block=False)
    return {
        **chat.to_dict(),
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


def close(world: World, req: Request) -> Any:
    return True
