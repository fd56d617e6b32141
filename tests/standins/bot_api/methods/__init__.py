"""The Bot API methods the stand-in answers, one module per kind, and the table that routes to them.

A handler takes the world and the decoded request and returns the ``result`` of a successful answer or
raises `wire.ApiError`; the server holds the world's lock around every handler except getUpdates, which
waits on it. A new method is a function in the module of its kind and one line in `HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from tests.standins.bot_api.methods import bot, drafts, files, members, messages, updates, webhook
from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import Request

Handler = Callable[[World, Request], Any]

HANDLERS: Final[dict[str, Handler]] = {
    "getMe": bot.get_me,
    "getUpdates": updates.get_updates,
    "setWebhook": webhook.set_webhook,
    "deleteWebhook": webhook.delete_webhook,
    "getWebhookInfo": webhook.get_webhook_info,
    "setMyCommands": bot.set_my_commands,
    "getMyCommands": bot.get_my_commands,
    "deleteMyCommands": bot.delete_my_commands,
    "sendMessage": messages.send_message,
    "editMessageText": messages.edit_message_text,
    "editMessageReplyMarkup": messages.edit_message_reply_markup,
    "deleteMessage": messages.delete_message,
    "deleteMessages": messages.delete_messages,
    "sendChatAction": messages.send_chat_action,
    "sendDocument": files.send_document,
    "sendPhoto": files.send_photo,
    "getFile": files.get_file,
    "sendMessageDraft": drafts.send_message_draft,
    "answerCallbackQuery": messages.answer_callback_query,
    "getChat": bot.get_chat,
    "getChatMember": members.get_chat_member,
    "getChatAdministrators": members.get_chat_administrators,
    "close": bot.close,
    "logOut": bot.close,
}
# Telegram matches method names case-insensitively.
METHOD_NAMES: Final = {name.lower(): name for name in HANDLERS}
