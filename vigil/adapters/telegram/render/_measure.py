"""Measuring text the way Telegram (and a phone showing it) does.

Telegram counts its 4096-character limit in UTF-16 code units *after* entity parsing, so a
chunk is measured on its displayed text; it refuses a message with nothing visible in it,
so "blank" here means Telegram's blank (whitespace, control and format characters), not
Python's.  Cuts must fall between user-perceived characters, and monospace tables need
column widths as a phone draws them.  Everything above this module measures through it,
so these rules live in one place.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# The most a message may show, in UTF-16 code units after entity parsing.
TELEGRAM_TEXT_LIMIT: int = 4096

_NONSPACE_RE: Final = re.compile(r"\S")
_TAG_RE: Final = re.compile(r"<[^>]*>")
_ENTITY_RE: Final = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));")

_NAMED_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

# Characters that do not make a message non-empty for Telegram: it strips whitespace and
# control characters, and a message of nothing but zero-width or format characters shows
# as blank.  A chunk must contain at least one character outside this set.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf"})
_INVISIBLE_EXTRA: Final = frozenset(
    [chr(c) for c in range(0xFE00, 0xFE10)] + ["\u034f", "\u115f", "\u1160", "\u3164", "\uffa0"]
)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram's limits are counted in."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _decode_entity(match: re.Match[str]) -> str:
    dec, hexa, name = match.groups()
    if name is not None:
        return _NAMED_ENTITIES[name]
    code = int(dec) if dec is not None else int(hexa, 16)
    if code > 0x10FFFF:
        return match.group(0)
    return chr(code)


def visible_text(html: str) -> str:
    """The text Telegram displays for ``html``: tags removed, entities decoded.

    Telegram decodes numeric entities and only the four named ones we emit; any other
    ``&name;`` would be shown literally, so it is left alone here as well.
    """
    return _ENTITY_RE.sub(_decode_entity, _TAG_RE.sub("", html))


def _is_visible_char(ch: str) -> bool:
    return not (ch.isspace() or ch in _INVISIBLE_EXTRA or unicodedata.category(ch) in _INVISIBLE_CATEGORIES)


def first_visible(text: str, start: int = 0) -> int:
    """Index of the first character at or after ``start`` that Telegram would display, or -1."""
    for match in _NONSPACE_RE.finditer(text, start):
        if _is_visible_char(match.group()):
            return match.start()
    return -1


def has_visible(text: str) -> bool:
    """Whether Telegram would show anything of ``text`` (it refuses a message that shows nothing)."""
    return first_visible(text) >= 0


def joins_previous(text: str, index: int) -> bool:
    """Whether cutting right before ``text[index]`` would break a user-perceived character."""
    if index <= 0 or index >= len(text):
        return False
    ch, prev = text[index], text[index - 1]
    if prev == "\r" and ch == "\n":
        return True
    if ch == "\u200d" or prev == "\u200d":
        return True  # zero-width joiner sequences (family emoji and the like)
    code = ord(ch)
    if (
        0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag sequences (subdivision flags)
    ):
        return True
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Mc"):
        return True
    if 0x1F1E6 <= code <= 0x1F1FF and 0x1F1E6 <= ord(prev) <= 0x1F1FF:
        # Regional indicators pair up into flags: only cut between pairs.
        run = 0
        back = index - 1
        while back >= 0 and 0x1F1E6 <= ord(text[back]) <= 0x1F1FF:
            run += 1
            back -= 1
        return run % 2 == 1
    return False


def _char_width(ch: str) -> int:
    # Marks and format characters take no column; East Asian wide and fullwidth take two.
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospace font, so table columns line up on a phone."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)
