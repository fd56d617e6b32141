"""Who asks a command, from which chat: what the control commands may show and do depends on it.

In a group, a command sees that group's sessions only (its chat and its forum
topics), whoever asks, because everyone in the group reads the answer; in a
private chat, the asker's own sessions, or every session for an admin. What
the asker may *change* there is vigil/policy/roles.py's (`place` is how it sees the chat).
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.actors.core.protocol import Sender
from vigil.policy.roles import GROUP_TYPES, Place
from vigil.records.schema import Target


@dataclass(frozen=True)
class Caller:
    """Who asks, from which chat (and so about which session)."""

    key: str
    target: Target
    sender: Sender
    admin: bool
    chat_title: str = ""
    chat_type: str = ""

    @property
    def place(self) -> Place:
        return Place(self.key, self.target.chat_id, self.chat_type)

    @property
    def user_id(self) -> int:
        return self.sender.user_id

    @property
    def group_key(self) -> str | None:
        """In a group, the key of its chat (its forum topics' keys extend it); None elsewhere."""
        if self.chat_type not in GROUP_TYPES:
            return None
        return ":".join(self.key.split(":")[:2])

    @property
    def sees_everyone(self) -> bool:
        """Every user's sessions: an admin, outside groups only."""
        return self.admin and self.group_key is None

    def sees(self, key: str) -> bool:
        """Whether a session of this key belongs to where the caller asks from (membership aside)."""
        group = self.group_key
        return group is None or key == group or key.startswith(group + ":")
