"""Markdown from the model → Telegram HTML messages that Telegram always accepts.

Claude answers in Markdown (CommonMark plus GFM tables and strikethrough).  Telegram
understands only a small HTML subset and rejects a whole message with 400 "can't parse
entities" on the first unknown tag, unbalanced tag or unescaped ``<``/``&``; it also refuses
empty messages and anything longer than 4096 characters *after* entity parsing, counted in
UTF-16 code units.  This package turns model text into messages that survive all of that:

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
* ``preview_text`` gives the plain-text tail of a reply that is still streaming, and
  ``settled_cut`` where such a reply, grown past one message, may be cut to send its beginning.

``visible_text`` and ``utf16_len`` measure text the way Telegram does.

The parts, each importing only those listed before it:

* ``_measure``  – UTF-16 length, displayed text, Telegram's "blank", character boundaries
* ``_escape``   – HTML escaping
* ``_parse``    – the configured markdown-it parser and its safety check
* ``_inline``   – inline tokens → HTML (``InlineWriter``) or plain text
* ``_blocks``   – tables, code blocks, list items and quotes laid out as Telegram text
* ``_renderer`` – the block token walk, whole or by line range; ``markdown_to_html``
* ``_layout``   – where the source may be cut, and cutting it into pieces
* ``_split``    – pieces → ``Chunk``s that fit, re-cut or escaped when they do not
* ``_preview``  – the streaming preview

Pure text in, text out: imports nothing of vigil, so the actors' display and the outbox both use it.
"""

from __future__ import annotations

from vigil.adapters.telegram.render._measure import TELEGRAM_TEXT_LIMIT, utf16_len, visible_text
from vigil.adapters.telegram.render._preview import preview_text, settled_cut
from vigil.adapters.telegram.render._renderer import markdown_to_html
from vigil.adapters.telegram.render._split import Chunk, split_for_telegram

__all__ = [
    "TELEGRAM_TEXT_LIMIT",
    "Chunk",
    "markdown_to_html",
    "preview_text",
    "settled_cut",
    "split_for_telegram",
    "utf16_len",
    "visible_text",
]
