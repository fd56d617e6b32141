"""Which session a Telegram message belongs to, and where its replies go.

`tg:<chat_id>` for a private chat or a group, `tg:<chat_id>:<thread_id>` for a
topic of a forum group. The General topic (thread 1) is the plain chat key and
is answered without `message_thread_id`, as Telegram wants. A group upgraded
to a supergroup keeps its session: the new chat id is an alias of the old key.
"""

from __future__ import annotations

from telegram import Chat, Message

from vigil.records.schema import Target

CHANNEL = "tg"
GENERAL_TOPIC = 1


def topic_of(message: Message) -> int | None:
    """The forum topic a message is in, or None (not a forum, or the General topic)."""
    chat = message.chat
    if not getattr(chat, "is_forum", False) or not message.is_topic_message:
        return None
    thread = message.message_thread_id
    return thread if thread and thread != GENERAL_TOPIC else None


def chat_key(chat_id: int) -> str:
    return f"{CHANNEL}:{chat_id}"


def session_key(chat_key_canonical: str, thread_id: int | None) -> str:
    return chat_key_canonical if thread_id is None else f"{chat_key_canonical}:{thread_id}"


def target_for(chat_id: int, thread_id: int | None) -> Target:
    return Target(channel=CHANNEL, chat_id=chat_id, thread_id=thread_id)


def chat_type(chat: Chat) -> str:
    return str(chat.type)


def chat_title(chat: Chat, fallback_user: str = "") -> str:
    if chat.type == Chat.PRIVATE:
        return chat.full_name or chat.username or fallback_user
    return chat.title or ""
