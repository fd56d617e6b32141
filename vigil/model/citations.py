"""Citations as links in the reply's text: the cited words, then `[1]` linked to the page they came from.

A text block the model wrote from search results carries `citations` (each with the page's `url` and
`title`). The reply's Markdown gets, right after such a block, one `[[n]](<url>)` per page it cites:
Telegram's renderer makes that a link (within its length and HTML rules: it is ordinary Markdown),
the console shows the URL as written. Pages are numbered in the order a model call first cites them.
The same marks are streamed (at the end of each cited block) and written into the final text, so the
reply shown while it streams is always a prefix of the final one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# A URL that can sit inside <...> of a Markdown link as is, and that Telegram opens.
_LINKABLE = re.compile(r"https?://[^\s<>\\]+", re.IGNORECASE)


def cite_marks(text: str, citations: Iterable[Any], numbers: dict[str, int]) -> str:
    """The marks to put after a cited block's `text` (`numbers`: url -> its number in this call, grown)."""
    links: list[str] = []
    for citation in citations:
        url = citation.get("url") if isinstance(citation, Mapping) else getattr(citation, "url", None)
        if not isinstance(url, str) or not _LINKABLE.fullmatch(url):
            continue
        number = numbers.setdefault(url, len(numbers) + 1)
        link = f"[[{number}]](<{url}>)"
        if link not in links:
            links.append(link)
    if not links:
        return ""
    return ("" if not text or text[-1].isspace() else " ") + "".join(links)


def reply_text(content: Iterable[Mapping[str, Any]]) -> str:
    """The text of an assistant message's blocks, cited blocks followed by their links."""
    numbers: dict[str, int] = {}
    parts: list[str] = []
    for block in content:
        if block.get("type") != "text":
            continue
        text = str(block.get("text", ""))
        parts.append(text + cite_marks(text, block.get("citations") or (), numbers))
    return "".join(parts)
