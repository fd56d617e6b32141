"""Walking markdown-it's block tokens into Telegram HTML, for a whole reply or a line range.

``markdown_to_html`` renders everything; the splitter asks ``Renderer.render`` for just
the source lines of one message, which lets a long reply be parsed once.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Final

from markdown_it.token import Token

from vigil.adapters.telegram.render._blocks import Frame, Table, close_frame, code_html, code_lang
from vigil.adapters.telegram.render._escape import escape
from vigil.adapters.telegram.render._inline import FORMATTING_TOKENS, InlineWriter, plain_inline, render_inline
from vigil.adapters.telegram.render._parse import parse

_HR: Final = "———"
_BULLET: Final = "• "

# "Up to the last line" for a line range (any real line count is far below it).
ALL_LINES: Final = 1 << 62


class Renderer:
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

    def render(self, lo: int = 0, hi: int = ALL_LINES) -> str | None:
        """HTML for source lines [lo, hi), or None if it has to come from a fresh parse."""
        tokens = self.tokens
        first = bisect_right(self.top_ends, lo)
        last = bisect_left(self.top_starts, hi)
        if first >= last:
            return ""
        stack: list[Frame] = [Frame("root")]

        def pop(kind: str) -> None:
            # Pop up to and including the innermost frame of this kind; tolerate a token
            # stream that is not perfectly nested rather than drop text.
            while len(stack) > 1:
                frame = stack.pop()
                stack[-1].add(close_frame(frame, stack))
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
                    html = render_inline(children, ("b",) if kind == "heading_open" else ())
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
                stack[-1].add(code_html(content, code_lang(tok)))
            elif kind in ("bullet_list_open", "ordered_list_open"):
                ordered = kind == "ordered_list_open"
                start = int(tok.attrs.get("start", 1)) if ordered else 1
                skipped = 0
                if partial:
                    index, skipped = self._enter(index, lo, hi, jumps)
                stack.append(Frame("list", ordered=ordered, number=start + skipped))
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
                stack.append(Frame("item", marker=marker, continued=continued))
                if partial:
                    index, _ = self._enter(index, lo, hi, jumps)
                    continue
            elif kind == "list_item_close":
                pop("item")
            elif kind in ("bullet_list_close", "ordered_list_close"):
                pop("list")
            elif kind == "blockquote_open":
                stack.append(Frame("quote"))
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
                stack[-1].add(escape(tok.content.strip()))
            elif kind == "inline":
                stack[-1].add(render_inline(tok.children).strip())
            index += 1
        while len(stack) > 1:
            frame = stack.pop()
            stack[-1].add(close_frame(frame, stack))
        return close_frame(stack[0], ()).strip()

    def _slice_inline(self, index: int, span: Sequence[int], lo: int, hi: int) -> str | None:
        """Render the lines [lo, hi) of the inline token at ``index`` (source lines ``span``)."""
        tok = self.tokens[index]
        children = (tok.children or []) if tok.type == "inline" else []
        cached = self._lines.get(index)
        if cached is None:
            breaks = [k for k, child in enumerate(children) if child.type in ("softbreak", "hardbreak")]
            formatting = [k for k, child in enumerate(children) if child.type in FORMATTING_TOKENS]
            cached = self._lines[index] = (breaks, formatting)
        breaks, formatting = cached
        begin_line, end_line = span[0], span[1]
        if len(breaks) != end_line - begin_line - 1:
            return None  # a code span or link title runs across a line end: lines are not tokens
        first = max(lo, begin_line) - begin_line
        last = min(hi, end_line) - begin_line
        begin = breaks[first - 1] + 1 if first > 0 else 0
        end = breaks[last - 1] if last - 1 < len(breaks) else len(children)
        writer = InlineWriter()
        # Replay the formatting of earlier lines without output, so that a bold phrase
        # running across the cut carries on in this message.
        for position in formatting[: bisect_left(formatting, begin)]:
            writer.feed(children[position])
        writer.restart()
        for child in children[begin:end]:
            writer.feed(child)
        return writer.finish()

    def _table(self, index: int, lo: int, hi: int) -> str:
        table = Table()
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
                table.add_cell(plain_inline(tok.children))
        return table.render()


def markdown_to_html(markdown: str) -> str:
    """Render model Markdown to Telegram HTML (the whole text, without a length limit)."""
    tokens = parse(markdown)
    html: str | None = None
    if tokens is not None:
        try:
            html = Renderer(tokens).render()
        except Exception:  # rendering bugs must not cost the user the reply: send it as text
            html = None
    return escape(markdown.strip()) if html is None else html
