"""Where the Markdown source of a reply may be cut, and cutting it into message-sized pieces.

Cuts are chosen on the *source* (between top-level blocks first, then nested blocks and
lines, then whitespace, then a hard cut that never splits a character), with fenced code
blocks closed before a cut and reopened after it.  What the pieces render to is the
splitter's business (``_split``); this module only knows the text and its block structure.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Final, NamedTuple

from markdown_it.token import Token

from vigil.adapters.telegram.render._measure import first_visible, joins_previous, utf16_len
from vigil.adapters.telegram.render._renderer import ALL_LINES

_NEWLINE_RE: Final = re.compile(r"\r\n?|\n")
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")
_WS_RE: Final = re.compile(r"\s*")
_HSPACE_RE: Final = re.compile(r"[^\S\r\n]*")

# What Markdown reads as the start of a block when it begins a line.
_BLOCK_START_RE: Final = re.compile(r"[#>|=]|[-*+_](?:\s|[-*_]{2})|`{3}|~{3}|\d{1,9}[.)](?:\s|$)|$")


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


class Piece(NamedTuple):
    text: str
    # Source lines [first, end) when the piece is made of whole lines, so it can be
    # rendered from the whole-document parse instead of being parsed again.
    lines: tuple[int, int] | None


class Layout:
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

    def cut(self, limit: int) -> list[Piece]:
        """Cut the source into pieces of at most ``limit`` UTF-16 units each."""
        text, n = self.text, self.n
        # A fence is only continued across a cut if its fence lines leave room for content.
        self.reopenable = [utf16_len(f.reopen) + utf16_len(f.close) + 4 <= limit // 2 for f in self.fences]
        pieces: list[Piece] = []
        start = _skip(_WS_RE, text, 0)
        fence = self._fence_at(start)
        while True:
            visible = first_visible(text, start)
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
            if cut <= low or not joins_previous(self.text, cut):
                break
            cut -= 1
        if joins_previous(self.text, cut):
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

    def _piece(self, prefix: str, start: int, end: int, suffix: str) -> Piece:
        body = self.text[start:end].rstrip()
        lines: tuple[int, int] | None = None
        first = self._line_of(start)
        if not self.text[self.starts[first] : start].strip():
            if end >= self.n:
                lines = (first, ALL_LINES)
            else:
                last = self._line_of(end)
                if end == self.starts[last]:
                    lines = (first, last)
        return Piece(prefix + body + suffix, lines)
