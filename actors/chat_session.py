"""ChatSession: the SessionActor vigil spawns, with its command and heartbeat behaviour mixed in."""

from __future__ import annotations

from actors.heartbeat import HeartbeatMixin


class ChatSession(HeartbeatMixin):
    """One chat's actor: turns (SessionActor), /new /cd /model /notes /forget, and heartbeats."""
