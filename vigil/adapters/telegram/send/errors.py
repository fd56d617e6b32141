"""How a delivery to Telegram ends for good, shared by the outbox and the streams it hands out."""

from __future__ import annotations


class Undeliverable(Exception):
    """Telegram refused for good (blocked, chat gone); the session was told."""


class AmbiguousTimeout(Undeliverable):
    """A new message timed out after it was sent: it probably arrived, so it is not sent again."""
