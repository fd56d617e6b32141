"""The records a test reads from the Bot API stand-in: users, chats, messages, what the bot sent, its calls.

They are plain dataclasses so a test can compare them and the stand-in can hand out copies; the world
that holds them is `state.World`. The limits Telegram enforces live here too, beside the records they bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal


class AnyThread:
    """Sentinel type for "messages in any thread" (None already means "no thread")."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = AnyThread()

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES: Final = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")
MAX_PHOTO_BYTES: Final = 10 * 1024 * 1024
MAX_PHOTO_DIMENSIONS: Final = 10_000  # width + height of a photo the bot sends
MAX_PHOTO_RATIO: Final = 20
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
class ChatAdmin:
    """A group's creator or one of its administrators; an anonymous one writes as the group itself."""

    status: Literal["creator", "administrator"]
    is_anonymous: bool = False
    custom_title: str | None = None


@dataclass
class Chat:
    """A chat: private (id == user id), group, or supergroup (possibly a forum).

    ``admins``: a group's creator (the user who made it) and administrators, by user id; ``members``:
    the users who wrote in it (what getChatMember answers "member" for)."""

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
    admins: dict[int, ChatAdmin] = field(default_factory=dict)
    members: set[int] = field(default_factory=set)

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
    # What the message carries besides text, as the Bot API field names it: {"photo": [PhotoSize...]},
    # {"document": {...}}, {"voice": {...}}, {"audio": {...}}, {"video_note": {...}}.
    media: dict[str, Any] = field(default_factory=dict)
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    media_group_id: str | None = None
    quote: dict[str, Any] | None = None  # a TextQuote: the part of the replied message it quotes
    forward_origin: dict[str, Any] | None = None  # a MessageOrigin: where a forwarded message came from
    service: dict[str, Any] = field(default_factory=dict)
    edit_date: int | None = None
    deleted: bool = False
    # An anonymous admin's post: from GroupAnonymousBot, on behalf of the group (with the admin's custom title).
    sender_chat: dict[str, Any] | None = None
    author_signature: str | None = None

    @property
    def document(self) -> dict[str, Any] | None:
        return self.media.get("document")

    @property
    def photo(self) -> list[dict[str, Any]] | None:
        """The PhotoSize array, smallest first; the last is the largest."""
        return self.media.get("photo")


FileKind = Literal["photo", "document", "voice", "audio", "video_note"]


@dataclass
class StoredFile:
    """A file on the stand-in's "Telegram servers": placed by a test, sent by a user, uploaded by the bot.

    ``getFile`` answers ``file_path``; the bytes are served at ``<base_file_url><token>/<file_path>``."""

    file_id: str
    file_unique_id: str
    kind: FileKind
    content: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None

    @property
    def file_size(self) -> int:
        return len(self.content)


@dataclass
class Download:
    """One ``GET /file/bot<token>/<file_path>``: what was asked for and how it was answered."""

    file_path: str
    status: int
    size: int
    time: float


@dataclass
class Draft:
    """One sendMessageDraft the stand-in accepted: a preview the client animates, never a message.

    ``time`` is ``time.monotonic()`` when it arrived, so a test can measure how soon drafts appeared."""

    chat_id: int
    draft_id: int
    thread_id: int | None
    text: str
    entities: list[tuple[str, int, int]]
    raw: str
    parse_mode: str | None
    time: float


@dataclass(frozen=True)
class Quote:
    """The part of the replied-to message a user quotes (a TextQuote). ``position`` in UTF-16 units;
    None finds ``text`` in the replied message. A quote the user selected by hand is ``is_manual``."""

    text: str
    position: int | None = None
    is_manual: bool = True


@dataclass(frozen=True)
class ForwardOrigin:
    """Where a forwarded message came from (a MessageOrigin); build it with the class methods."""

    payload: dict[str, Any]

    @classmethod
    def user(cls, user: User, date: int = 1_700_000_000) -> ForwardOrigin:
        """Forwarded from a user who allows linking to their account."""
        return cls({"type": "user", "date": date, "sender_user": user.to_dict()})

    @classmethod
    def hidden_user(cls, name: str, date: int = 1_700_000_000) -> ForwardOrigin:
        """Forwarded from a user who hides their account: only a name."""
        return cls({"type": "hidden_user", "date": date, "sender_user_name": name})

    @classmethod
    def channel(
        cls,
        chat_id: int,
        title: str,
        message_id: int,
        username: str | None = None,
        author_signature: str | None = None,
        date: int = 1_700_000_000,
    ) -> ForwardOrigin:
        """Forwarded from a channel post."""
        chat: dict[str, Any] = {"id": chat_id, "type": "channel", "title": title}
        if username:
            chat["username"] = username
        payload: dict[str, Any] = {"type": "channel", "date": date, "chat": chat, "message_id": message_id}
        if author_signature:
            payload["author_signature"] = author_signature
        return cls(payload)


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
class SentFile:
    """A file the bot sent with sendDocument (``kind`` "document") or sendPhoto ("photo"): the bytes that
    reached the chat (uploaded, or those of the file_id it sent again), as sent, with the caption shown."""

    chat_id: int
    thread_id: int | None
    filename: str
    content: bytes
    caption: str | None
    message_id: int
    mime_type: str = "application/octet-stream"
    raw_caption: str | None = None
    parse_mode: str | None = None
    kind: Literal["document", "photo"] = "document"
    file_id: str = ""


SentDocument = SentFile  # the name from before photos, kept for existing tests


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


@dataclass
class Webhook:
    """The webhook set with setWebhook (None in the world: updates wait for getUpdates)."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    ip_address: str | None = None


@dataclass
class WebhookDelivery:
    """One POST of an update to the webhook, as Telegram made it, and what came of it.

    ``status`` is the HTTP status vigil answered, None when no answer arrived; then ``error`` says why:
    "refused" (nothing listening), "dropped" (the connection closed before an answer), "timeout".
    "lost" marks an answer that arrived but was thrown away by ``drop_webhook_responses`` (as if the
    connection had broken just before it), so the update is delivered again.
    """

    update_id: int
    secret_token: str | None
    status: int | None
    error: str
    time: float
    duration: float

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error != "lost"


@dataclass
class WebhookControls:
    """The test's hold on deliveries: paused, answers to throw away, and how soon a failed one is retried."""

    paused: bool = False
    lose_answers: int = 0
    pause_after_lost: bool = False
    retry_s: float = 0.2  # Telegram backs off much longer; tests need the redelivery soon
    timeout_s: float = 60.0  # Telegram waits about a minute for an answer
