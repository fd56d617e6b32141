"""Markdown from the model → Telegram HTML messages that Telegram always accepts.

Claude answers in Markdown (CommonMark plus GFM tables and strikethrough).  Telegram
understands only a small HTML subset and rejects a whole message with 400 "can't parse
entities" on the first unknown tag, unbalanced tag or unescaped ``<``/``&``; it also refuses
empty messages and anything longer than 4096 characters *after* entity parsing, counted in
UTF-16 code units.  This module turns model text into messages that survive all of that:

* ``markdown_to_html`` parses with markdown-it-py (raw HTML passthrough disabled, so the
  model's ``<tag>`` text stays text) and renders the token stream into Telegram's subset
  itself, so every tag we emit comes from a short allow-list and is closed in order.
* ``split_for_telegram`` cuts the *Markdown source* into chunks (between top-level blocks
  first, then between nested blocks and lines, then at whitespace, then a hard cut that
  never splits a character), closing and re-opening fenced code blocks that straddle a
  cut.  Each chunk is rendered from the one whole-reply parse (sliced to its lines, so a
  long reply is parsed once) or, when a cut falls inside a line, by parsing the chunk on
  its own.  The rendered length is then checked: a chunk that still does not fit is cut
  again, and as a last resort it is sent as escaped plain text, which always fits.
* ``preview_text`` gives the plain-text tail of a reply that is still streaming.

``visible_text`` and ``utf16_len`` measure text the way Telegram does.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Final, NamedTuple

from markdown_it import MarkdownIt
from markdown_it.common.utils import unescapeAll
from markdown_it.token import Token

__all__ = [
    "TELEGRAM_TEXT_LIMIT",
    "Chunk",
    "markdown_to_html",
    "preview_text",
    "split_for_telegram",
    "utf16_len",
    "visible_text",
]

TELEGRAM_TEXT_LIMIT: int = 4096

# markdown-it silently *drops* the rest of a block once nesting passes maxNesting (see
# ParserBlock.tokenize).  We raise the limit well above anything a model writes and treat
# a parse that came close to it as unusable (the text is then sent as escaped plain text)
# rather than lose words.
_MAX_NESTING: Final = 100

# Raw HTML is off twice over: the option, and its rules are not even run (the model's
# "<tag>" text must come out as text).  text_join only merges tokens we render the same
# way anyway; skipping it saves a pass over every inline token.
_MD: Final = (
    MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False, "maxNesting": _MAX_NESTING},
    )
    .enable(["strikethrough", "table"])
    .disable(["html_block", "html_inline", "text_join"])
)

# How often a chunk that renders longer than the limit is cut again before we give up and
# send it as escaped plain text.
_MAX_RESPLITS: Final = 3

_ELLIPSIS: Final = "…"
_HR: Final = "———"
_BULLET: Final = "• "

_NEWLINE_RE: Final = re.compile(r"\r\n?|\n")
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")
_WS_RE: Final = re.compile(r"\s*")
_HSPACE_RE: Final = re.compile(r"[^\S\r\n]*")
_NONSPACE_RE: Final = re.compile(r"\S")
_TAG_RE: Final = re.compile(r"<[^>]*>")
_ENTITY_RE: Final = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));")
_PRE_SPLIT_RE: Final = re.compile(r"(<pre>.*?</pre>)", re.DOTALL)
_LANG_RE: Final = re.compile(r"[A-Za-z0-9_+#.\-]{1,40}")
# What Markdown reads as the start of a block when it begins a line.
_BLOCK_START_RE: Final = re.compile(r"[#>|=]|[-*+_](?:\s|[-*_]{2})|`{3}|~{3}|\d{1,9}[.)](?:\s|$)|$")
_NAMED_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

# Only schemes Telegram turns into working links; anything else is shown as text.
_LINK_RE: Final = re.compile(r"(?:https?://[^\s/?#]+\S*|tg://[A-Za-z0-9_]+\S*|mailto:[^\s@]+@[^\s@]+)", re.IGNORECASE)

# Characters that do not make a message non-empty for Telegram: it strips whitespace and
# control characters, and a message of nothing but zero-width or format characters shows
# as blank.  A chunk must contain at least one character outside this set.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf"})
_INVISIBLE_EXTRA: Final = frozenset(
    [chr(c) for c in range(0xFE00, 0xFE10)] + ["\u034f", "\u115f", "\u1160", "\u3164", "\uffa0"]
)


class Chunk(NamedTuple):
    """One Telegram message: ``html`` for parse_mode=HTML, ``plain`` to send as-is if refused."""

    html: str
    plain: str


# ---------------------------------------------------------------------------------------
# measuring


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


def _first_visible(text: str, start: int = 0) -> int:
    """Index of the first character at or after ``start`` that Telegram would display, or -1."""
    for match in _NONSPACE_RE.finditer(text, start):
        if _is_visible_char(match.group()):
            return match.start()
    return -1


def _has_visible(text: str) -> bool:
    return _first_visible(text) >= 0


# ---------------------------------------------------------------------------------------
# escaping


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return _escape(text).replace('"', "&quot;")


# ---------------------------------------------------------------------------------------
# parsing


def _parse(markdown: str) -> list[Token] | None:
    """markdown-it tokens, or None when the parse cannot be trusted to keep every word."""
    try:
        tokens = _MD.parse(markdown)
    except Exception:  # a reply must still go out even if the parser trips over it
        return None
    # A block opened this deep means markdown-it may have skipped the rest of its content.
    if any(tok.nesting == 1 and tok.level >= _MAX_NESTING - 1 for tok in tokens):
        return None
    return tokens


# ---------------------------------------------------------------------------------------
# rendering: inline


def _link_allowed(href: str) -> bool:
    return _LINK_RE.fullmatch(href) is not None


def _display_url(href: str) -> str:
    # Undo markdown-it's percent-encoding so a URL shown as text reads like the model wrote it.
    try:
        return _MD.normalizeLinkText(href)
    except Exception:  # malformed escapes: show the URL as stored
        return href


def _plain_inline(children: Sequence[Token] | None) -> str:
    """Inline tokens as plain text (table cells, image alt text): no tags at all."""
    parts: list[str] = []
    links: list[tuple[int, str, bool]] = []
    for tok in children or ():
        kind = tok.type
        if kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind == "image":
            parts.append(_plain_inline(tok.children) or tok.content)
        elif kind == "link_open":
            links.append((len(parts), str(tok.attrs.get("href", "")), tok.info == "auto"))
        elif kind == "link_close" and links:
            # No link can be clicked here, so the URL is part of the text.
            at, href, auto = links.pop()
            shown = _display_url(href)
            if not "".join(parts[at:]).strip():
                parts.append(shown)
            elif not auto and shown:
                parts.append(f" ({shown})")
        elif tok.content:
            parts.append(tok.content)
    return "".join(parts)


_FORMATTING_TOKENS: Final = frozenset(
    ["em_open", "em_close", "strong_open", "strong_close", "s_open", "s_close", "link_open", "link_close"]
)


class _LinkState(NamedTuple):
    active: bool  # rendered as <a>
    href: str
    auto: bool  # <http://...> autolink: the text already is the URL
    visible_at_open: int


class _InlineWriter:
    """Renders one inline token stream.

    Formatting tags are opened lazily, right before the text they apply to, and closed and
    reopened around inline code.  That keeps the output free of empty entities and never
    puts <code> inside <b>/<i>/<s> (Telegram does not allow code to be part of other
    entities); inside a link, code is shown as plain text for the same reason.
    """

    def __init__(self, base: Sequence[str] = ()) -> None:
        self.out: list[str] = []
        self.desired: list[tuple[str, str]] = [(name, f"<{name}>") for name in base]
        self.emitted: list[tuple[str, str]] = []
        self.links: list[_LinkState] = []
        self.visible = 0

    # -- tag bookkeeping

    def _target(self) -> list[tuple[str, str]]:
        # Nested duplicates (bold inside a bold heading) collapse into the outer tag.
        seen: set[str] = set()
        target: list[tuple[str, str]] = []
        for name, opening in self.desired:
            if name not in seen:
                seen.add(name)
                target.append((name, opening))
        return target

    def _sync(self, target: list[tuple[str, str]]) -> None:
        keep = 0
        while keep < len(target) and keep < len(self.emitted) and target[keep] == self.emitted[keep]:
            keep += 1
        for name, _ in reversed(self.emitted[keep:]):
            self.out.append(f"</{name}>")
        for _, opening in target[keep:]:
            self.out.append(opening)
        self.emitted = list(target)

    def _push(self, name: str, opening: str) -> None:
        self.desired.append((name, opening))

    def _pop(self, name: str) -> None:
        for index in range(len(self.desired) - 1, -1, -1):
            if self.desired[index][0] == name:
                del self.desired[index]
                return

    def _in_link(self) -> bool:
        return any(name == "a" for name, _ in self.desired)

    # -- output

    def text(self, content: str) -> None:
        if not content:
            return
        if content.isspace():
            # Whitespace alone is not worth opening a tag for, but tags that have ended
            # must close first so "**a** b" does not come out as "<b>a </b>b".
            target = self._target()
            keep = 0
            while keep < min(len(target), len(self.emitted)) and target[keep] == self.emitted[keep]:
                keep += 1
            self._sync(self.emitted[:keep])
            self.out.append(_escape(content))
            return
        self._sync(self._target())
        self.out.append(_escape(content))
        self.visible += len(content)

    def code(self, content: str) -> None:
        if self._in_link():
            self.text(content)
            return
        if not content:
            return
        self._sync([])
        self.out.append(f"<code>{_escape(content)}</code>")
        self.visible += len(content)

    def link_open(self, tok: Token) -> None:
        href = str(tok.attrs.get("href", ""))
        auto = tok.info == "auto"
        active = _link_allowed(href) and not self._in_link()
        if active:
            self._push("a", f'<a href="{_escape_attr(href)}">')
        self.links.append(_LinkState(active, href, auto, self.visible))

    def link_close(self) -> None:
        if not self.links:
            return
        state = self.links.pop()
        empty = self.visible == state.visible_at_open
        if state.active:
            if empty:
                self.text(_display_url(state.href))
            self._pop("a")
        elif empty:
            self.text(_display_url(state.href))
        elif not state.auto and state.href:
            self.text(f" ({_display_url(state.href)})")

    def image(self, tok: Token) -> None:
        alt = _plain_inline(tok.children) or tok.content
        src = str(tok.attrs.get("src", ""))
        if self._in_link():
            self.text(alt)
        elif _link_allowed(src):
            self._push("a", f'<a href="{_escape_attr(src)}">')
            self.text(alt or _display_url(src))
            self._pop("a")
        else:
            shown = _display_url(src)
            self.text(f"{alt} ({shown})" if alt and shown else alt or shown)

    def feed(self, tok: Token) -> None:
        kind = tok.type
        if kind in ("softbreak", "hardbreak"):
            self.text("\n")
        elif kind == "code_inline":
            self.code(tok.content)
        elif kind in ("em_open", "strong_open", "s_open"):
            name = {"em_open": "i", "strong_open": "b", "s_open": "s"}[kind]
            self._push(name, f"<{name}>")
        elif kind in ("em_close", "strong_close", "s_close"):
            self._pop({"em_close": "i", "strong_close": "b", "s_close": "s"}[kind])
        elif kind == "link_open":
            self.link_open(tok)
        elif kind == "link_close":
            self.link_close()
        elif kind == "image":
            self.image(tok)
        else:
            # text, text_special, html_inline (only if html were ever enabled) and anything
            # a future markdown-it adds: show its content as text rather than lose it.
            self.text(tok.content)

    def restart(self) -> None:
        """Drop the output so far but keep what is open (see _slice_inline)."""
        self.out = []
        self.emitted = []

    def finish(self) -> str:
        self._sync([])
        return "".join(self.out)


def _render_inline(children: Sequence[Token] | None, base: Sequence[str] = ()) -> str:
    writer = _InlineWriter(base)
    for tok in children or ():
        writer.feed(tok)
    return writer.finish()


# ---------------------------------------------------------------------------------------
# rendering: blocks


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


class _Table:
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
        widths = [max(1, *(_width(row[col]) for row in rows)) for col in range(ncols)]
        aligns = self.aligns + [""] * (ncols - len(self.aligns))

        def pad(text: str, col: int) -> str:
            gap = widths[col] - _width(text)
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
        return f"<pre>{_escape(text)}</pre>" if _has_visible(text) else ""


def _code_html(content: str, lang: str) -> str:
    content = content.rstrip()
    if not _has_visible(content):
        return ""  # an empty <pre> is an empty entity; there is nothing to show anyway
    if lang:
        return f'<pre><code class="language-{lang}">{_escape(content)}</code></pre>'
    return f"<pre>{_escape(content)}</pre>"


def _code_lang(tok: Token) -> str:
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


class _Frame:
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


def _close_frame(frame: _Frame, parent_chain: Sequence[_Frame]) -> str:
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


_ALL_LINES: Final = 1 << 62


class _Renderer:
    """Renders a markdown-it block token stream, or just the part of it on some lines.

    Rendering a line range straight from the whole-document tokens lets the splitter parse
    a long reply once instead of once more per message (markdown-it-py is the slow part).
    Blocks cut by the range are sliced: paragraphs at their line breaks, code blocks and
    tables by line, lists and quotes by their children.  ``render`` returns None when a
    block cannot be sliced faithfully (a code span running across the cut, say); the
    caller then parses that piece's source on its own.
    """

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.close_of = [-1] * len(tokens)
        # Top-level blocks by line, to find the tokens of a line range without a scan.
        self.top_starts: list[int] = []
        self.top_ends: list[int] = []
        self.top_spans: list[tuple[int, int]] = []
        # Children of containers the range cuts, by container token index (see _enter).
        self._children: dict[int, tuple[list[int], list[int], list[int]]] = {}
        # Line breaks and formatting tokens of paragraphs the range cuts (see _slice_inline).
        self._lines: dict[int, tuple[list[int], list[int]]] = {}
        opened: list[int] = []
        for index, tok in enumerate(tokens):
            nesting = tok.nesting
            if nesting == 1:
                opened.append(index)
            elif nesting == -1:
                if opened:
                    start = opened.pop()
                    self.close_of[start] = index
                    if not opened and tokens[start].map is not None:
                        self._add_top(tokens[start], start, index + 1)
            elif not opened and tok.map is not None:
                self._add_top(tok, index, index + 1)

    def _add_top(self, tok: Token, start: int, end: int) -> None:
        assert tok.map is not None
        self.top_starts.append(tok.map[0])
        self.top_ends.append(tok.map[1])
        self.top_spans.append((start, end))

    def _skip(self, index: int) -> int:
        close = self.close_of[index]
        return close + 1 if close > index else index + 1

    def _enter(self, index: int, lo: int, hi: int, jumps: dict[int, int]) -> tuple[int, int]:
        """Enter a container that the range cuts: go straight to its first child in range.

        Returns the next token index and how many children were skipped (an ordered list
        numbers on from there).  Scanning every item of a huge list for every message
        would make splitting quadratic.
        """
        cached = self._children.get(index)
        if cached is None:
            level = self.tokens[index].level + 1
            child_index: list[int] = []
            child_starts: list[int] = []
            child_ends: list[int] = []
            pos, close = index + 1, self.close_of[index]
            while pos < close:
                tok = self.tokens[pos]
                if tok.level == level and tok.nesting >= 0 and tok.map is not None and tok.type != "inline":
                    child_index.append(pos)
                    child_starts.append(tok.map[0])
                    child_ends.append(tok.map[1])
                    pos = self._skip(pos) if tok.nesting == 1 else pos + 1
                else:
                    pos += 1
            cached = (child_index, child_starts, child_ends)
            self._children[index] = cached
        child_index, child_starts, child_ends = cached
        close = self.close_of[index]
        first = bisect_right(child_ends, lo)
        last = bisect_left(child_starts, hi)
        if close <= index:
            return index + 1, 0
        if first >= last:
            return close, first
        after = self._skip(child_index[last - 1])
        if after < close:
            jumps[after] = close  # past the last child in range: straight to the close
        return child_index[first], first

    def render(self, lo: int = 0, hi: int = _ALL_LINES) -> str | None:
        """HTML for source lines [lo, hi), or None if it has to come from a fresh parse."""
        tokens = self.tokens
        first = bisect_right(self.top_ends, lo)
        last = bisect_left(self.top_starts, hi)
        if first >= last:
            return ""
        stack: list[_Frame] = [_Frame("root")]

        def pop(kind: str) -> None:
            # Pop up to and including the innermost frame of this kind; tolerate a token
            # stream that is not perfectly nested rather than drop text.
            while len(stack) > 1:
                frame = stack.pop()
                stack[-1].add(_close_frame(frame, stack))
                if frame.kind == kind:
                    return

        jumps: dict[int, int] = {}
        index, stop = self.top_spans[first][0], self.top_spans[last - 1][1]
        while index < stop:
            if index in jumps:
                index = jumps.pop(index)
                continue
            tok = tokens[index]
            kind = tok.type
            span = tok.map
            outside = span is not None and (span[1] <= lo or span[0] >= hi)
            if outside and tok.nesting >= 0 and kind != "inline":
                # Outside the range, but an ordered list still has to count the item.
                if kind == "list_item_open" and stack[-1].kind == "list":
                    stack[-1].number += 1
                index = self._skip(index) if tok.nesting == 1 else index + 1
                continue
            partial = span is not None and (span[0] < lo or span[1] > hi)
            if kind in ("paragraph_open", "heading_open"):
                inline = tokens[index + 1] if index + 1 < len(tokens) else None
                children = inline.children if inline is not None and inline.type == "inline" else None
                if partial:
                    if kind == "heading_open" or span is None or inline is None:
                        return None
                    html = self._slice_inline(index + 1, span, lo, hi)
                    if html is None:
                        return None
                else:
                    html = _render_inline(children, ("b",) if kind == "heading_open" else ())
                stack[-1].add(html.strip())
                index = self._skip(index)
                continue
            if kind == "table_open":
                stack[-1].add(self._table(index, lo, hi))
                index = self._skip(index)
                continue
            if kind in ("fence", "code_block"):
                content = tok.content
                if partial and span is not None:
                    lines = content.split("\n")
                    if content.endswith("\n"):
                        lines.pop()
                    first_line = span[0] + 1 if kind == "fence" else span[0]
                    if first_line + len(lines) > span[1]:
                        return None
                    content = "\n".join(lines[max(lo - first_line, 0) : max(hi - first_line, 0)])
                stack[-1].add(_code_html(content, _code_lang(tok)))
            elif kind in ("bullet_list_open", "ordered_list_open"):
                ordered = kind == "ordered_list_open"
                start = int(tok.attrs.get("start", 1)) if ordered else 1
                skipped = 0
                if partial:
                    index, skipped = self._enter(index, lo, hi, jumps)
                stack.append(_Frame("list", ordered=ordered, number=start + skipped))
                if partial:
                    continue
            elif kind == "list_item_open":
                parent = stack[-1]
                if parent.kind == "list" and parent.ordered:
                    marker = f"{parent.number}. "
                    parent.number += 1
                else:
                    marker = _BULLET
                continued = span is not None and span[0] < lo
                stack.append(_Frame("item", marker=marker, continued=continued))
                if partial:
                    index, _ = self._enter(index, lo, hi, jumps)
                    continue
            elif kind == "list_item_close":
                pop("item")
            elif kind in ("bullet_list_close", "ordered_list_close"):
                pop("list")
            elif kind == "blockquote_open":
                stack.append(_Frame("quote"))
                if partial:
                    index, _ = self._enter(index, lo, hi, jumps)
                    continue
            elif kind == "blockquote_close":
                pop("quote")
            elif kind == "hr":
                stack[-1].add(_HR)
            elif kind == "html_block":
                # Only reachable if raw HTML were enabled: show it as text.
                if partial:
                    return None
                stack[-1].add(_escape(tok.content.strip()))
            elif kind == "inline":
                stack[-1].add(_render_inline(tok.children).strip())
            index += 1
        while len(stack) > 1:
            frame = stack.pop()
            stack[-1].add(_close_frame(frame, stack))
        return _close_frame(stack[0], ()).strip()

    def _slice_inline(self, index: int, span: Sequence[int], lo: int, hi: int) -> str | None:
        """Render the lines [lo, hi) of the inline token at ``index`` (source lines ``span``)."""
        tok = self.tokens[index]
        children = (tok.children or []) if tok.type == "inline" else []
        cached = self._lines.get(index)
        if cached is None:
            breaks = [k for k, child in enumerate(children) if child.type in ("softbreak", "hardbreak")]
            formatting = [k for k, child in enumerate(children) if child.type in _FORMATTING_TOKENS]
            cached = self._lines[index] = (breaks, formatting)
        breaks, formatting = cached
        begin_line, end_line = span[0], span[1]
        if len(breaks) != end_line - begin_line - 1:
            return None  # a code span or link title runs across a line end: lines are not tokens
        first = max(lo, begin_line) - begin_line
        last = min(hi, end_line) - begin_line
        begin = breaks[first - 1] + 1 if first > 0 else 0
        end = breaks[last - 1] if last - 1 < len(breaks) else len(children)
        writer = _InlineWriter()
        # Replay the formatting of earlier lines without output, so that a bold phrase
        # running across the cut carries on in this message.
        for position in formatting[: bisect_left(formatting, begin)]:
            writer.feed(children[position])
        writer.restart()
        for child in children[begin:end]:
            writer.feed(child)
        return writer.finish()

    def _table(self, index: int, lo: int, hi: int) -> str:
        table = _Table()
        in_head = False
        row_included = False
        for tok in self.tokens[index + 1 : self._skip(index) - 1]:
            kind = tok.type
            if kind == "thead_open":
                in_head = True
            elif kind == "thead_close":
                in_head = False
            elif kind == "tr_open":
                row_included = tok.map is None or lo <= tok.map[0] < hi
                if row_included:
                    table.add_row(in_head)
            elif kind == "th_open":
                table.add_align(tok)
            elif kind == "inline" and row_included:
                table.add_cell(_plain_inline(tok.children))
        return table.render()


def markdown_to_html(markdown: str) -> str:
    """Render model Markdown to Telegram HTML (the whole text, without a length limit)."""
    tokens = _parse(markdown)
    html: str | None = None
    if tokens is not None:
        try:
            html = _Renderer(tokens).render()
        except Exception:  # rendering bugs must not cost the user the reply: send it as text
            html = None
    return _escape(markdown.strip()) if html is None else html


# ---------------------------------------------------------------------------------------
# splitting


def _joins_previous(text: str, index: int) -> bool:
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


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos


_TABLE_PARTS: Final = frozenset(["thead_open", "tbody_open", "tr_open", "th_open", "td_open"])


class _Fence(NamedTuple):
    opener: int  # line index of the ``` line
    first: int  # first content line
    last: int  # last content line (inclusive)
    closer: int  # line index of the closing fence, -1 when the fence is never closed
    reopen: str  # line that reopens the block in the next chunk
    close: str  # line that closes it at the end of this chunk


class _Piece(NamedTuple):
    text: str
    # Source lines [first, end) when the piece is made of whole lines, so it can be
    # rendered from the whole-document parse instead of being parsed again.
    lines: tuple[int, int] | None


class _Layout:
    """The Markdown source plus what the parse says about where it may be cut."""

    def __init__(self, text: str, tokens: Sequence[Token]) -> None:
        self.text = text
        self.n = len(text)
        self.starts = [0] + [m.end() for m in _NEWLINE_RE.finditer(text)]
        lines = len(self.starts)
        self.astral = [m.start() for m in _ASTRAL_RE.finditer(text)]

        # depth[j]: how many blocks enclose the boundary just before line j.  Cutting where
        # fewer blocks are open keeps more structure intact: 0 is between top-level blocks.
        diff = [0] * (lines + 2)
        heading_ends: list[int] = []
        self.fences: list[_Fence] = []
        self.fence_of = [-1] * lines
        self.keep_indent = [False] * lines
        self.forbidden = [False] * (lines + 1)
        self.reopenable: list[bool] = []
        for tok in tokens:
            if tok.map is None or tok.type == "inline":
                continue
            begin, end = tok.map
            counts = tok.nesting == 1 or tok.type in ("fence", "code_block")
            # Rows are all alike: inside a table only the table itself counts.
            if counts and tok.type not in _TABLE_PARTS and end - begin >= 2:
                diff[begin + 1] += 1
                diff[end] -= 1
            if tok.type == "table_open" and begin + 1 <= lines:
                self.forbidden[begin + 1] = True  # between the header and its --- row
            if tok.type == "heading_open":
                heading_ends.append(end)
            elif tok.type == "fence":
                self._add_fence(tok, begin, min(end, lines))
            elif tok.type == "code_block" and tok.level == 0:
                for line in range(begin, min(end, lines)):
                    self.keep_indent[line] = True
        self.depth = [0] * (lines + 1)
        running = 0
        for j in range(lines + 1):
            running += diff[j]
            self.depth[j] = running
        # Prefer not to separate a heading from what follows it.
        self.score = [2 * d for d in self.depth]
        for end in heading_ends:
            j = end
            while j <= lines:
                self.score[j] += 1
                if j < lines and not self._line(j).strip():
                    j += 1  # blank lines after the heading do not separate it either
                else:
                    break

    # -- source helpers

    def _line(self, index: int) -> str:
        start = self.starts[index]
        end = self.starts[index + 1] if index + 1 < len(self.starts) else self.n
        return self.text[start:end].rstrip("\r\n")

    def _line_of(self, pos: int) -> int:
        return bisect_right(self.starts, pos) - 1

    def _utf16(self, start: int, end: int) -> int:
        if not self.astral:
            return end - start
        return end - start + bisect_left(self.astral, end) - bisect_left(self.astral, start)

    def _max_end(self, start: int, budget: int) -> int:
        """Largest end such that text[start:end] takes at most ``budget`` UTF-16 units."""
        end = min(self.n, start + max(budget, 0))
        if self.astral:
            excess = self._utf16(start, end) - budget
            while excess > 0 and end > start:
                end -= excess
                excess = self._utf16(start, end) - budget
            while end < self.n and self._utf16(start, end + 1) <= budget:
                end += 1
        return end

    def _add_fence(self, tok: Token, begin: int, end: int) -> None:
        opener_line = self._line(begin)
        at = opener_line.find(tok.markup)
        if at < 0 or not tok.markup:
            return
        # Container prefix ("> ", list indentation) without list markers, so the reopened
        # fence sits in the same blockquote but does not start a new list item.
        prefix = "".join(ch if ch in " \t>" else " " for ch in opener_line[:at])
        closer = -1
        if end - 1 > begin:
            closing = re.fullmatch(
                r"[ \t>]*" + re.escape(tok.markup[0]) + "{" + str(len(tok.markup)) + r",}[ \t]*",
                self._line(end - 1),
            )
            if closing:
                closer = end - 1
        last = closer - 1 if closer >= 0 else end - 1
        reopen = prefix + opener_line[at:].rstrip()
        fence = _Fence(begin, begin + 1, last, closer, reopen, prefix + tok.markup)
        number = len(self.fences)
        self.fences.append(fence)
        for line in range(fence.first, fence.last + 1):
            self.fence_of[line] = number
        # Never cut right after the opening line (an empty code block) or right before the
        # closing line (the next chunk would start with ``` and turn into one big code block).
        self.forbidden[begin + 1] = True
        if closer >= 0:
            self.forbidden[closer] = True

    # -- cutting

    def cut(self, limit: int) -> list[_Piece]:
        """Cut the source into pieces of at most ``limit`` UTF-16 units each."""
        text, n = self.text, self.n
        # A fence is only continued across a cut if its fence lines leave room for content.
        self.reopenable = [utf16_len(f.reopen) + utf16_len(f.close) + 4 <= limit // 2 for f in self.fences]
        pieces: list[_Piece] = []
        start = _skip(_WS_RE, text, 0)
        fence = self._fence_at(start)
        while True:
            visible = _first_visible(text, start)
            if visible < 0:
                break  # only whitespace / invisible characters left: nothing to send
            prefix = self.fences[fence].reopen + "\n" if fence >= 0 else ""
            budget = limit - utf16_len(prefix)
            end_max = self._max_end(start, budget)
            if end_max <= visible and start < visible:
                # Not even the first visible character fits after the invisible run before
                # it (tiny limits only): drop that run rather than send a blank message.
                start, fence = visible, self._fence_at(visible)
                continue
            if end_max >= n:
                pieces.append(self._piece(prefix, start, n, ""))
                break
            cut, at_line = self._choose(start, visible, end_max, budget, limit)
            closing = self._fence_at(cut)
            suffix = "\n" + self.fences[closing].close if closing >= 0 else ""
            if suffix and self._utf16(start, cut) + utf16_len(suffix) > budget:
                suffix = ""  # cannot happen with the budgets above; keep the limit regardless
            pieces.append(self._piece(prefix, start, cut, suffix))
            start = self._next_start(cut, at_line, closing >= 0)
            fence = self._fence_at(start)
        return pieces

    def _fence_at(self, pos: int) -> int:
        """The reopenable fence whose content contains ``pos``, or -1."""
        if pos >= self.n:
            return -1
        fence = self.fence_of[self._line_of(pos)]
        return fence if fence >= 0 and self.reopenable[fence] else -1

    def _close_cost(self, pos: int) -> int:
        fence = self._fence_at(pos)
        return 1 + utf16_len(self.fences[fence].close) if fence >= 0 else 0

    def _choose(self, start: int, visible: int, end_max: int, budget: int, limit: int) -> tuple[int, bool]:
        """Pick the cut for a piece starting at ``start``; returns (position, is_line_cut)."""
        starts = self.starts
        low_line = bisect_right(starts, visible)
        high_line = bisect_right(starts, end_max) - 1
        best = self._best_line(start, low_line, high_line, budget)
        if best >= 0:
            # A clean boundary that leaves this message mostly empty only pays off when what
            # follows it then fits in one message; if that gets cut anyway, fill this one.
            third = self._max_end(start, budget // 3)
            if starts[best] < third and not self._next_block_fits(best, limit):
                fuller = self._best_line(start, max(low_line, bisect_left(starts, third)), high_line, budget)
                if fuller >= 0:
                    best = fuller
            return starts[best], True

        # No usable line boundary: cut inside the line, at whitespace if there is any.
        limit_end = self._max_end(start, budget - self._close_cost(max(end_max - 1, start)))
        if limit_end <= visible:
            limit_end = end_max
        low = visible + 1
        space = self._last_hspace(low, limit_end)
        if space >= 0:
            return space, False
        return self._hard_cut(low, limit_end), False

    def _best_line(self, start: int, low_line: int, high_line: int, budget: int) -> int:
        """The line boundary in [low_line, high_line] with the best score, latest on ties."""
        best, best_score = -1, 1 << 30
        # Latest first: the first boundary found with a given score gives the longest piece.
        for j in range(high_line, low_line - 1, -1):
            if self.forbidden[j] or self.score[j] >= best_score:
                continue
            pos = self.starts[j]
            if self._utf16(start, pos) + self._close_cost(pos) > budget:
                continue
            best, best_score = j, self.score[j]
            if best_score == 0:
                break
        return best

    def _next_block_fits(self, line: int, limit: int) -> bool:
        """Whether the text from boundary ``line`` up to the next boundary at least as good
        (the block a cut there would keep whole) fits in one message."""
        score, pos = self.score[line], self.starts[line]
        for j in range(line + 1, len(self.starts)):
            if self.starts[j] - pos > limit:
                return False
            if self.score[j] <= score and not self.forbidden[j]:
                return self._utf16(pos, self.starts[j]) <= limit
        return self._utf16(pos, self.n) <= limit

    def _last_hspace(self, low: int, high: int) -> int:
        """Where to cut a line that does not fit: the last space in [low, high), or -1.

        The words after the cut start a line of their own in the next message, so a space
        followed by something that would then read as block syntax ("# ", "- ", "```",
        "> ", "1. ") is avoided if another space is not too far back.
        """
        text = self.text
        fallback = -1
        floor = max(low, high - 400)
        pos = high
        while pos > low:
            found = max(text.rfind(" ", low, pos), text.rfind("\t", low, pos))
            if found < 0:
                break
            if fallback < 0:
                fallback = found
            if found < floor:
                break
            after = _skip(_HSPACE_RE, text, found)
            if not _BLOCK_START_RE.match(text, after):
                return found
            pos = found
        if fallback >= 0:
            return fallback
        for index in range(high - 1, low - 1, -1):
            ch = text[index]
            if ch.isspace() and ch not in "\r\n":
                return index
        return -1

    def _hard_cut(self, low: int, high: int) -> int:
        cut = high
        for _ in range(32):
            if cut <= low or not _joins_previous(self.text, cut):
                break
            cut -= 1
        if _joins_previous(self.text, cut):
            return high  # an absurdly long cluster: a code point boundary is the best we can do
        return cut

    def _next_start(self, cut: int, at_line: bool, in_fence: bool) -> int:
        text = self.text
        if cut >= self.n:
            return self.n
        if in_fence:
            # Code keeps its indentation and blank lines; only the whitespace we cut at goes.
            return cut if at_line else _skip(_HSPACE_RE, text, cut)
        pos = _skip(_WS_RE, text, cut)
        if pos < self.n:
            line = self._line_of(pos)
            if self.keep_indent[line] and self.starts[line] >= cut:
                pos = self.starts[line]  # an indented code block needs its indentation
        return pos

    def _piece(self, prefix: str, start: int, end: int, suffix: str) -> _Piece:
        body = self.text[start:end].rstrip()
        lines: tuple[int, int] | None = None
        first = self._line_of(start)
        if not self.text[self.starts[first] : start].strip():
            if end >= self.n:
                lines = (first, _ALL_LINES)
            else:
                last = self._line_of(end)
                if end == self.starts[last]:
                    lines = (first, last)
        return _Piece(prefix + body + suffix, lines)


def _split(markdown: str, cut_limit: int, limit: int, attempt: int) -> list[Chunk]:
    tokens = _parse(markdown)
    renderer = _Renderer(tokens) if tokens is not None else None
    layout = _Layout(markdown, tokens or ())
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
        if shown_len <= limit and _has_visible(shown):
            chunks.append(Chunk(html, piece.text))
            continue
        plain_len = utf16_len(piece.text)
        smaller = plain_len * limit // max(shown_len, 1) * 9 // 10
        if _has_visible(shown) and attempt < _MAX_RESPLITS and 2 <= smaller < plain_len:
            # Rendering made it longer (padded tables, renumbered lists): cut this piece
            # again with a proportionally smaller budget for the source.
            chunks.extend(_split(piece.text, smaller, limit, attempt + 1))
        else:
            # Escaped source always renders to exactly itself, which fits and is non-empty.
            chunks.append(Chunk(_escape(piece.text), piece.text))
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
    if not _has_visible(markdown):
        return []  # nothing Telegram would show; skip parsing a wall of blank lines
    return _split(markdown, limit, limit, 0)


# ---------------------------------------------------------------------------------------
# streaming preview

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
    if not _has_visible(shown):
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
        while start < len(shown) and _joins_previous(shown, start):
            start += 1
    tail = shown[start:].strip()
    if not _has_visible(tail):
        return _ELLIPSIS
    return _ELLIPSIS + tail
