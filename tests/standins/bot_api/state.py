"""The fake Telegram world behind the Bot API stand-in: chats, users, messages, updates, what the bot did.

Everything lives under one re-entrant lock, inside ``cond``: a test thread building the world, the server
threads answering the bot and a long poll waiting for updates all see one consistent state, and ``cond``
wakes the long polls and ``BotAPI.wait_for`` on every change. Besides the data, the world owns the few
operations every other part needs: a new message, a queued update, how a message looks as JSON, and
whether privacy mode lets a group message through to the bot.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from typing import Any

from tests.standins.bot_api.model import (
    ApiCall,
    CallbackQuery,
    Chat,
    Download,
    Draft,
    FileKind,
    Message,
    SentFile,
    SentMessage,
    StoredFile,
    User,
    Webhook,
    WebhookControls,
    WebhookDelivery,
)

# Telegram's file_id prefixes by kind (the type byte differs), so ids look like the real ones in logs.
_FILE_ID_PREFIX = {
    "photo": "AgACAgIAAxkBAAI",
    "document": "BQACAgIAAxkBAAI",
    "voice": "AwACAgIAAxkBAAI",
    "audio": "CQACAgIAAxkBAAI",
    "video_note": "DQACAgIAAxkBAAI",
}
_FILE_DIR = {
    "photo": "photos",
    "document": "documents",
    "voice": "voice",
    "audio": "music",
    "video_note": "video_notes",
}


class World:
    """The world's state. Callers hold ``cond`` (its lock is re-entrant) while they read or change it."""

    def __init__(self, bot_user: User, *, strict_ampersand: bool, privacy_mode: bool) -> None:
        self.bot_user = bot_user
        self.strict_ampersand = strict_ampersand
        self.privacy_mode = privacy_mode
        self.cond = threading.Condition(threading.RLock())
        # stop() sets both: `stopping` under the lock releases long polls, `stop_event` releases stalls.
        self.stopping = False
        self.stop_event = threading.Event()

        self.users: dict[int, User] = {bot_user.id: bot_user}
        self.chats: dict[int, Chat] = {}
        self.messages: dict[tuple[int, int], Message] = {}
        self.sent: dict[tuple[int, int], SentMessage] = {}
        self.queries: dict[str, CallbackQuery] = {}
        self.query_ids = itertools.count(4_382_019_331_775_000_001)
        self.file_ids = itertools.count(1)
        self.files: dict[str, StoredFile] = {}  # by file_id
        self.file_paths: dict[str, StoredFile] = {}  # by file_path, what downloads ask for
        self.media_group_ids = itertools.count(13_000_000_000_000_001)
        self.admin = User(999_000_001, "Group Admin", "group_admin")  # makes every group, so owns it
        self.users[self.admin.id] = self.admin
        self.anonymous = User(1_087_968_824, "Group", "GroupAnonymousBot", is_bot=True)

        self.updates: list[dict[str, Any]] = []
        self.next_update_id = 100_000_001
        self.allowed_updates: list[str] = []
        self.poll_generation = 0
        self.polls_waiting = 0
        self.commands_by_scope: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # setWebhook's; while set, getUpdates is refused and `webhook.Deliverer` POSTs the updates instead.
        self.webhook: Webhook | None = None
        self.webhook_controls = WebhookControls()
        self.webhook_deliveries: list[WebhookDelivery] = []

        # What tests read through BotAPI's properties of the same names.
        self.calls: list[ApiCall] = []
        self.uploads: list[SentFile] = []
        self.drafts: list[Draft] = []
        self.downloads: list[Download] = []
        self.downloads_held = False  # file downloads wait until released (BotAPI.hold_downloads)
        self.downloads_waiting = 0
        self.chat_actions: list[tuple[int, int | None, str]] = []
        self.commands: list[dict[str, Any]] = []

    def existing_chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ValueError(f"unknown chat {chat_id}")
        return chat

    def new_message(
        self,
        chat: Chat,
        sender: User | None,
        *,
        text: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        reply_markup: dict[str, Any] | None = None,
        service: dict[str, Any] | None = None,
    ) -> Message:
        """Adds a message to ``chat`` under the chat's next id, as Telegram numbers them per chat."""
        chat.last_message_id += 1
        msg = Message(
            chat_id=chat.id,
            message_id=chat.last_message_id,
            from_user=sender,
            date=int(time.time()),
            text=text,
            entities=entities or [],
            thread_id=thread_id,
            is_topic_message=thread_id is not None,
            reply_to_message_id=reply_to,
            reply_markup=reply_markup,
            service=service or {},
        )
        self.messages[(chat.id, msg.message_id)] = msg
        self.cond.notify_all()
        return msg

    def store_file(self, content: bytes, kind: FileKind, file_name: str | None = None,
                   mime_type: str | None = None, extension: str = "") -> StoredFile:
        """Keeps ``content`` under a new file_id (and file_unique_id) and file_path, as Telegram stores
        every file it is sent, so getFile and downloads find it."""
        number = next(self.file_ids)
        if not extension and file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=f"{_FILE_ID_PREFIX[kind]}{number:08d}standin",
            file_unique_id=f"AgAD{number:08d}",
            kind=kind,
            content=content,
            file_path=f"{_FILE_DIR[kind]}/file_{number}{extension}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self.files[stored.file_id] = stored
        self.file_paths[stored.file_path] = stored
        return stored

    def enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        """Queues an update for getUpdates; returns its id."""
        update_id = self.next_update_id
        self.next_update_id += 1
        self.updates.append({"update_id": update_id, kind: payload})
        self.cond.notify_all()
        return update_id

    def delivered_to_bot(self, chat: Chat, msg: Message) -> bool:
        """Privacy mode: in groups only commands, mentions of the bot and replies to it arrive."""
        if not self.privacy_mode or chat.type == "private":
            return True
        text = msg.text if msg.text is not None else msg.caption or ""
        me = (self.bot_user.username or "").lower()
        for e in msg.entities or msg.caption_entities:
            units = text.encode("utf-16-le")[2 * e["offset"] : 2 * (e["offset"] + e["length"])]
            chunk = units.decode("utf-16-le")
            if e["type"] == "bot_command" and ("@" not in chunk or chunk.lower().endswith("@" + me)):
                return True
            if e["type"] == "mention" and chunk.lower() == "@" + me:
                return True
        if msg.reply_to_message_id is not None:
            target = self.messages.get((chat.id, msg.reply_to_message_id))
            return target is not None and target.from_user is self.bot_user
        return False

    def message_json(self, msg: Message, nested: bool = False) -> dict[str, Any]:
        """The Message object of the Bot API, as updates and method results carry it."""
        chat = self.chats[msg.chat_id]
        d: dict[str, Any] = {"message_id": msg.message_id}
        if msg.from_user is not None:
            d["from"] = msg.from_user.to_dict()
        if msg.sender_chat is not None:
            d["sender_chat"] = copy.deepcopy(msg.sender_chat)
        d["chat"] = chat.to_dict()
        d["date"] = msg.date
        if msg.thread_id is not None:
            d["message_thread_id"] = msg.thread_id
        if msg.is_topic_message:
            d["is_topic_message"] = True
        if not nested:
            reply_id = msg.reply_to_message_id
            if reply_id is None and msg.is_topic_message and msg.thread_id != msg.message_id:
                # Telegram presents every topic message as a reply to the topic's creation.
                reply_id = msg.thread_id
            target = self.messages.get((msg.chat_id, reply_id)) if reply_id is not None else None
            if target is not None and not target.deleted:
                d["reply_to_message"] = self.message_json(target, nested=True)
            if msg.quote is not None and "reply_to_message" in d:
                d["quote"] = copy.deepcopy(msg.quote)
        if msg.forward_origin is not None:
            d["forward_origin"] = copy.deepcopy(msg.forward_origin)
        if msg.author_signature is not None:
            d["author_signature"] = msg.author_signature
        if msg.edit_date is not None:
            d["edit_date"] = msg.edit_date
        if msg.media_group_id is not None:
            d["media_group_id"] = msg.media_group_id
        if msg.text is not None:
            d["text"] = msg.text
            if msg.entities:
                d["entities"] = copy.deepcopy(msg.entities)
        d.update(copy.deepcopy(msg.media))
        if msg.media and msg.caption:
            d["caption"] = msg.caption
            if msg.caption_entities:
                d["caption_entities"] = copy.deepcopy(msg.caption_entities)
        if msg.reply_markup and msg.reply_markup.get("inline_keyboard"):
            d["reply_markup"] = copy.deepcopy(msg.reply_markup)
        d.update(copy.deepcopy(msg.service))
        return d
