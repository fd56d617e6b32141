"""The entities Telegram detects in the plain text a user types: bot commands, mentions, hashtags.

A message from a user arrives at the bot with these already marked, and privacy mode decides on them
which group messages the bot may see, so the stand-in has to find them where Telegram does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


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


def find_auto_entities(text: str) -> list[dict[str, Any]]:
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
