"""Claude's summarized thinking above its answer (`/think show`): an expandable quote, as Telegram shows it.

Telegram folds `<blockquote expandable>` to a few lines the reader can open, which is what a summary of
thinking wants: there for whoever is curious, out of the way of the answer. It goes into the answer's
first message when both fit one message, else in a message of its own just before; a long summary is
cut (it is a summary of a summary then, not the answer). Its plain form, sent if Telegram refused the
HTML, marks the same text with 💭.
"""

from __future__ import annotations

import html

from vigil.adapters.telegram.render import TELEGRAM_TEXT_LIMIT, Chunk, utf16_len

MARK = "💭"
MAX_THOUGHT = 3000  # UTF-16 units of thinking shown: the answer keeps most of a message


def thought_chunk(thinking: str) -> Chunk | None:
    """The quote of `thinking`, or None if there is nothing to show."""
    text = thinking.strip()
    if not text:
        return None
    if utf16_len(text) > MAX_THOUGHT:
        while utf16_len(text) > MAX_THOUGHT - 1:
            text = text[: len(text) - max(1, (utf16_len(text) - MAX_THOUGHT) // 2 + 1)]
        text = text.rstrip() + "…"
    return Chunk(html=f"<blockquote expandable>{MARK} {html.escape(text, quote=False)}</blockquote>",
                 plain=f"{MARK} {text}")


def with_thought(chunks: list[Chunk], thinking: str) -> list[Chunk]:
    """The answer's messages with the quote of `thinking` above them: in the first one if it fits there."""
    quote = thought_chunk(thinking)
    if quote is None:
        return chunks
    if chunks:
        first = chunks[0]
        plain = f"{quote.plain}\n\n{first.plain}"
        if utf16_len(plain) <= TELEGRAM_TEXT_LIMIT:
            return [Chunk(html=f"{quote.html}\n{first.html}", plain=plain), *chunks[1:]]
    return [quote, *chunks]
