"""Text from outside (Telegram, a terminal, the model) made safe to store and send, or short to show.

JSON can carry a lone UTF-16 surrogate ("\\ud800"), which Python keeps in a str
but UTF-8 (and so msgpack, LMDB and every HTTP body) cannot encode. Valid
surrogate pairs become their character; lone halves become U+FFFD.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    if _SURROGATE.search(text) is None:  # the common case costs one regex scan
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def one_line(text: str, limit: int) -> str:
    """`text` on one line (runs of whitespace made one space), cut to `limit` characters with "…"."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
