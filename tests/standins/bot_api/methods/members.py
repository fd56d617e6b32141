"""Who is in a group and who runs it: getChatMember and getChatAdministrators, answered as Telegram does.

A group's creator is `ChatMemberOwner` ("creator"), its administrators `ChatMemberAdministrator`
("administrator", with their rights and ``is_anonymous``), users who wrote in it "member", known users
who never did "left"; a user id nobody knows is "user not found". getChatAdministrators lists the owner
and the administrators, other bots left out (``return_bots``, Bot API 9.x, puts them in), and refuses a
private chat ("there are no administrators in the private chat"). Neither takes a topic: a forum's
admins are the admins of every topic. Real Telegram guarantees getChatMember about other users only to
a bot that is an admin itself (and may say "member not found" otherwise); this stand-in answers it to
any bot, so a test must not rely on that: vigil asks getChatAdministrators, which any member bot gets.
"""

from __future__ import annotations

from typing import Any

from tests.standins.bot_api.model import Chat, ChatAdmin, User
from tests.standins.bot_api.params import chat_param
from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import Request, as_bool, as_int, bad


def _member(chat: Chat, user: User, admin: ChatAdmin | None) -> dict[str, Any]:
    if admin is None:
        return {"status": "member" if user.id in chat.members else "left", "user": user.to_dict()}
    extra = {"custom_title": admin.custom_title} if admin.custom_title else {}
    if admin.status == "creator":
        return {"status": "creator", "user": user.to_dict(), "is_anonymous": admin.is_anonymous, **extra}
    rights = {"can_be_edited": False, "is_anonymous": admin.is_anonymous, "can_manage_chat": True,
              "can_delete_messages": True, "can_manage_video_chats": True, "can_restrict_members": True,
              "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
              "can_post_stories": False, "can_edit_stories": False, "can_delete_stories": False,
              "can_pin_messages": True}
    if chat.type == "supergroup":
        rights["can_manage_topics"] = chat.is_forum
    return {"status": "administrator", "user": user.to_dict(), **rights, **extra}


def get_chat_member(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    raw = req.params.get("user_id")
    if raw is None or raw == "":
        raise bad("user_id is empty")  # PTB never sends this: user_id is a required argument
    user = world.users.get(as_int(raw) or 0)
    if user is None:
        raise bad("user not found")
    if chat.type == "private":
        if user.id not in (chat.id, world.bot_user.id):
            raise bad("user not found")
        return {"status": "member", "user": user.to_dict()}
    if user is world.bot_user:
        return {"status": "member", "user": user.to_dict()}
    return _member(chat, user, chat.admins.get(user.id))


def get_chat_administrators(world: World, req: Request) -> Any:
    chat = chat_param(world, req)
    if chat.type == "private":
        raise bad("there are no administrators in the private chat")
    bots = as_bool(req.params.get("return_bots"))
    listed = []
    for user_id, admin in chat.admins.items():
        user = world.users[user_id]
        if user.is_bot and not bots and user is not world.bot_user:
            continue
        listed.append(_member(chat, user, admin))
    return listed
