"""Escaping text for Telegram's HTML parse mode.

Telegram rejects a whole message on the first stray ``<`` or ``&``, so every piece of
model text that lands in our HTML goes through these two functions and nothing else.
"""

from __future__ import annotations


def escape(text: str) -> str:
    """``text`` as HTML text content: ``&``, ``<`` and ``>`` escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    """``text`` as a double-quoted HTML attribute value."""
    return escape(text).replace('"', "&quot;")
