"""Intake: what vigil received is on disk before any session sees it.

`inbox` writes each message to the store's durable inbox and hands it to its session; `receipt` is
what confirming a Telegram update waits for (the durable writes its handling made). Channels feed it
through the runtime.

May import the actors' message catalogue (`vigil.actors.core.protocol`), the ports and records.
"""
