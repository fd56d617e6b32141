"""What a message points at: the message it replies to (or the part it quotes), and where a forward came from.

"Is this right?" as a reply to a line three screens up means nothing without that line, and a forwarded
message read as the user's own words is misread. So the turn's text starts with marked lines the model
can tell apart from what the user wrote:

    [replying to Ann: «the deploy failed at step 3»]
    [replying to you, quoting: «run the migration first»]
    [forwarded from Build Bot]

The replied-to text is trimmed (`QUOTE_CHARS`): it is context, not content; the bot's own messages are in
the history anyway, and a member's 4000-character message quoted whole in every reply would crowd the
window. Media in the replied-to message is named ("[replying to Ann's photo …]"), not fetched: a photo
sent to the bot is already in the session's history, and one the bot never saw (a member's photo in a
group) would cost a download and image tokens for a reply that most often only refers to it.
"""

from __future__ import annotations

from telegram import (
    Message,
    MessageOrigin,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
    User,
)

QUOTE_CHARS = 500

# The first that a message carries names what it is, in the words a reply line uses.
_MEDIA = (("photo", "photo"), ("document", "file"), ("voice", "voice message"), ("audio", "audio file"),
          ("video_note", "video message"), ("video", "video"), ("animation", "GIF"), ("sticker", "sticker"),
          ("location", "location"), ("contact", "contact"), ("poll", "poll"))


def trimmed(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most `limit` characters, cut at a word where one is near."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.8 else cut).rstrip() + "…"


def media_of(message: object) -> str:
    """What kind of media a message (or an external reply's info) carries ("photo", "file", ...), or ""."""
    return next((word for field, word in _MEDIA if getattr(message, field, None)), "")


def _who(user: User | None, bot_id: int, speaker_id: int) -> tuple[str, str]:
    """How a reply line names the author of the replied-to message: alone, and as an owner."""
    if user is None:
        return "someone", "someone's"
    if user.id == bot_id:
        return "you", "your"
    if user.id == speaker_id:
        return "their own message", "their own"
    name = user.full_name or (f"@{user.username}" if user.username else "someone")
    return name, f"{name}'s"


def origin_name(origin: MessageOrigin) -> str:
    """Who a forwarded (or externally replied-to) message came from, as Telegram tells it."""
    if isinstance(origin, MessageOriginUser):
        return origin.sender_user.full_name
    if isinstance(origin, MessageOriginHiddenUser):
        return origin.sender_user_name
    if isinstance(origin, MessageOriginChat):
        name = origin.sender_chat.title or origin.sender_chat.full_name or "a chat"
        return f"{name} ({origin.author_signature})" if origin.author_signature else name
    if isinstance(origin, MessageOriginChannel):
        name = origin.chat.title or "a channel"
        return f"{name} ({origin.author_signature})" if origin.author_signature else name
    return "elsewhere"


def reply_line(message: Message, bot_id: int) -> str:
    """The marked line for what `message` replies to, or "" when it replies to nothing."""
    speaker = message.from_user.id if message.from_user is not None else 0
    quote = message.quote.text if message.quote is not None and message.quote.text else ""
    replied = message.reply_to_message
    if replied is not None and replied.forum_topic_created is not None:
        replied = None  # in a forum topic every message "replies" to the topic's start: not a reply
    if replied is not None:
        who, owner = _who(replied.from_user, bot_id, speaker)
        if replied.from_user is None and replied.sender_chat is not None:
            who = replied.sender_chat.title or "a channel"
            owner = f"{who}'s"
        text = replied.text or replied.caption or ""
        media = media_of(replied)
    elif message.external_reply is not None:  # a message of another chat (or topic)
        who = origin_name(message.external_reply.origin)
        owner, text = f"{who}'s", ""
        media = media_of(message.external_reply)
    else:
        return ""
    target = f"{owner} {media}" if media else who
    if quote:
        return f"[replying to {target}, quoting: «{trimmed(quote)}»]"
    if text:
        return f"[replying to {target}: «{trimmed(text)}»]"
    return f"[replying to {target}]"


def forward_line(message: Message) -> str:
    """The marked line for where a forwarded message came from, or "" when it is the sender's own."""
    if message.forward_origin is None:
        return ""
    return f"[forwarded from {origin_name(message.forward_origin)}]"


def context_lines(message: Message, bot_id: int) -> str:
    """The marked lines `message` starts its turn text with ("" if none), each on its own line."""
    return "\n".join(line for line in (forward_line(message), reply_line(message, bot_id)) if line)
