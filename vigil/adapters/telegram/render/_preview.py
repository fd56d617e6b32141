"""The plain-text preview of a reply that is still streaming, and where such a reply may be cut.

Edited into one message (or drafted) many times a second, so it renders only the tail that can
be shown and never fails: too long becomes "…" plus the end, nothing visible becomes "…".
A draft holds one message at most, so a drafted reply that outgrows it has its beginning sent
for good at a place (`settled_cut`) where what follows cannot change how that beginning reads.
"""

from __future__ import annotations

import re
from typing import Final

from vigil.adapters.telegram.render._measure import (
    TELEGRAM_TEXT_LIMIT,
    has_visible,
    joins_previous,
    utf16_len,
    visible_text,
)
from vigil.adapters.telegram.render._renderer import markdown_to_html

_ELLIPSIS: Final = "…"

_FENCE_LINE_RE: Final = re.compile(r"^(?:[ \t]*>)*[ \t]*(`{3,}|~{3,})([^\r\n]*)$", re.MULTILINE)


def _open_fence_before(markdown: str, pos: int) -> str | None:
    """The opening line of a fenced block still open at ``pos`` (approximate, for previews)."""
    opened: tuple[str, int, str] | None = None
    for match in _FENCE_LINE_RE.finditer(markdown, 0, pos):
        run, info = match.group(1), match.group(2)
        if opened is None:
            if not (run[0] == "`" and "`" in info):
                opened = (run[0], len(run), match.group(0).rstrip())
        elif run[0] == opened[0] and len(run) >= opened[1] and not info.strip():
            opened = None
    return opened[2] if opened else None


def preview_text(markdown: str, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    """Plain text for a streaming preview: the rendered tail that fits, never empty.

    When the reply no longer fits, the preview is "…" followed by as much of its end as
    fits, starting at a line (or at least a word) boundary.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    source = markdown
    truncated = False
    window = 2 * limit
    if len(source) > 2 * window:
        # Rendering a long reply on every edit is wasted work: only its tail is shown.
        cut = source.rfind("\n", 0, len(source) - window) + 1
        if cut > 0:
            opener = _open_fence_before(source, cut)
            source = (opener + "\n" if opener else "") + source[cut:]
            truncated = True
    shown = visible_text(markdown_to_html(source)).strip()
    if not has_visible(shown):
        return _ELLIPSIS
    if not truncated and utf16_len(shown) <= limit:
        return shown
    budget = limit - utf16_len(_ELLIPSIS)
    start = len(shown)
    used = 0
    while start > 0:
        cost = 2 if ord(shown[start - 1]) > 0xFFFF else 1
        if used + cost > budget:
            break
        used += cost
        start -= 1
    if start > 0:
        # Start at a line, or at least a word, if that does not throw away too much.
        slack = max(1, (len(shown) - start) // 4)
        newline = shown.find("\n", start - 1, start + slack)
        if newline >= 0:
            start = newline + 1
        elif not shown[start - 1].isspace():
            space = next((i for i in range(start, min(len(shown), start + slack)) if shown[i].isspace()), -1)
            if space >= 0:
                start = space + 1
        while start < len(shown) and joins_previous(shown, start):
            start += 1
    tail = shown[start:].strip()
    if not has_visible(tail):
        return _ELLIPSIS
    return _ELLIPSIS + tail


_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")
_LINE_BREAK_RE: Final = re.compile(r"\n")


def _fits(markdown: str, limit: int) -> bool:
    """One message whichever way it goes: its source (the plain fallback) and its rendering fit."""
    if utf16_len(markdown) > limit:
        return False
    shown = visible_text(markdown_to_html(markdown))
    return has_visible(shown) and utf16_len(shown) <= limit


def settled_cut(markdown: str, limit: int = TELEGRAM_TEXT_LIMIT) -> int:
    """Where a reply still being written may be cut so that the part before it is sent for good.

    0 while the whole reply still renders within ``limit``. Past it: the source offset just after
    the last blank line (else the last line break) outside a code block before which the reply fits
    in one message, so the part before it reads the same however the rest turns out. 0 too when there
    is no such place (one block longer than a message): the preview then shows the tail, and the
    final split cuts that block as it does any other.
    """
    if _fits(markdown, limit):
        return 0
    for pattern in (_BLANK_LINE_RE, _LINE_BREAK_RE):
        places = [m.end() for m in pattern.finditer(markdown)]
        # Latest first: the first place that fits leaves the least for the next message.
        for place in reversed(places):
            if utf16_len(markdown[:place]) > limit or _open_fence_before(markdown, place) is not None:
                continue
            if _fits(markdown[:place], limit):
                return place
    return 0
