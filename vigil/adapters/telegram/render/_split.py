"""Splitting a reply into Telegram messages that always deliver.

Cuts the source (``_layout``), renders each piece (from the one whole-reply parse when it
is made of whole lines), and checks the rendered length: a piece that still does not fit
is cut again, and as a last resort it is sent as escaped plain text, which always fits.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from vigil.adapters.telegram.render._escape import escape
from vigil.adapters.telegram.render._layout import Layout
from vigil.adapters.telegram.render._measure import TELEGRAM_TEXT_LIMIT, has_visible, utf16_len, visible_text
from vigil.adapters.telegram.render._parse import parse
from vigil.adapters.telegram.render._renderer import Renderer, markdown_to_html

# How often a chunk that renders longer than the limit is cut again before we give up and
# send it as escaped plain text.
_MAX_RESPLITS: Final = 3


class Chunk(NamedTuple):
    """One Telegram message: ``html`` for parse_mode=HTML, ``plain`` to send as-is if refused."""

    html: str
    plain: str


def _split(markdown: str, cut_limit: int, limit: int, attempt: int) -> list[Chunk]:
    tokens = parse(markdown)
    renderer = Renderer(tokens) if tokens is not None else None
    layout = Layout(markdown, tokens or ())
    chunks: list[Chunk] = []
    for piece in layout.cut(cut_limit):
        html: str | None = None
        if renderer is not None and piece.lines is not None:
            try:
                html = renderer.render(*piece.lines)
            except Exception:  # same safety net as markdown_to_html
                html = None
        if html is None:
            # Cut inside a line, or a block that cannot be sliced: parse the piece itself
            # (its fence lines are re-added, so it renders correctly on its own).
            html = markdown_to_html(piece.text)
        shown = visible_text(html)
        shown_len = utf16_len(shown)
        if shown_len <= limit and has_visible(shown):
            chunks.append(Chunk(html, piece.text))
            continue
        plain_len = utf16_len(piece.text)
        smaller = plain_len * limit // max(shown_len, 1) * 9 // 10
        if has_visible(shown) and attempt < _MAX_RESPLITS and 2 <= smaller < plain_len:
            # Rendering made it longer (padded tables, renumbered lists): cut this piece
            # again with a proportionally smaller budget for the source.
            chunks.extend(_split(piece.text, smaller, limit, attempt + 1))
        else:
            # Escaped source always renders to exactly itself, which fits and is non-empty.
            chunks.append(Chunk(escape(piece.text), piece.text))
    return chunks


def _check_limit(limit: int) -> None:
    if limit < 2:
        # Below 2 UTF-16 units a single emoji cannot be sent at all.
        raise ValueError(f"limit must be at least 2, got {limit}")


def split_for_telegram(markdown: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[Chunk]:
    """Split model Markdown into Telegram messages of at most ``limit`` UTF-16 units.

    Every chunk's ``html`` is balanced Telegram HTML whose displayed text fits ``limit``,
    and its ``plain`` (the Markdown source of the chunk, plus re-added fence lines) fits too;
    neither is blank.  An input with nothing visible in it gives an empty list.
    """
    _check_limit(limit)
    if not has_visible(markdown):
        return []  # nothing Telegram would show; skip parsing a wall of blank lines
    return _split(markdown, limit, limit, 0)
