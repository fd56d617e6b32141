"""Text from outside (Telegram, a terminal, the model) made safe to store and send.

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
