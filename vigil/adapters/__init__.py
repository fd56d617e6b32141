"""Channel adapters: they turn channel messages into actor messages and deliver replies."""
