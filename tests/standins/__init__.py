"""Loopback stand-ins for the Telegram Bot API and the Anthropic Messages API."""
