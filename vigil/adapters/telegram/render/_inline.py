"""Inline Markdown (emphasis, code spans, links, images) → Telegram HTML or plain text.

Telegram's entity rules are strict about inline markup (no empty entities, no code inside
other entities, no nested links, few link schemes), and a paragraph cut across two
messages has to carry its open formatting over; ``InlineWriter`` owns all of that so the
block renderer only hands it token streams.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, NamedTuple

from markdown_it.token import Token

from vigil.adapters.telegram.render._escape import escape, escape_attr
from vigil.adapters.telegram.render._parse import MD

# Only schemes Telegram turns into working links; anything else is shown as text.
_LINK_RE: Final = re.compile(r"(?:https?://[^\s/?#]+\S*|tg://[A-Za-z0-9_]+\S*|mailto:[^\s@]+@[^\s@]+)", re.IGNORECASE)


def _link_allowed(href: str) -> bool:
    return _LINK_RE.fullmatch(href) is not None


def _display_url(href: str) -> str:
    # Undo markdown-it's percent-encoding so a URL shown as text reads like the model wrote it.
    try:
        return MD.normalizeLinkText(href)
    except Exception:  # malformed escapes: show the URL as stored
        return href


def plain_inline(children: Sequence[Token] | None) -> str:
    """Inline tokens as plain text (table cells, image alt text): no tags at all."""
    parts: list[str] = []
    links: list[tuple[int, str, bool]] = []
    for tok in children or ():
        kind = tok.type
        if kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind == "image":
            parts.append(plain_inline(tok.children) or tok.content)
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


FORMATTING_TOKENS: Final = frozenset(
    ["em_open", "em_close", "strong_open", "strong_close", "s_open", "s_close", "link_open", "link_close"]
)


class _LinkState(NamedTuple):
    active: bool  # rendered as <a>
    href: str
    auto: bool  # <http://...> autolink: the text already is the URL
    visible_at_open: int


class InlineWriter:
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
            self.out.append(escape(content))
            return
        self._sync(self._target())
        self.out.append(escape(content))
        self.visible += len(content)

    def code(self, content: str) -> None:
        if self._in_link():
            self.text(content)
            return
        if not content:
            return
        self._sync([])
        self.out.append(f"<code>{escape(content)}</code>")
        self.visible += len(content)

    def link_open(self, tok: Token) -> None:
        href = str(tok.attrs.get("href", ""))
        auto = tok.info == "auto"
        active = _link_allowed(href) and not self._in_link()
        if active:
            self._push("a", f'<a href="{escape_attr(href)}">')
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
        alt = plain_inline(tok.children) or tok.content
        src = str(tok.attrs.get("src", ""))
        if self._in_link():
            self.text(alt)
        elif _link_allowed(src):
            self._push("a", f'<a href="{escape_attr(src)}">')
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


def render_inline(children: Sequence[Token] | None, base: Sequence[str] = ()) -> str:
    writer = InlineWriter(base)
    for tok in children or ():
        writer.feed(tok)
    return writer.finish()
