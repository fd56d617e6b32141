"""What happens in the Telegram world besides the bot: tests build it (users, chats, groups, forum topics,
blocks, migrations) and its users act in it (press buttons; what they post is `posts`').

Each action changes the world as Telegram would and queues the update the bot would get; the
`BotAPI` methods of the same names are the face tests call. A new kind of user action (a reaction)
goes here; a new kind of post (a sticker, a location) goes in `posts`.
"""

from __future__ import annotations

import time

from tests.standins.bot_api.model import CallbackQuery, Chat, ChatAdmin, User
from tests.standins.bot_api.state import World


def add_user(world: World, user_id: int, first_name: str = "User", username: str | None = None) -> User:
    with world.cond:
        if user_id <= 0 or user_id == world.bot_user.id:
            raise ValueError(f"bad user id {user_id}")
        user = User(user_id, first_name, username)
        world.users[user_id] = user
        return user


def add_private_chat(world: World, user: User) -> Chat:
    with world.cond:
        chat = Chat(user.id, "private", first_name=user.first_name, username=user.username)
        world.chats[user.id] = chat
        return chat


def add_group(world: World, chat_id: int, title: str, supergroup: bool = False, forum: bool = False) -> Chat:
    if chat_id >= 0:
        raise ValueError("group chat ids are negative")
    with world.cond:
        if chat_id in world.chats:
            raise ValueError(f"chat {chat_id} exists")
        kind = "supergroup" if supergroup or forum else "group"
        chat = Chat(chat_id, kind, title=title, is_forum=forum)
        chat.admins[world.admin.id] = ChatAdmin("creator")  # who made the group owns it
        world.chats[chat_id] = chat
        world.new_message(chat, world.admin, service={f"{kind}_chat_created": True})
        return chat


def promote(world: World, chat_id: int, user_id: int, anonymous: bool = False, title: str | None = None) -> None:
    """The group's owner makes ``user_id`` an administrator (``anonymous``: "Remain anonymous" on)."""
    with world.cond:
        chat = world.existing_chat(chat_id)
        user = world.users.get(user_id)
        if chat.type == "private" or user is None:
            raise ValueError(f"no group {chat_id} or no user {user_id}")
        current = chat.admins.get(user_id)
        status = current.status if current is not None else "administrator"
        chat.admins[user_id] = ChatAdmin(status, is_anonymous=anonymous, custom_title=title)
        chat.members.add(user_id)
        world.cond.notify_all()


def demote(world: World, chat_id: int, user_id: int) -> None:
    """An administrator loses their rights (a group's creator can't be demoted, only leave)."""
    with world.cond:
        chat = world.existing_chat(chat_id)
        current = chat.admins.get(user_id)
        if current is None or current.status == "creator":
            raise ValueError(f"user {user_id} is no administrator of {chat_id}")
        del chat.admins[user_id]
        world.cond.notify_all()


def create_topic(world: World, chat_id: int, name: str, creator_id: int | None = None) -> int:
    with world.cond:
        chat = world.existing_chat(chat_id)
        if not chat.is_forum:
            raise ValueError(f"chat {chat_id} is not a forum")
        creator = world.users[creator_id] if creator_id is not None else world.admin
        mid = chat.last_message_id + 1
        msg = world.new_message(
            chat,
            creator,
            thread_id=mid,
            service={"forum_topic_created": {"name": name, "icon_color": 7322096}},
        )
        chat.topics[mid] = name
        world.enqueue("message", world.message_json(msg))
        return mid


def block(world: World, chat_id: int) -> None:
    with world.cond:
        world.existing_chat(chat_id).blocked = True
        world.cond.notify_all()


def unblock(world: World, chat_id: int) -> None:
    with world.cond:
        world.existing_chat(chat_id).blocked = False
        world.cond.notify_all()


def delete_chat(world: World, chat_id: int) -> None:
    with world.cond:
        world.existing_chat(chat_id).deleted = True
        world.cond.notify_all()


def migrate_to_supergroup(world: World, old_chat_id: int, new_chat_id: int) -> None:
    with world.cond:
        old = world.existing_chat(old_chat_id)
        if old.type != "group" or old.migrated_to is not None:
            raise ValueError(f"chat {old_chat_id} is not a basic group")
        if new_chat_id >= 0 or new_chat_id in world.chats:
            raise ValueError(f"bad new chat id {new_chat_id}")
        new = Chat(new_chat_id, "supergroup", title=old.title, admins=dict(old.admins), members=set(old.members))
        world.chats[new_chat_id] = new
        m1 = world.new_message(old, world.admin, service={"migrate_to_chat_id": new_chat_id})
        m2 = world.new_message(
            new,
            world.anonymous,
            service={"migrate_from_chat_id": old_chat_id, "sender_chat": new.to_dict()},
        )
        old.migrated_to = new_chat_id
        world.enqueue("message", world.message_json(m1))
        world.enqueue("message", world.message_json(m2))


def press_button(world: World, chat_id: int, user_id: int, message_id: int, data: str) -> CallbackQuery:
    with world.cond:
        msg = world.messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        if msg.from_user is not world.bot_user:
            raise ValueError(f"message {message_id} was not sent by the bot")
        rows = (msg.reply_markup or {}).get("inline_keyboard", [])
        available = [b.get("callback_data") for row in rows for b in row if "callback_data" in b]
        if data not in available:
            raise ValueError(f"message {message_id} has no button with callback_data {data!r}: {available}")
        user = world.users.get(user_id)
        if user is None or user.is_bot:
            raise ValueError(f"unknown user {user_id}")
        query_id = str(next(world.query_ids))
        query = CallbackQuery(query_id, chat_id, message_id, user_id, data, time.monotonic())
        world.queries[query.id] = query
        world.enqueue(
            "callback_query",
            {
                "id": query.id,
                "from": user.to_dict(),
                "message": world.message_json(msg),
                "chat_instance": str(abs(chat_id) * 7919 + 13),
                "data": data,
            },
        )
        return query
