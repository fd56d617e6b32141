"""The records a test reads from the Bot API stand-in: users, chats, messages, what the bot sent, its calls.

They are plain dataclasses so a test can compare them and the stand-in can hand out copies; the world
that holds them is `state.World`. The limits Telegram enforces live here too, beside the records they bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final


class AnyThread:
    """Sentinel type for "messages in any thread" (None already means "no thread")."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = AnyThread()

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
GENERAL_TOPIC_ID: Final = 1

CHAT_ACTIONS: Final = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


@dataclass
class User:
    """A Telegram user (or the bot itself)."""

    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            d["username"] = self.username
        return d


@dataclass
class Chat:
    """A chat: private (id == user id), group, or supergroup (possibly a forum)."""

    id: int
    type: str
    title: str | None = None
    is_forum: bool = False
    first_name: str | None = None
    username: str | None = None
    topics: dict[int, str] = field(default_factory=dict)
    migrated_to: int | None = None
    blocked: bool = False
    deleted: bool = False
    last_message_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            d["first_name"] = self.first_name or ""
            if self.username:
                d["username"] = self.username
        else:
            d["title"] = self.title or ""
            if self.is_forum:
                d["is_forum"] = True
        return d


@dataclass
class Message:
    """Every message in the world, from users and from the bot, including service messages."""

    chat_id: int
    message_id: int
    from_user: User | None
    date: int
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    thread_id: int | None = None
    is_topic_message: bool = False
    reply_to_message_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    service: dict[str, Any] = field(default_factory=dict)
    edit_date: int | None = None
    deleted: bool = False


@dataclass
class SentMessage:
    """A text message the bot sent, as currently visible (edits applied)."""

    chat_id: int
    message_id: int
    thread_id: int | None
    text: str
    raw: str
    parse_mode: str | None
    entities: list[tuple[str, int, int]]
    reply_markup: dict[str, Any] | None
    edits: int = 0
    date: int = 0
    reply_to_message_id: int | None = None
    deleted: bool = False


@dataclass
class SentDocument:
    """A file the bot uploaded with sendDocument."""

    chat_id: int
    thread_id: int | None
    filename: str
    content: bytes
    caption: str | None
    message_id: int
    mime_type: str = "application/octet-stream"
    raw_caption: str | None = None
    parse_mode: str | None = None


@dataclass
class CallbackQuery:
    """A press on an inline button, and how the bot answered it."""

    id: str
    chat_id: int
    message_id: int
    user_id: int
    data: str
    created: float
    answered: bool = False
    answer_text: str | None = None
    show_alert: bool = False


@dataclass
class ApiCall:
    """One HTTP request to the stand-in and its outcome.

    ``time`` is ``time.monotonic()`` when the request arrived; ``client_gone`` is set when the
    client hung up before the answer (a cancelled long poll, a client-side timeout on a stall).
    """

    method: str
    params: dict[str, Any]
    ok: bool
    error_code: int | None
    description: str | None
    time: float
    duration: float = 0.0
    http_status: int = 200
    result: Any = None
    client_gone: bool = False
