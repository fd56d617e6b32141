"""The plain-text preview of a reply that is still streaming.

Edited into one message many times a second, so it renders only the tail that can be
shown and never fails: too long becomes "…" plus the end, nothing visible becomes "…".
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
