"""Every message the actors exchange, in one place, as frozen msgspec Structs.

Adapters build `UserText` and `SessionCommand` and hand them to `Runtime.submit`,
which writes them to the durable inbox, stamps their `inbox_id` and tells them
to the Supervisor, which routes them to the session's actor. The rest are the actors' own
conversation: eviction handshakes, failures, heartbeats, timer ticks.
Events (`threading.Event`) ride along where a caller outside the actor system
must learn that something finished; nothing here is ever persisted. None of
them can be part of a reference cycle, so they are `gc=False`: messages waiting
in mailboxes add nothing to the cyclic collector's work.
"""

from __future__ import annotations

import threading

import msgspec

from vigil.records.schema import Attachment, Target


class Sender(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    user_id: int
    name: str = ""
    username: str = ""


class UserText(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A message for the model from a user in a chat."""

    key: str
    target: Target
    sender: Sender
    text: str
    at: float
    message_id: int = 0
    chat_title: str = ""
    chat_type: str = ""
    inbox_id: int = 0  # its arrival id in the durable inbox; 0: not in the inbox
    attachments: tuple[Attachment, ...] = ()  # files it carries, already in the media store
    edited: bool = False  # the user edited their earlier message `message_id` to this (actors/turns/edits.py)


class SessionCommand(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A command that changes the session (/new, /cd, /model NAME, /heartbeat ..., /forget ...)."""

    key: str
    target: Target
    sender: Sender
    name: str
    args: str = ""
    chat_title: str = ""
    chat_type: str = ""
    inbox_id: int = 0  # its arrival id in the durable inbox; 0: not in the inbox


class HeartbeatDue(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The timer (or /heartbeat test) wakes a session for a check-in."""

    key: str
    due: float


class DeliveryFailed(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The outbox could not deliver; `permanent` means the chat is gone or the bot blocked."""

    key: str
    permanent: bool
    reason: str
    seq: int | None = None  # the turn whose reply did not arrive (to send again)


class TargetMoved(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The chat got a new id (a group upgraded to a supergroup); the session keeps its key."""

    key: str
    chat_id: int


class Recover(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Wake a session that has unanswered messages or a turn cut short by a restart."""

    key: str


class Forget(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Delete the session's stored data and start it afresh (cleanup); `done` is set when it is gone.

    With `idle_since` (a cleanup listed the session as last active then), the session is kept if it
    was active after that or has work waiting: a list shown to someone is not a licence to delete what
    happened since. `done` is set either way.
    """

    key: str
    done: threading.Event
    idle_since: float | None = None


class Drain(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Set `done` once the session has answered everything it holds (the console waits on it)."""

    key: str
    done: threading.Event


class RunTurn(msgspec.Struct, frozen=True, gc=False):
    """A session's note to itself: answer what is pending (queued behind what already arrived)."""


class Evict(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    key: str


class Evicted(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The actor saved everything and is stopping; the Supervisor may spawn the key again."""

    key: str


class EvictDeclined(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The actor has work pending, so it stays."""

    key: str


class ActorFailed(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An actor died of an unexpected exception; `undelivered` are the messages it had not handled."""

    key: str
    undelivered: tuple[object, ...] = ()


class Tick(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Periodic: the Supervisor evicts idle actors."""

    now: float

