"""A loopback stand-in for the Telegram Bot API, as strict as Telegram.

vigil's end-to-end tests run ``vigil run`` as a subprocess with ``TELEGRAM_BOT_TOKEN`` and
``VIGIL_TELEGRAM_BASE_URL`` pointing here, so the real python-telegram-bot (PTB) talks to this
server over real HTTP.  The server is standard library only: a ``ThreadingHTTPServer`` on
127.0.0.1:0 in a daemon thread.

Wire format (what PTB 22 actually sends, see ``telegram/request/_httpxrequest.py`` and
``_requestparameter.py``): every call is a POST to ``base_url + token + "/" + method``.
Without files the body is ``application/x-www-form-urlencoded``; each value is a string:
strings go as they are, everything else (ints, bools, lists, dicts such as ``reply_markup``,
``reply_parameters``, ``allowed_updates``, ``commands``) is ``json.dumps``-ed.  With files
(sendDocument) the body is ``multipart/form-data``: the same string fields plus one file part
named after the parameter (``document``).  This server also accepts GET query strings and
``application/json`` bodies, as Telegram does.  Answers have Telegram's shape:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {...}}``, so PTB raises the same exceptions it raises against Telegram.

Text formatting: ``parse_mode=HTML`` runs a port of tdlib's ``parse_html`` (the parser behind
the Bot API), including its exact error texts and UTF-8 byte offsets, followed by the clean-up
Telegram applies to every message (control characters become spaces, ``\\r`` is dropped,
leading and trailing blanks are trimmed, entities that may not nest are removed) and the
4096 UTF-16 code unit limit.  Two deliberate differences from Telegram:

* a bare ``&`` that does not start ``&lt; &gt; &amp; &quot; &#NN; &#xNN;`` is rejected with
  "Character entity expected" (tdlib silently keeps it; Telegram's documentation says it must
  be escaped, and vigil must not depend on the leniency).  Pass ``strict_ampersand=False`` to
  get tdlib's behaviour.
* ``parse_mode`` Markdown and MarkdownV2 are *not implemented*: they are answered with 400
  "can't parse entities", because vigil must only ever send HTML or plain text.

Other behaviour worth knowing when writing tests:

* editMessageText without ``reply_markup`` removes the inline keyboard, as Telegram does.
* In a forum, a message in a topic carries ``message_thread_id``, ``is_topic_message`` and,
  unless it replies to something else, ``reply_to_message`` = the topic's creation message.
  General-topic messages carry none of these, and sending with ``message_thread_id=1`` fails.
* ``stall()`` executes the call and only then holds the answer back: like Telegram, a request
  whose client gave up may still have taken effect.
* Faults registered without ``method`` never hit getUpdates (the background poll would
  otherwise swallow them); name ``method="getUpdates"`` to fault polling itself.
* A second getUpdates while one is still waiting makes the first answer 409 Conflict, as
  Telegram does.  A long poll whose client hung up (PTB cancels it on stop) is recorded with
  ``client_gone=True`` and delivers nothing, so no update is lost.
* ``privacy_mode=True`` makes group chats deliver only commands, mentions of the bot and replies
  to it, like a bot with BotFather's privacy mode on; the default delivers everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http
import itertools
import json
import re
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.standins.loopback import LoopbackHandler, LoopbackServer

T = TypeVar("T")

__all__ = [
    "ANY",
    "ApiCall",
    "BotAPI",
    "CallbackQuery",
    "Chat",
    "HtmlParseError",
    "Message",
    "SentDocument",
    "SentMessage",
    "User",
    "finalize_text",
    "parse_html",
]


class _AnyThread:
    """Sentinel type for "messages in any thread" (None already means "no thread")."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyThread()

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

# Update types Telegram leaves out when allowed_updates is empty or unset.
_OPT_IN_UPDATES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

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

# Values that stay strings even when they look like JSON ("123" as text must stay text).
_STRING_PARAMS: Final = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "action",
        "language_code",
        "url",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "document",
        "secret_token",
        "ip_address",
        "name",
        "title",
        "description",
        "short_description",
    }
)

_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD: Final = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_CONFLICT: Final = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_PROXY_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


# ---------------------------------------------------------------------------------------------
# World model
# ---------------------------------------------------------------------------------------------


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


class _ApiError(Exception):
    """A Bot API error answer."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            d["parameters"] = self.parameters
        return d


def _bad(description: str, parameters: dict[str, Any] | None = None) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}", parameters)


@dataclass
class _Fault:
    kind: str  # "flood" | "fail" | "stall"
    remaining: int
    method: str | None  # lower-cased method name
    chat_id: int | None = None
    retry_after: int = 0
    status: int = 0
    seconds: float = 0.0


@dataclass
class _Upload:
    filename: str
    content: bytes
    content_type: str


@dataclass
class _Request:
    method: str
    params: dict[str, Any]
    files: dict[str, _Upload]
    client_gone: Callable[[], bool]


# ---------------------------------------------------------------------------------------------
# Telegram's HTML parser (a port of tdlib's parse_html) and text clean-up
# ---------------------------------------------------------------------------------------------


class HtmlParseError(Exception):
    """The reason tdlib gives; the Bot API prefixes it with "can't parse entities: "."""


_HTML_TAGS: Final = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
# td::is_space counts NUL, because tdlib scans a NUL-terminated buffer.
_TD_SPACE: Final = frozenset(b" \t\r\n\0\v")
_NAMED_ENTITIES: Final = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}

_SPLITTABLE: Final = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})
_BLOCKQUOTES: Final = frozenset({"blockquote", "expandable_blockquote"})
_PRE_LIKE: Final = frozenset({"code", "pre"})
# tdlib's sort order among entities starting at the same place with the same length.
_PRIORITY: Final = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}


def _at(data: bytes, k: int) -> int:
    # Emulates reading past the end of tdlib's NUL-terminated buffer.
    return data[k] if k < len(data) else 0


def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _is_hex(c: int) -> bool:
    return _is_digit(c) or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int]:
    """Returns (code point, position after the entity), or (0, pos) if ``&`` starts none."""
    end = pos + 1
    res = 0
    if _at(data, pos + 1) == 0x23:  # '#'
        end += 1
        if _at(data, pos + 2) == 0x78:  # 'x' (lower case only, as in tdlib)
            end += 1
            while _is_hex(_at(data, end)):
                res = res * 16 + int(chr(data[end]), 16)
                end += 1
        else:
            while _is_digit(_at(data, end)):
                res = res * 10 + data[end] - 0x30
                end += 1
        if res == 0 or res >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while _is_alpha(_at(data, end)):
            end += 1
        res = _NAMED_ENTITIES.get(data[pos + 1 : end], 0)
        if not res:
            return 0, pos
    if _at(data, end) == 0x3B:  # ';' is optional, as in tdlib
        end += 1
    return res, end


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(b: bytes) -> str:
    # tdlib's to_lower only folds ASCII.
    return b.decode("utf-8", "replace").translate(_ASCII_LOWER)


def _checked_link(url: str) -> str | None:
    """Approximates tdlib's LinkManager::get_checked_link: http(s)/tg/ton links, normalised."""
    url = url.strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    lowered = url.lower()
    if lowered.startswith(("tg:", "ton:", "tonsite:")):
        return url
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    host = parts.hostname or ""
    if not host or not re.fullmatch(r"[\w.\-]+", host):
        return None
    if not parts.path:
        # Telegram canonicalises "https://example.com" to "https://example.com/".
        url = parts._replace(path="/").geturl()
    return url


def parse_html(src: str, strict_ampersand: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parser: returns (visible text, entities with UTF-16 offsets).

    Raises HtmlParseError with tdlib's own reason texts.  Byte offsets are into the UTF-8
    encoding of ``src``.  Links to ``tg://user?id=N`` become ``text_mention`` entities whose
    ``user`` holds only the id (the caller fills in the rest).
    """
    data = src.encode("utf-8", "surrogatepass")
    n = len(data)
    out = bytearray()
    utf16 = 0
    entities: list[dict[str, Any]] = []
    # (tag name, argument, utf16 offset, byte position in the output)
    stack: list[tuple[str, str, int, int]] = []
    need_recheck_utf8 = False
    i = 0
    while i < n:
        c = data[i]
        if c == 0x26:  # '&'
            code, after = _decode_html_entity(data, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                if 0xD800 <= code <= 0xDFFF:
                    need_recheck_utf8 = True
                out += chr(code).encode("utf-8", "surrogatepass")
                i = after
                continue
            if strict_ampersand:
                raise HtmlParseError(f"Character entity expected at byte offset {i}")
        if c != 0x3C:  # not '<'
            if c & 0xC0 != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if _at(data, i) != 0x2F:  # start tag
            while _at(data, i) not in _TD_SPACE and _at(data, i) != 0x3E:
                i += 1
            if _at(data, i) == 0:
                raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
            tag = _lower(data[begin + 1 : i])
            if tag not in _HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while _at(data, i) != 0x3E:
                while _at(data, i) != 0 and _at(data, i) in _TD_SPACE:
                    i += 1
                if _at(data, i) == 0x3E:
                    break
                attr_begin = i
                while _at(data, i) not in _TD_SPACE and _at(data, i) not in b"=>/\"'":
                    i += 1
                attr_name = data[attr_begin:i]
                if not attr_name:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while _at(data, i) != 0 and _at(data, i) in _TD_SPACE:
                    i += 1
                if _at(data, i) != 0x3D:  # '=': a value-less attribute
                    if _at(data, i) == 0:
                        raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and attr_name == b"expandable":
                        argument = "1"
                    continue
                i += 1
                while _at(data, i) != 0 and _at(data, i) in _TD_SPACE:
                    i += 1
                if _at(data, i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if _at(data, i) not in (0x27, 0x22):
                    # A name token: letters, digits, periods, hyphens; case-insensitive.
                    token_begin = i
                    while _is_alpha(_at(data, i)) or _is_digit(_at(data, i)) or _at(data, i) in b".-":
                        i += 1
                    value = _lower(data[token_begin:i])
                    if _at(data, i) not in _TD_SPACE and _at(data, i) != 0x3E:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = data[i]
                    i += 1
                    buf = bytearray()
                    while _at(data, i) != quote and _at(data, i) != 0:
                        if data[i] == 0x26:
                            code, after = _decode_html_entity(data, i)
                            if code:
                                buf += chr(code).encode("utf-8", "surrogatepass")
                                i = after
                                continue
                        buf.append(data[i])
                        i += 1
                    if _at(data, i) == quote:
                        i += 1
                    value = buf.decode("utf-8", "replace")
                if _at(data, i) == 0:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and attr_name == b"href":
                    argument = value
                elif tag == "code" and attr_name == b"class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr_name == b"class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attr_name == b"emoji-id":
                    argument = value
                elif tag == "blockquote" and attr_name == b"expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            stack.append((tag, argument, utf16, len(out)))
        else:  # end tag
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {begin}")
            while _at(data, i) not in _TD_SPACE and _at(data, i) != 0x3E:
                i += 1
            end_tag = _lower(data[begin + 2 : i])
            while _at(data, i) in _TD_SPACE and _at(data, i) != 0:
                i += 1
            if _at(data, i) != 0x3E:
                raise HtmlParseError(f"Unclosed end tag at byte offset {begin}")
            tag, argument, offset, out_pos = stack[-1]
            if end_tag and end_tag != tag:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"'
                )
            if utf16 > offset:
                _close_entity(entities, tag, argument, offset, utf16 - offset, bytes(out[out_pos:]))
            stack.pop()
        i += 1  # past '>'
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    for e in entities:
        e.pop("_code_language", None)
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        if need_recheck_utf8:
            raise HtmlParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, check for "
                "unmatched surrogate code units"
            ) from None
        raise
    return text, entities


def _close_entity(
    entities: list[dict[str, Any]], tag: str, argument: str, offset: int, length: int, inner: bytes
) -> None:
    """Turns a closed tag into an entity, following tdlib's rules for pre/code pairs."""
    simple = {
        "i": "italic",
        "em": "italic",
        "b": "bold",
        "strong": "bold",
        "s": "strikethrough",
        "strike": "strikethrough",
        "del": "strikethrough",
        "u": "underline",
        "ins": "underline",
        "tg-spoiler": "spoiler",
        "span": "spoiler",
    }
    base = {"offset": offset, "length": length}
    last = entities[-1] if entities else None
    same_span = last is not None and last["offset"] == offset and last["length"] == length
    if tag in simple:
        entities.append({"type": simple[tag], **base})
    elif tag == "tg-emoji":
        if not re.fullmatch(r"-?\d{1,19}", argument) or int(argument) == 0:
            raise HtmlParseError("Invalid custom emoji identifier specified")
        entities.append({"type": "custom_emoji", **base, "custom_emoji_id": str(int(argument))})
    elif tag == "a":
        url = argument or inner.decode("utf-8", "replace")
        m = re.fullmatch(r"\s*tg://user\?id=(\d+)\s*", url)
        if m:
            entities.append({"type": "text_mention", **base, "user": {"id": int(m.group(1))}})
        else:
            checked = _checked_link(url)
            if checked is not None:  # tdlib silently drops links it can't use
                entities.append({"type": "text_link", **base, "url": checked})
    elif tag == "pre":
        if last is not None and same_span and last["type"] == "code" and last.get("_code_language"):
            last["type"] = "pre"
            last["language"] = last.pop("_code_language")
        else:
            entities.append({"type": "pre", **base})
    elif tag == "code":
        if last is not None and same_span and last["type"] == "pre" and "language" not in last and argument:
            last["language"] = argument
        else:
            entity: dict[str, Any] = {"type": "code", **base}
            if argument:
                entity["_code_language"] = argument
            entities.append(entity)
    elif tag == "blockquote":
        entities.append({"type": "expandable_blockquote" if argument else "blockquote", **base})


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _sort_key(e: dict[str, Any]) -> tuple[int, int, int]:
    return (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50))


def _subtract(segments: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in segments:
        if hi <= a or b <= lo:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


def _fix_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Applies Telegram's nesting rules.

    Continuous entities (code, pre, links, custom emoji...) can't contain each other, so inner
    ones are dropped; blockquotes can't nest and can't straddle a continuous entity;
    bold/italic/underline/strikethrough/spoiler may nest anywhere except inside code or pre, so
    the parts inside those are cut away, and touching pieces of the same type are merged.
    (Telegram additionally splits formatting at link boundaries; that is not reproduced.)
    """
    ents = sorted((e for e in entities if e["length"] > 0), key=_sort_key)
    splittable = [e for e in ents if e["type"] in _SPLITTABLE]
    quotes = [e for e in ents if e["type"] in _BLOCKQUOTES]
    continuous = [e for e in ents if e["type"] not in _SPLITTABLE and e["type"] not in _BLOCKQUOTES]

    def non_intersecting(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        end = 0
        for e in items:
            if e["offset"] >= end:
                kept.append(e)
                end = e["offset"] + e["length"]
        return kept

    continuous = non_intersecting(continuous)
    quotes = non_intersecting(quotes)
    if quotes:

        def straddles(c: dict[str, Any]) -> bool:
            c0, c1 = c["offset"], c["offset"] + c["length"]
            for q in quotes:
                q0, q1 = q["offset"], q["offset"] + q["length"]
                if c0 < q1 and q0 < c1 and not (q0 <= c0 and c1 <= q1):
                    return True
            return False

        continuous = [c for c in continuous if not straddles(c)]

    pre_ranges = [(e["offset"], e["offset"] + e["length"]) for e in continuous if e["type"] in _PRE_LIKE]
    pieces: dict[str, list[tuple[int, int]]] = {}
    for e in splittable:
        segments = [(e["offset"], e["offset"] + e["length"])]
        for lo, hi in pre_ranges:
            segments = _subtract(segments, lo, hi)
        pieces.setdefault(e["type"], []).extend(segments)
    merged: list[dict[str, Any]] = []
    for etype, segs in pieces.items():
        segs.sort()
        current: list[int] | None = None
        for a, b in segs:
            if current is not None and a <= current[1]:
                current[1] = max(current[1], b)
                continue
            if current is not None:
                merged.append({"type": etype, "offset": current[0], "length": current[1] - current[0]})
            current = [a, b]
        if current is not None:
            merged.append({"type": etype, "offset": current[0], "length": current[1] - current[0]})
    return sorted(continuous + quotes + merged, key=_sort_key)


# Characters tdlib's strip_empty_characters turns into spaces, and ones it considers empty.
_SPACE_LIKE: Final = frozenset(
    "\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202e\u202f\u205f\u2800\u3000\ufffc"
)
_EMPTY_LIKE: Final = frozenset(" \n\u200b\u200c\u200d\u200e\u200f\u202e\ufeff\u00a0")


def _is_empty_text(text: str) -> bool:
    for ch in text:
        if ch in _SPACE_LIKE or ch in _EMPTY_LIKE or 0xE0000 <= ord(ch) <= 0xE01FF:
            continue
        return False
    return True


def finalize_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's fix_formatted_text: clean characters, fix nesting, trim blanks.

    Returns ("", []) when nothing visible is left; callers turn that into their own error.
    """
    # 1. Control characters become spaces; \r, U+2028..U+202E and a few combining marks go away.
    chars: list[str] = []
    pos_map: list[int] = []  # old UTF-16 position -> new UTF-16 position
    new16 = 0
    for ch in text:
        o = ord(ch)
        width = 2 if o > 0xFFFF else 1
        pos_map.extend([new16] * width)
        if o == 0x0D or 0x2028 <= o <= 0x202E or o in (0x0333, 0x033F, 0x030A):
            continue
        if o < 0x20 and o != 0x0A:
            ch = " "
        chars.append(ch)
        new16 += width
    pos_map.append(new16)
    moved: list[dict[str, Any]] = []
    for e in entities:
        start, end = e["offset"], e["offset"] + e["length"]
        if start < 0 or end > len(pos_map) - 1 or e["length"] <= 0:
            continue
        ne = dict(e)
        ne["offset"] = pos_map[start]
        ne["length"] = pos_map[end] - pos_map[start]
        if ne["length"] > 0:
            moved.append(ne)
    fixed = _fix_entities(moved)

    # 2. Trim: trailing blanks always, leading blanks up to the first entity.
    cleaned = "".join(chars)
    stripped_right = cleaned.rstrip(" \n")
    if not stripped_right or _is_empty_text(cleaned):
        return "", []
    end16 = _utf16_len(stripped_right)
    trimmed: list[dict[str, Any]] = []
    for e in fixed:
        if e["offset"] >= end16:
            continue
        if e["offset"] + e["length"] > end16:
            e = {**e, "length": end16 - e["offset"]}
        trimmed.append(e)
    first_entity = min((e["offset"] for e in trimmed), default=len(stripped_right))
    lead = 0
    while lead < first_entity and stripped_right[lead] in " \n":
        lead += 1
    result = stripped_right[lead:]
    for e in trimmed:
        e["offset"] -= lead
    return result, sorted(trimmed, key=_sort_key)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_ascii_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _marked_runs(text: str, marker: str, run_char: Callable[[str], bool],
                 not_after: str = "") -> Iterator[tuple[int, int]]:
    """(start, end) of each `marker` not preceded by a word character (or one of `not_after`),
    taken with the run of `run_char` characters that follows it."""
    n = len(text)
    i = 0
    while (i := text.find(marker, i)) >= 0:
        start = i
        i += 1
        if start > 0 and (_is_word(text[start - 1]) or text[start - 1] in not_after):
            continue
        while i < n and run_char(text[i]):
            i += 1
        yield start, i


def _find_auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram detects in a user's plain text: bot commands, mentions, hashtags."""
    spans: list[tuple[str, int, int]] = []
    n = len(text)
    # Bot commands: /(?<!\b|[/<>])/([a-zA-Z0-9_]{1,64})(?:@([a-zA-Z0-9_]{3,32}))?(?!\B|[/<>])
    for start, i in _marked_runs(text, "/", _is_ascii_word, not_after="/<>"):
        if not 1 <= i - start - 1 <= 64:
            continue
        if i < n and text[i] == "@":
            at_begin = i + 1
            i = at_begin
            while i < n and _is_ascii_word(text[i]):
                i += 1
            if not 3 <= i - at_begin <= 32:
                continue
        if i < n and (_is_word(text[i]) or text[i] in "/<>"):
            continue
        spans.append(("bot_command", start, i))
    # Mentions: (?<=\B)@([a-zA-Z0-9_]{2,32})(?=\b)
    for start, i in _marked_runs(text, "@", _is_ascii_word):
        if 2 <= i - start - 1 <= 32 and not (i < n and _is_word(text[i])):
            spans.append(("mention", start, i))
    # Hashtags: #, then letters/digits/_ with at least one letter, not followed by another '#'.
    for start, i in _marked_runs(text, "#", _is_word):
        body = text[start + 1:i]
        if body and len(body) <= 256 and not (i < n and text[i] == "#") and any(ch.isalpha() for ch in body):
            spans.append(("hashtag", start, i))

    # Convert code point indices to UTF-16 offsets.
    prefix = [0]
    for ch in text:
        prefix.append(prefix[-1] + (2 if ord(ch) > 0xFFFF else 1))
    entities: list[dict[str, Any]] = [
        {"type": t, "offset": prefix[a], "length": prefix[b] - prefix[a]}
        for t, a, b in sorted(spans, key=lambda s: s[1])
    ]
    kept: list[dict[str, Any]] = []
    end = 0
    for e in entities:  # detected entities never overlap
        if e["offset"] >= end:
            kept.append(e)
            end = e["offset"] + e["length"]
    return kept


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


_PATH_RE: Final = re.compile(r"/bot([^/]*)/([^/]*)")
_TOKEN_RE: Final = re.compile(r"\d+:[A-Za-z0-9_-]+")


def _decode_value(key: str, raw: str) -> Any:
    if key in _STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _unescape_form_param(value: str) -> str:
    # httpx escapes multipart parameter values the HTML5 way: '"' -> %22, control chars -> %XX.
    value = re.sub(r"%([01][0-9A-F]|22)", lambda m: chr(int(m.group(1), 16)), value)
    return value.replace("\\\\", "\\")


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, _Upload]]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise _bad("can't parse multipart/form-data: no boundary")
    delimiter = b"\r\n--" + m.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, _Upload] = {}
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, _, content = part.partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = {k.lower(): _unescape_form_param(v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', disposition)}
        field_name = params.get("name")
        if field_name is None:
            continue
        if "filename" in params:
            files[field_name] = _Upload(
                params["filename"], content, headers.get("content-type", "application/octet-stream")
            )
        else:
            fields[field_name] = content.decode("utf-8", "replace")
    return fields, files


def _decode_request(query: str, content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, _Upload]]:
    params: dict[str, Any] = {k: _decode_value(k, v) for k, v in parse_qsl(query, keep_blank_values=True)}
    files: dict[str, _Upload] = {}
    ctype = content_type.split(";")[0].strip().lower()
    if not body:
        return params, files
    if ctype == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise _bad("can't parse JSON encoded request") from None
        if not isinstance(decoded, dict):
            raise _bad("JSON object expected as request body")
        params.update(decoded)
    elif ctype == "multipart/form-data":
        fields, files = _parse_multipart(body, content_type)
        params.update({k: _decode_value(k, v) for k, v in fields.items()})
    else:  # application/x-www-form-urlencoded, PTB's usual encoding
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params.update({k: _decode_value(k, v) for k, v in pairs})
    return params, files


def _socket_closed(sock: socket.socket) -> bool:
    """True once the peer hung up; never blocks."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Server(LoopbackServer):
    request_queue_size = 128  # httpx opens many connections in a burst

    def __init__(self, api: BotAPI) -> None:
        self.api = api
        super().__init__(_Handler)


class _Handler(LoopbackHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.api._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet; every request is in BotAPI.calls


# ---------------------------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------------------------


class BotAPI:
    """The Telegram Bot API on loopback, with a world that tests drive and observe."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "vigil_test_bot",
        *,
        strict_ampersand: bool = True,
        privacy_mode: bool = False,
    ) -> None:
        if not _TOKEN_RE.fullmatch(token):
            raise ValueError(f"not a bot token: {token!r}")
        self.token = token
        self.strict_ampersand = strict_ampersand
        self.privacy_mode = privacy_mode
        self.bot_user = User(int(token.split(":")[0]), "Vigil", bot_username, is_bot=True)
        self.base_url = ""

        # One re-entrant lock guards all state; the Condition wakes long polls and wait_for.
        self._cond = threading.Condition(threading.RLock())
        self._stop_event = threading.Event()
        self._stopping = False
        self._server: _Server | None = None
        self._t0 = time.monotonic()

        self._users: dict[int, User] = {self.bot_user.id: self.bot_user}
        self._chats: dict[int, Chat] = {}
        self._messages: dict[tuple[int, int], Message] = {}
        self._sent: dict[tuple[int, int], SentMessage] = {}
        self._queries: dict[str, CallbackQuery] = {}
        self._query_ids = itertools.count(4_382_019_331_775_000_001)
        self._file_ids = itertools.count(1)
        self._files: dict[str, dict[str, Any]] = {}
        self._admin = User(999_000_001, "Group Admin", "group_admin")
        self._anonymous = User(1_087_968_824, "Group", "GroupAnonymousBot", is_bot=True)

        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._polls_waiting = 0
        self._faults: list[_Fault] = []
        self._commands_by_scope: dict[tuple[str, str], list[dict[str, Any]]] = {}

        self.calls: list[ApiCall] = []
        self.documents: list[SentDocument] = []
        self.chat_actions: list[tuple[int, int | None, str]] = []
        self.commands: list[dict[str, Any]] = []

        self._handlers: dict[str, Callable[[_Request], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "sendChatAction": self._send_chat_action,
            "sendDocument": self._send_document,
            "answerCallbackQuery": self._answer_callback_query,
            "getChat": self._get_chat,
            "close": self._close,
            "logOut": self._close,
        }
        # Telegram matches method names case-insensitively.
        self._method_names = {name.lower(): name for name in self._handlers}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> BotAPI:
        if self._server is not None:
            return self
        self._server = _Server(self)
        self.base_url = f"http://127.0.0.1:{self._server.port}/bot"
        self._server.serve_in_thread("bot-api-standin")
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()  # release long polls
        self._stop_event.set()  # release stalls
        server, self._server = self._server, None
        if server is None:
            return
        server.close()

    def __enter__(self) -> BotAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- world -------------------------------------------------------------------------------

    def add_user(self, user_id: int, first_name: str = "User", username: str | None = None) -> User:
        with self._cond:
            if user_id <= 0 or user_id == self.bot_user.id:
                raise ValueError(f"bad user id {user_id}")
            user = User(user_id, first_name, username)
            self._users[user_id] = user
            return user

    def add_private_chat(self, user: User) -> Chat:
        with self._cond:
            chat = Chat(user.id, "private", first_name=user.first_name, username=user.username)
            self._chats[user.id] = chat
            return chat

    def add_group(self, chat_id: int, title: str, supergroup: bool = False, forum: bool = False) -> Chat:
        """A group the bot is in.  Forums are always supergroups: ``forum`` implies ``supergroup``.

        Message 1 is the group's creation service message (made before the bot joined, so not
        delivered); that is also why a forum's General topic is thread 1 and real topics are >1.
        """
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._cond:
            if chat_id in self._chats:
                raise ValueError(f"chat {chat_id} exists")
            kind = "supergroup" if supergroup or forum else "group"
            chat = Chat(chat_id, kind, title=title, is_forum=forum)
            self._chats[chat_id] = chat
            self._new_message(chat, self._admin, service={f"{kind}_chat_created": True})
            return chat

    def create_topic(self, chat_id: int, name: str, creator_id: int | None = None) -> int:
        """Creates a forum topic; its thread id is the id of its creation service message."""
        with self._cond:
            chat = self._existing_chat(chat_id)
            if not chat.is_forum:
                raise ValueError(f"chat {chat_id} is not a forum")
            creator = self._users[creator_id] if creator_id is not None else self._admin
            mid = chat.last_message_id + 1
            msg = self._new_message(
                chat,
                creator,
                thread_id=mid,
                service={"forum_topic_created": {"name": name, "icon_color": 7322096}},
            )
            chat.topics[mid] = name
            self._enqueue("message", self._message_json(msg))
            return mid

    def block(self, chat_id: int) -> None:
        """The user blocked the bot (or, for a group, the bot was kicked)."""
        with self._cond:
            self._existing_chat(chat_id).blocked = True
            self._cond.notify_all()

    def unblock(self, chat_id: int) -> None:
        with self._cond:
            self._existing_chat(chat_id).blocked = False
            self._cond.notify_all()

    def delete_chat(self, chat_id: int) -> None:
        with self._cond:
            self._existing_chat(chat_id).deleted = True
            self._cond.notify_all()

    def migrate_to_supergroup(self, old_chat_id: int, new_chat_id: int) -> None:
        with self._cond:
            old = self._existing_chat(old_chat_id)
            if old.type != "group" or old.migrated_to is not None:
                raise ValueError(f"chat {old_chat_id} is not a basic group")
            if new_chat_id >= 0 or new_chat_id in self._chats:
                raise ValueError(f"bad new chat id {new_chat_id}")
            new = Chat(new_chat_id, "supergroup", title=old.title)
            self._chats[new_chat_id] = new
            m1 = self._new_message(old, self._admin, service={"migrate_to_chat_id": new_chat_id})
            m2 = self._new_message(
                new,
                self._anonymous,
                service={"migrate_from_chat_id": old_chat_id, "sender_chat": new.to_dict()},
            )
            old.migrated_to = new_chat_id
            self._enqueue("message", self._message_json(m1))
            self._enqueue("message", self._message_json(m2))

    # -- driving vigil -----------------------------------------------------------------------

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> Message:
        """A user writes ``text``; enqueues the message update and returns the message."""
        with self._cond:
            chat = self._existing_chat(chat_id)
            if chat.migrated_to is not None:
                raise ValueError(f"chat {chat_id} was migrated to {chat.migrated_to}")
            user = self._users.get(user_id)
            if user is None or user.is_bot:
                raise ValueError(f"unknown user {user_id}")
            if chat.type == "private" and chat.id != user_id:
                raise ValueError("in a private chat only its user writes")
            if thread_id == GENERAL_TOPIC_ID and chat.is_forum:
                thread_id = None
            if thread_id is not None and (not chat.is_forum or thread_id not in chat.topics):
                raise ValueError(f"no topic {thread_id} in chat {chat_id}")
            if reply_to_message_id is not None:
                target = self._messages.get((chat_id, reply_to_message_id))
                if target is None or target.deleted:
                    raise ValueError(f"no message {reply_to_message_id} in chat {chat_id}")
                if thread_id is None and chat.is_forum and target.is_topic_message:
                    thread_id = target.thread_id
            clean, _ = finalize_text(text, [])
            if not clean:
                raise ValueError("Telegram clients don't send empty messages")
            msg = self._new_message(
                chat,
                user,
                text=clean,
                entities=_find_auto_entities(clean),
                thread_id=thread_id,
                reply_to=reply_to_message_id,
            )
            if self._delivered_to_bot(chat, msg):
                self._enqueue("message", self._message_json(msg))
            return msg

    def press_button(self, chat_id: int, user_id: int, message_id: int, data: str) -> CallbackQuery:
        """A user presses the inline button with ``callback_data == data`` on a bot message."""
        with self._cond:
            msg = self._messages.get((chat_id, message_id))
            if msg is None or msg.deleted:
                raise ValueError(f"no message {message_id} in chat {chat_id}")
            if msg.from_user is not self.bot_user:
                raise ValueError(f"message {message_id} was not sent by the bot")
            rows = (msg.reply_markup or {}).get("inline_keyboard", [])
            available = [b.get("callback_data") for row in rows for b in row if "callback_data" in b]
            if data not in available:
                raise ValueError(f"message {message_id} has no button with callback_data {data!r}: {available}")
            user = self._users.get(user_id)
            if user is None or user.is_bot:
                raise ValueError(f"unknown user {user_id}")
            query_id = str(next(self._query_ids))
            query = CallbackQuery(query_id, chat_id, message_id, user_id, data, time.monotonic())
            self._queries[query.id] = query
            self._enqueue(
                "callback_query",
                {
                    "id": query.id,
                    "from": user.to_dict(),
                    "message": self._message_json(msg),
                    "chat_instance": str(abs(chat_id) * 7919 + 13),
                    "data": data,
                },
            )
            return query

    def enqueue_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Escape hatch: queue any update (``kind`` like "edited_message"); returns its id."""
        with self._cond:
            return self._enqueue(kind, payload)

    # -- observing ---------------------------------------------------------------------------

    def bot_messages(self, chat_id: int, thread_id: int | _AnyThread | None = ANY) -> list[SentMessage]:
        """Snapshots of the bot's visible text messages in a chat (None = outside any topic)."""
        with self._cond:
            return [
                copy.deepcopy(s)
                for (cid, _), s in sorted(self._sent.items())
                if cid == chat_id and not s.deleted and (thread_id is ANY or s.thread_id == thread_id)
            ]

    def history(self, chat_id: int) -> list[Message]:
        """Every message in a chat (users', bot's, service), deleted ones included, in order."""
        with self._cond:
            return [copy.deepcopy(m) for (cid, _), m in sorted(self._messages.items()) if cid == chat_id]

    def callback_query(self, query_id: str) -> CallbackQuery:
        with self._cond:
            return copy.copy(self._queries[query_id])

    def failed_calls(self, method: str | None = None) -> list[ApiCall]:
        with self._cond:
            return [c for c in self.calls if not c.ok and (method is None or c.method == method)]

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._cond:
            return len(self._updates)

    @property
    def polls_waiting(self) -> int:
        """getUpdates calls currently blocked in a long poll."""
        with self._cond:
            return self._polls_waiting

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "") -> T:
        """Re-evaluates ``predicate`` on every state change until it is truthy; returns its value.

        Blocking: call it from a test thread, or through ``asyncio.to_thread`` when the bot runs
        on the same thread's event loop (or use ``wait_for_async``).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {message or predicate!r}\n"
                        f"recent Bot API calls:\n{self._dump_calls()}"
                    )
                # A cap on the wait re-checks predicates that depend on state outside the stand-in.
                self._cond.wait(min(remaining, 0.25))

    async def wait_for_async(self, predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "") -> T:
        """``wait_for`` for code running on an event loop: waits in a worker thread."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, message)

    def wait_for_bot_text(
        self, chat_id: int, needle: str, thread_id: int | _AnyThread | None = ANY, timeout: float = 10.0
    ) -> SentMessage:
        def found() -> SentMessage | None:
            return next((s for s in self.bot_messages(chat_id, thread_id) if needle in s.text), None)

        where = "" if thread_id is ANY else f" thread {thread_id}"
        return self.wait_for(found, timeout, f"a bot message containing {needle!r} in chat {chat_id}{where}")

    # -- faults ------------------------------------------------------------------------------

    def flood(
        self, times: int = 1, retry_after: int = 1, method: str | None = None, chat_id: int | None = None
    ) -> None:
        """The next ``times`` matching calls answer 429 "Too Many Requests: retry after N"."""
        self._add_fault(_Fault("flood", times, self._fault_method(method), chat_id, retry_after=retry_after))

    def fail(self, times: int = 1, status: int = 502, method: str | None = None) -> None:
        """The next matching calls answer ``status``; 502/504 come as a proxy's HTML page."""
        self._add_fault(_Fault("fail", times, self._fault_method(method), status=status))

    def stall(self, seconds: float, times: int = 1, method: str | None = None) -> None:
        """The next matching calls take effect but their answer is held back ``seconds``."""
        self._add_fault(_Fault("stall", times, self._fault_method(method), seconds=seconds))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def _fault_method(self, method: str | None) -> str | None:
        if method is None:
            return None
        if method.lower() not in self._method_names:
            raise ValueError(f"unknown method {method!r}")
        return method.lower()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._cond:
            self._faults.append(fault)

    def _take_fault(self, method_lc: str, params: dict[str, Any]) -> _Fault | None:
        for fault in self._faults:
            if fault.method is None and method_lc == "getupdates":
                continue
            if fault.method is not None and fault.method != method_lc:
                continue
            if fault.chat_id is not None and _as_int(params.get("chat_id")) != fault.chat_id:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            return fault
        return None

    # -- internals: state --------------------------------------------------------------------

    def _existing_chat(self, chat_id: int) -> Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise ValueError(f"unknown chat {chat_id}")
        return chat

    def _new_message(
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
        self._messages[(chat.id, msg.message_id)] = msg
        self._cond.notify_all()
        return msg

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, kind: payload})
        self._cond.notify_all()
        return update_id

    def _delivered_to_bot(self, chat: Chat, msg: Message) -> bool:
        """Privacy mode: in groups only commands, mentions of the bot and replies to it arrive."""
        if not self.privacy_mode or chat.type == "private":
            return True
        text = msg.text or ""
        me = (self.bot_user.username or "").lower()
        for e in msg.entities:
            units = text.encode("utf-16-le")[2 * e["offset"] : 2 * (e["offset"] + e["length"])]
            chunk = units.decode("utf-16-le")
            if e["type"] == "bot_command" and ("@" not in chunk or chunk.lower().endswith("@" + me)):
                return True
            if e["type"] == "mention" and chunk.lower() == "@" + me:
                return True
        if msg.reply_to_message_id is not None:
            target = self._messages.get((chat.id, msg.reply_to_message_id))
            return target is not None and target.from_user is self.bot_user
        return False

    def _message_json(self, msg: Message, nested: bool = False) -> dict[str, Any]:
        chat = self._chats[msg.chat_id]
        d: dict[str, Any] = {"message_id": msg.message_id}
        if msg.from_user is not None:
            d["from"] = msg.from_user.to_dict()
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
            target = self._messages.get((msg.chat_id, reply_id)) if reply_id is not None else None
            if target is not None and not target.deleted:
                d["reply_to_message"] = self._message_json(target, nested=True)
        if msg.edit_date is not None:
            d["edit_date"] = msg.edit_date
        if msg.text is not None:
            d["text"] = msg.text
            if msg.entities:
                d["entities"] = copy.deepcopy(msg.entities)
        if msg.document is not None:
            d["document"] = dict(msg.document)
            if msg.caption:
                d["caption"] = msg.caption
                if msg.caption_entities:
                    d["caption_entities"] = copy.deepcopy(msg.caption_entities)
        if msg.reply_markup and msg.reply_markup.get("inline_keyboard"):
            d["reply_markup"] = copy.deepcopy(msg.reply_markup)
        d.update(copy.deepcopy(msg.service))
        return d

    def _dump_calls(self, last: int = 15) -> str:
        shown = ("chat_id", "message_id", "message_thread_id", "text", "caption", "action", "offset")
        lines = []
        for c in self.calls[-last:]:
            params = {}
            for k in shown:
                if k in c.params:
                    v = c.params[k]
                    params[k] = v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v
            outcome = "ok" if c.ok else f"{c.error_code} {c.description}"
            gone = " (client gone)" if c.client_gone else ""
            lines.append(f"  +{c.time - self._t0:8.3f}s {c.method} {params} -> {outcome}{gone}")
        return "\n".join(lines) or "  (none)"

    # -- internals: HTTP ---------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        if self._stopping:
            handler.close_connection = True
        try:
            body = self._read_body(handler)
        except (OSError, ValueError):
            handler.close_connection = True
            return
        parts = urlsplit(handler.path)
        status, payload, content_type = self._handle(
            parts.path,
            parts.query,
            handler.headers.get("Content-Type", ""),
            body,
            lambda: _socket_closed(handler.connection),
        )
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            if self._stopping:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:  # the client hung up; it is already recorded as such where it matters
            handler.close_connection = True

    @staticmethod
    def _read_body(handler: _Handler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _handle(
        self, path: str, query: str, content_type: str, body: bytes, client_gone: Callable[[], bool]
    ) -> tuple[int, bytes, str]:
        started = time.monotonic()
        json_type = "application/json"
        m = _PATH_RE.fullmatch(path)
        method = unquote(m.group(2)) if m else path
        params: dict[str, Any] = {}
        fault: _Fault | None = None
        status = 200
        result: Any = None
        error: _ApiError | None = None
        raw_body: bytes | None = None
        files: dict[str, _Upload] = {}
        try:
            if m is None or not m.group(2):
                raise _ApiError(404, "Not Found")
            token = unquote(m.group(1))
            if token != self.token:
                # Telegram: a malformed token is 404, a well-formed unknown one 401.
                if _TOKEN_RE.fullmatch(token):
                    raise _ApiError(401, "Unauthorized")
                raise _ApiError(404, "Not Found")
            canonical = self._method_names.get(method.lower())
            if canonical is None:
                raise _ApiError(404, "Not Found")
            method = canonical
            params, files = _decode_request(query, content_type, body)
            with self._cond:
                fault = self._take_fault(canonical.lower(), params)
            if fault is not None and fault.kind == "flood":
                raise _ApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            if fault is not None and fault.kind == "fail":
                status = fault.status
                phrase = _phrase(status)
                if status in (502, 504):
                    raw_body = _PROXY_502.replace(b"502 Bad Gateway", f"{status} {phrase}".encode())
                    error = _ApiError(status, phrase)
                else:
                    raise _ApiError(status, phrase)
            else:
                request = _Request(method, params, files, client_gone)
                if canonical == "getUpdates":
                    result = self._get_updates(request)  # takes the lock itself, to wait on it
                else:
                    with self._cond:
                        result = self._handlers[canonical](request)
        except _ApiError as e:
            error = e
            status = e.code
        except Exception as e:  # a bug in the stand-in: answer and record it rather than hang up
            traceback.print_exc()
            error = _ApiError(500, f"Internal Server Error: the stand-in failed: {e!r}")
            status = 500
        if fault is not None and fault.kind == "stall":
            self._stop_event.wait(fault.seconds)
        gone = bool(fault is not None and fault.kind == "stall" and client_gone())
        if isinstance(result, _ClientGone):
            gone, result = True, []
        with self._cond:
            self.calls.append(
                ApiCall(
                    method=method,
                    params=_loggable(params, files),
                    ok=error is None,
                    error_code=None if error is None else error.code,
                    description=None if error is None else error.description,
                    time=started,
                    duration=time.monotonic() - started,
                    http_status=status,
                    result=result,
                    client_gone=gone,
                )
            )
            self._cond.notify_all()
        if raw_body is not None:
            return status, raw_body, "text/html"
        payload = error.payload() if error is not None else {"ok": True, "result": result}
        return status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), json_type

    # -- internals: parameter helpers --------------------------------------------------------

    def _chat(self, req: _Request, *, check_block: bool = True) -> Chat:
        raw = req.params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        chat: Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username and "@" + c.username == raw), None)
        else:
            chat_id = _as_int(raw)
            chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None or chat.deleted:
            raise _bad("chat not found")
        if chat.migrated_to is not None:
            raise _bad("group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": chat.migrated_to})
        if check_block and chat.blocked:
            if chat.type == "private":
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            kind = "supergroup" if chat.type == "supergroup" else "group"
            raise _ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        return chat

    def _thread_param(self, chat: Chat, req: _Request) -> int | None:
        raw = req.params.get("message_thread_id")
        if raw is None or raw == "" or raw == 0:
            return None
        thread_id = _as_int(raw)
        # The General topic (1) must be addressed by leaving message_thread_id out.
        if thread_id is None or not chat.is_forum or thread_id not in chat.topics:
            raise _bad("message thread not found")
        return thread_id

    def _message_id(self, req: _Request) -> int:
        raw = req.params.get("message_id")
        if raw is None or raw == "":
            raise _bad("message identifier is not specified")
        mid = _as_int(raw)
        if mid is None:
            raise _bad("message identifier is not specified")
        return mid

    def _reply(self, chat: Chat, req: _Request, thread_id: int | None) -> tuple[int | None, int | None]:
        """Resolves reply_parameters (or the legacy reply_to_message_id); may pick the thread."""
        raw = req.params.get("reply_parameters")
        allow = bool(req.params.get("allow_sending_without_reply", False))
        if raw not in (None, ""):
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except ValueError:
                    raise _bad("can't parse reply parameters JSON object") from None
            if not isinstance(raw, dict) or _as_int(raw.get("message_id")) is None:
                raise _bad("can't parse reply parameters JSON object")
            mid = _as_int(raw["message_id"])
            allow = bool(raw.get("allow_sending_without_reply", allow))
            other = raw.get("chat_id")
            if other is not None and _as_int(other) != chat.id:
                raise _bad("message to be replied not found")  # cross-chat replies: not modelled
        elif req.params.get("reply_to_message_id") not in (None, "", 0):
            mid = _as_int(req.params["reply_to_message_id"])
        else:
            return None, thread_id
        target = self._messages.get((chat.id, mid)) if mid is not None else None
        if target is None or target.deleted:
            if allow:
                return None, thread_id
            raise _bad("message to be replied not found")
        if chat.is_forum:
            if thread_id is None:
                thread_id = target.thread_id  # a reply goes to the replied message's topic
            elif target.thread_id != thread_id:
                raise _bad("message to be replied not found")
        return target.message_id, thread_id

    def _format(self, raw: Any, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        mode = (parse_mode or "") if isinstance(parse_mode, str) else ""
        if entities not in (None, ""):
            parsed = self._explicit_entities(text, entities)
        elif mode.lower() == "html":
            try:
                text, parsed = parse_html(text, self.strict_ampersand)
            except HtmlParseError as e:
                raise _bad(f"can't parse entities: {e}") from None
        elif mode.lower() in ("markdown", "markdownv2"):
            raise _bad(
                f"can't parse entities: parse_mode {mode} is not supported by this stand-in; "
                "vigil must send HTML or plain text"
            )
        elif mode == "":
            parsed = []
        else:
            raise _bad("unsupported parse_mode")
        resolved: list[dict[str, Any]] = []
        for entity in parsed:
            if entity["type"] == "text_mention":
                user = self._users.get(entity["user"]["id"])
                if user is None:
                    continue  # a user the bot can't see: Telegram drops the mention
                entity = {**entity, "user": user.to_dict()}
            resolved.append(entity)
        return finalize_text(text, resolved)

    @staticmethod
    def _explicit_entities(text: str, raw: Any) -> list[dict[str, Any]]:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise _bad("can't parse entities JSON object") from None
        if not isinstance(raw, list):
            raise _bad("can't parse entities JSON object")
        length = _utf16_len(text)
        out = []
        for e in raw:
            if not isinstance(e, dict) or not isinstance(e.get("type"), str):
                raise _bad('can\'t parse MessageEntity: Field "type" must be of type String')
            offset, size = _as_int(e.get("offset")), _as_int(e.get("length"))
            if offset is None or size is None or offset < 0 or size < 0 or offset + size > length:
                raise _bad("can't parse entities: entity is out of the text")
            out.append({**e, "offset": offset, "length": size})
        return out

    def _markup(self, req: _Request) -> dict[str, Any] | None:
        raw = req.params.get("reply_markup")
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(raw, dict):
            raise _bad("object expected as reply markup")
        if "inline_keyboard" in raw:
            rows = raw["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
            for row in rows:
                for button in row:
                    _check_button(button)
            if not any(rows):
                return None  # an empty keyboard is no keyboard
            return raw
        if any(k in raw for k in ("keyboard", "remove_keyboard", "force_reply")):
            return raw
        raise _bad("can't parse reply keyboard markup JSON object")

    # -- methods -----------------------------------------------------------------------------

    def _get_me(self, req: _Request) -> Any:
        return {
            **self.bot_user.to_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_updates(self, req: _Request) -> Any:
        offset = _as_int(req.params.get("offset")) or 0
        limit = _as_int(req.params.get("limit")) or 100
        limit = max(1, min(100, limit))
        timeout = max(0.0, float(_as_int(req.params.get("timeout")) or 0))
        allowed = req.params.get("allowed_updates")
        if isinstance(allowed, str) and allowed:
            try:
                allowed = json.loads(allowed)
            except ValueError:
                raise _bad("can't parse allowed updates JSON object") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            if isinstance(allowed, list):
                self._allowed_updates = [str(a) for a in allowed]  # persists, as at Telegram
            # A newer getUpdates terminates an older waiting one with 409 Conflict.
            self._poll_generation += 1
            generation = self._poll_generation
            self._cond.notify_all()
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            self._polls_waiting += 1
            try:
                while True:
                    if req.client_gone():
                        return _ClientGone()
                    if generation != self._poll_generation:
                        # PTB cancels its poll and at once sends a final getUpdates; give the
                        # hang-up a moment to arrive so that is not mistaken for a second poller.
                        grace = time.monotonic() + 0.1
                        while time.monotonic() < grace:
                            if req.client_gone():
                                return _ClientGone()
                            self._cond.wait(0.01)
                        raise _ApiError(409, _CONFLICT)
                    ready = [u for u in self._updates if self._wanted(u)][:limit]
                    if ready or self._stopping:
                        return copy.deepcopy(ready)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    # Bounded waits notice a hung-up client (PTB cancels its poll on stop).
                    self._cond.wait(min(remaining, 0.2))
            finally:
                self._polls_waiting -= 1

    def _wanted(self, update: dict[str, Any]) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _OPT_IN_UPDATES

    def _delete_webhook(self, req: _Request) -> Any:
        if _as_bool(req.params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    def _get_webhook_info(self, req: _Request) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    @staticmethod
    def _scope_key(req: _Request) -> tuple[str, str]:
        scope = req.params.get("scope")
        if isinstance(scope, str) and scope:
            try:
                scope = json.loads(scope)
            except ValueError:
                raise _bad("can't parse BotCommandScope JSON object") from None
        if not scope:
            scope = {"type": "default"}
        lang = req.params.get("language_code") or ""
        if lang and not re.fullmatch(r"[a-z]{2}", str(lang)):
            raise _bad("Invalid language code specified")
        return json.dumps(scope, sort_keys=True), str(lang)

    def _set_my_commands(self, req: _Request) -> Any:
        raw = req.params.get("commands")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise _bad("can't parse commands JSON object") from None
        if not isinstance(raw, list):
            raise _bad("can't parse commands JSON object")
        if len(raw) > 100:
            raise _bad("too many commands")
        for c in raw:
            if not isinstance(c, dict) or not isinstance(c.get("command"), str):
                raise _bad('can\'t parse BotCommand: Field "command" must be of type String')
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]):
                raise _bad("BOT_COMMAND_INVALID")
            description = c.get("description")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(req)
        self._commands_by_scope[key] = [{"command": c["command"], "description": c["description"]} for c in raw]
        self.commands = copy.deepcopy(self._commands_by_scope[key])
        return True

    def _get_my_commands(self, req: _Request) -> Any:
        return copy.deepcopy(self._commands_by_scope.get(self._scope_key(req), []))

    def _delete_my_commands(self, req: _Request) -> Any:
        key = self._scope_key(req)
        self._commands_by_scope.pop(key, None)
        if key == (json.dumps({"type": "default"}, sort_keys=True), ""):
            self.commands = []
        return True

    def _text_checked(self, req: _Request) -> tuple[str, list[dict[str, Any]]]:
        raw = req.params.get("text")
        if raw is None or raw == "":
            raise _bad("message text is empty")
        text, entities = self._format(raw, req.params.get("parse_mode"), req.params.get("entities"))
        if not text:
            raise _bad("message text is empty")
        if _utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        return text, entities

    def _send_message(self, req: _Request) -> Any:
        chat = self._chat(req)
        thread_id = self._thread_param(chat, req)
        text, entities = self._text_checked(req)
        markup = self._markup(req)
        reply_to, thread_id = self._reply(chat, req, thread_id)
        msg = self._new_message(
            chat,
            self.bot_user,
            text=text,
            entities=entities,
            thread_id=thread_id,
            reply_to=reply_to,
            reply_markup=markup if markup and "inline_keyboard" in markup else None,
        )
        raw = req.params["text"]
        self._sent[(chat.id, msg.message_id)] = SentMessage(
            chat_id=chat.id,
            message_id=msg.message_id,
            thread_id=thread_id,
            text=text,
            raw=raw if isinstance(raw, str) else json.dumps(raw),
            parse_mode=req.params.get("parse_mode") or None,
            entities=[(e["type"], e["offset"], e["length"]) for e in entities],
            reply_markup=copy.deepcopy(markup),
            date=msg.date,
            reply_to_message_id=reply_to,
        )
        return self._message_json(msg)

    def _editable(self, req: _Request) -> tuple[Chat, Message]:
        if req.params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")  # inline messages are not modelled
        chat = self._chat(req)
        mid = self._message_id(req)
        msg = self._messages.get((chat.id, mid))
        if msg is None or msg.deleted:
            raise _bad("message to edit not found")
        if msg.from_user is not self.bot_user:
            raise _bad("message can't be edited")
        return chat, msg

    def _edit_message_text(self, req: _Request) -> Any:
        chat, msg = self._editable(req)
        if msg.text is None:
            raise _bad("there is no text in the message to edit")
        text, entities = self._text_checked(req)
        markup = self._markup(req)
        inline = markup if markup and "inline_keyboard" in markup else None
        # Leaving reply_markup out removes the keyboard, so it is part of the comparison.
        if text == msg.text and entities == msg.entities and inline == msg.reply_markup:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        msg.text, msg.entities, msg.reply_markup = text, entities, inline
        msg.edit_date = int(time.time())
        sent = self._sent.get((chat.id, msg.message_id))
        if sent is not None:
            raw = req.params["text"]
            sent.text = text
            sent.raw = raw if isinstance(raw, str) else json.dumps(raw)
            sent.parse_mode = req.params.get("parse_mode") or None
            sent.entities = [(e["type"], e["offset"], e["length"]) for e in entities]
            sent.reply_markup = copy.deepcopy(inline)
            sent.edits += 1
        self._cond.notify_all()
        return self._message_json(msg)

    def _edit_message_reply_markup(self, req: _Request) -> Any:
        chat, msg = self._editable(req)
        markup = self._markup(req)
        inline = markup if markup and "inline_keyboard" in markup else None
        if inline == msg.reply_markup:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        msg.reply_markup = inline
        msg.edit_date = int(time.time())
        sent = self._sent.get((chat.id, msg.message_id))
        if sent is not None:
            sent.reply_markup = copy.deepcopy(inline)
            sent.edits += 1
        self._cond.notify_all()
        return self._message_json(msg)

    def _delete_one(self, chat: Chat, mid: int) -> None:
        msg = self._messages.get((chat.id, mid))
        if msg is None or msg.deleted:
            raise _bad("message to delete not found")
        if msg.from_user is not self.bot_user and chat.type != "private":
            raise _bad("message can't be deleted for everyone")  # the bot is no admin here
        msg.deleted = True
        sent = self._sent.get((chat.id, mid))
        if sent is not None:
            sent.deleted = True
        self._cond.notify_all()

    def _delete_message(self, req: _Request) -> Any:
        chat = self._chat(req)
        self._delete_one(chat, self._message_id(req))
        return True

    def _delete_messages(self, req: _Request) -> Any:
        chat = self._chat(req)
        ids = req.params.get("message_ids")
        if isinstance(ids, str):
            try:
                ids = json.loads(ids)
            except ValueError:
                ids = None
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message identifiers are not specified")
        for mid in ids:
            # Telegram skips messages it can't delete.
            with contextlib.suppress(_ApiError, ValueError, TypeError):
                self._delete_one(chat, int(mid))
        return True

    def _send_chat_action(self, req: _Request) -> Any:
        chat = self._chat(req)
        thread_id = self._thread_param(chat, req)
        action = req.params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self.chat_actions.append((chat.id, thread_id, str(action)))
        self._cond.notify_all()
        return True

    def _send_document(self, req: _Request) -> Any:
        chat = self._chat(req)
        thread_id = self._thread_param(chat, req)
        upload = req.files.get("document")
        if upload is None:
            ref = req.params.get("document")
            if ref in (None, ""):
                raise _bad("there is no document in the request")
            known = self._files.get(str(ref))
            if known is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            upload = _Upload(known["file_name"], known["_content"], known["mime_type"])
        if not upload.content:
            raise _bad("file must be non-empty")
        if len(upload.content) > MAX_UPLOAD_BYTES:
            raise _ApiError(413, "Request Entity Too Large")
        caption_raw = req.params.get("caption")
        caption: str = ""
        caption_entities: list[dict[str, Any]] = []
        if caption_raw not in (None, ""):
            caption, caption_entities = self._format(
                caption_raw, req.params.get("parse_mode"), req.params.get("caption_entities")
            )
            if _utf16_len(caption) > MAX_CAPTION_LENGTH:
                raise _bad("message caption is too long")
        markup = self._markup(req)
        reply_to, thread_id = self._reply(chat, req, thread_id)
        number = next(self._file_ids)
        file_id = f"BQACAgIAAxkBAAI{number:08d}standin"
        document = {
            "file_id": file_id,
            "file_unique_id": f"AgAD{number:08d}",
            "file_name": upload.filename,
            "mime_type": upload.content_type,
            "file_size": len(upload.content),
        }
        self._files[file_id] = {**document, "_content": upload.content}
        msg = self._new_message(
            chat,
            self.bot_user,
            thread_id=thread_id,
            reply_to=reply_to,
            reply_markup=markup if markup and "inline_keyboard" in markup else None,
        )
        msg.document = document
        msg.caption = caption or None
        msg.caption_entities = caption_entities
        self.documents.append(
            SentDocument(
                chat_id=chat.id,
                thread_id=thread_id,
                filename=upload.filename,
                content=upload.content,
                caption=caption or None,
                message_id=msg.message_id,
                mime_type=upload.content_type,
                raw_caption=caption_raw if isinstance(caption_raw, str) else None,
                parse_mode=req.params.get("parse_mode") or None,
            )
        )
        return self._message_json(msg)

    def _answer_callback_query(self, req: _Request) -> Any:
        query = self._queries.get(str(req.params.get("callback_query_id") or ""))
        if query is None:
            raise _bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        text = req.params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        query.answer_text = text if isinstance(text, str) else None
        query.show_alert = _as_bool(req.params.get("show_alert"))
        self._cond.notify_all()
        return True

    def _get_chat(self, req: _Request) -> Any:
        chat = self._chat(req, check_block=False)
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

    def _close(self, req: _Request) -> Any:
        return True


class _ClientGone:
    """Marker result: the long poll's client hung up before anything arrived."""


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise _bad("can't parse inline keyboard button: InlineKeyboardButton should be an Object")
    if not isinstance(button.get("text"), str):
        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
    if not any(kind in button for kind in _BUTTON_KINDS):
        raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise _bad("BUTTON_DATA_INVALID")
    if "url" in button and (not isinstance(button["url"], str) or _checked_link(button["url"]) is None):
        raise _bad("BUTTON_URL_INVALID")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Error"


def _loggable(params: dict[str, Any], files: dict[str, _Upload]) -> dict[str, Any]:
    logged = dict(params)
    for name, upload in files.items():
        logged[name] = {
            "filename": upload.filename,
            "size": len(upload.content),
            "mime_type": upload.content_type,
        }
    return logged
