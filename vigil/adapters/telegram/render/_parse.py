"""The one Markdown parser (markdown-it-py, configured for model text) and its safety check.

Configured once here so the inline renderer (which reuses its link normalisation), the
block renderer and the splitter all read the source the same way.
"""

from __future__ import annotations

from typing import Final

from markdown_it import MarkdownIt
from markdown_it.token import Token

# markdown-it silently *drops* the rest of a block once nesting passes maxNesting (see
# ParserBlock.tokenize).  We raise the limit well above anything a model writes and treat
# a parse that came close to it as unusable (the text is then sent as escaped plain text)
# rather than lose words.
_MAX_NESTING: Final = 100

# Raw HTML is off twice over: the option, and its rules are not even run (the model's
# "<tag>" text must come out as text).  text_join only merges tokens we render the same
# way anyway; skipping it saves a pass over every inline token.
MD: Final = (
    MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False, "maxNesting": _MAX_NESTING},
    )
    .enable(["strikethrough", "table"])
    .disable(["html_block", "html_inline", "text_join"])
)


def parse(markdown: str) -> list[Token] | None:
    """markdown-it tokens, or None when the parse cannot be trusted to keep every word."""
    try:
        tokens = MD.parse(markdown)
    except Exception:  # a reply must still go out even if the parser trips over it
        return None
    # A block opened this deep means markdown-it may have skipped the rest of its content.
    if any(tok.nesting == 1 and tok.level >= _MAX_NESTING - 1 for tok in tokens):
        return None
    return tokens
