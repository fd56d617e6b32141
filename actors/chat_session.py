"""ChatSession: the SessionActor vigil spawns, with its command and heartbeat behaviour mixed in."""

from __future__ import annotations

from actors.session_commands import SessionCommandsMixin


class ChatSession(SessionCommandsMixin):
    """One chat's actor: turns (SessionActor) plus /new, /cd, /model, /notes, /forget."""
