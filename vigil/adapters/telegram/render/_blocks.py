"""The building blocks of block-level output: tables, code blocks and containers.

Telegram has no tables, lists or nested quotes, so each is laid out here as text (a
monospace table, marked and indented list items, one flat blockquote).  Kept apart from
the token walk in ``_renderer`` so that walk reads as control flow and this as layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from markdown_it.common.utils import unescapeAll
from markdown_it.token import Token

from vigil.adapters.telegram.render._escape import escape
from vigil.adapters.telegram.render._measure import display_width, has_visible

_PRE_SPLIT_RE: Final = re.compile(r"(<pre>.*?</pre>)", re.DOTALL)
_LANG_RE: Final = re.compile(r"[A-Za-z0-9_+#.\-]{1,40}")


class Table:
    """Collects a GFM table and lays it out as monospace text (Telegram has no tables)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.aligns: list[str] = []
        self.header_rows = 0

    def add_row(self, header: bool) -> None:
        self.rows.append([])
        if header:
            self.header_rows += 1

    def add_align(self, tok: Token) -> None:
        self.aligns.append(str(tok.attrs.get("style", "")).removeprefix("text-align:"))

    def add_cell(self, text: str) -> None:
        if not self.rows:
            self.add_row(False)
        self.rows[-1].append(" ".join(text.split("\n")).strip())

    def render(self) -> str:
        rows = [row for row in self.rows if row]
        if not rows:
            return ""
        ncols = max(len(row) for row in rows)
        rows = [row + [""] * (ncols - len(row)) for row in rows]
        widths = [max(1, *(display_width(row[col]) for row in rows)) for col in range(ncols)]
        aligns = self.aligns + [""] * (ncols - len(self.aligns))

        def pad(text: str, col: int) -> str:
            gap = widths[col] - display_width(text)
            if aligns[col] == "right":
                return " " * gap + text
            if aligns[col] == "center":
                return " " * (gap // 2) + text + " " * (gap - gap // 2)
            return text + " " * gap

        aligned = [" | ".join(pad(cell, col) for col, cell in enumerate(row)).rstrip() for row in rows]
        compact = [" | ".join(row).rstrip() for row in rows]
        if self.header_rows:
            aligned.insert(self.header_rows, "-+-".join("-" * width for width in widths))
            compact.insert(self.header_rows, "---")
        aligned_text, compact_text = "\n".join(aligned), "\n".join(compact)
        # Padding a table with one very long cell can multiply its length; a big table that
        # more than doubles is unreadable on a phone anyway, so give up on alignment.
        grown = len(aligned_text) > max(2 * len(compact_text), len(compact_text) + 512)
        text = compact_text if grown else aligned_text
        return f"<pre>{escape(text)}</pre>" if has_visible(text) else ""


def code_html(content: str, lang: str) -> str:
    content = content.rstrip()
    if not has_visible(content):
        return ""  # an empty <pre> is an empty entity; there is nothing to show anyway
    if lang:
        return f'<pre><code class="language-{lang}">{escape(content)}</code></pre>'
    return f"<pre>{escape(content)}</pre>"


def code_lang(tok: Token) -> str:
    if tok.type != "fence":
        return ""
    info = unescapeAll(tok.info).strip()
    lang = info.split(maxsplit=1)[0] if info else ""
    # The language lands in an attribute; anything unusual is simply dropped.
    return lang if _LANG_RE.fullmatch(lang) else ""


def _indent(html: str, pad: str) -> str:
    """Indent continuation lines of a list item, leaving code blocks untouched."""
    if "\n" not in html:
        return html
    if "<pre>" not in html:
        return html.replace("\n", "\n" + pad)
    parts = _PRE_SPLIT_RE.split(html)
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("\n", "\n" + pad)
    return "".join(parts)


class Frame:
    """A container being rendered: the document, a blockquote, a list or a list item."""

    __slots__ = ("blocks", "continued", "kind", "marker", "number", "ordered")

    def __init__(
        self,
        kind: str,
        *,
        ordered: bool = False,
        number: int = 1,
        marker: str = "",
        continued: bool = False,
    ) -> None:
        self.kind = kind
        self.blocks: list[str] = []
        self.ordered = ordered
        self.number = number
        self.marker = marker
        # A list item whose first line belongs to the previous message: no marker again.
        self.continued = continued

    def add(self, block: str) -> None:
        if block:
            self.blocks.append(block)


def close_frame(frame: Frame, parent_chain: Sequence[Frame]) -> str:
    if frame.kind == "list":
        return "\n".join(frame.blocks)
    if frame.kind == "item":
        marker = frame.marker
        if not frame.blocks:
            return "" if frame.continued else marker.rstrip()
        body = "\n".join(frame.blocks)
        pad = " " * len(marker)
        if body.startswith("<pre>"):
            # Keep code flush left: the marker gets its own line.
            return ("" if frame.continued else marker.rstrip() + "\n") + _indent(body, pad)
        return (pad if frame.continued else marker) + _indent(body, pad)
    if frame.kind == "quote":
        body = "\n\n".join(frame.blocks)
        if not body:
            return ""
        # Telegram cannot nest blockquotes: an inner quote becomes part of the outer one.
        if any(outer.kind == "quote" for outer in parent_chain):
            return body
        return f"<blockquote>{body}</blockquote>"
    return "\n\n".join(frame.blocks)
