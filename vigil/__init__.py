"""vigil: Claude in Telegram, one actor per conversation."""

__version__ = "0.1.0"
