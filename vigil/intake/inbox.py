"""The durable inbox: a message vigil received is on disk before any session sees it.

Without it, messages sent while a turn runs wait only in the actor's memory, and a
`kill -9` during a long turn loses them all. So `Runtime.submit` hands every
`UserText` and `SessionCommand` to `Inbox.accept`, which stamps an arrival id on it,
queues its `InboxEntry` for the group-commit writer and only then tells the
Supervisor. Nobody waits for that write: the writer commits it within one group
commit (milliseconds), which is the only window in which a crash can lose a received
message; the future is returned for a caller that must know (a webhook's answer).

The session deletes the entry in the same transaction that makes the message part of
its own durable state (the header's `pending`, or the turn answering it), so at every
durable point each message is in exactly one place: never lost, never answered twice.
At start-up `load` reads what is left and the runtime tells it again, in arrival
order, before the adapters take new updates.

Arrival ids grow across restarts (they start above the wall clock in nanoseconds and
above every id left in the inbox) and are handed out under a lock (one of a few stripes,
chosen by session key) together with the tell, so a session sees its messages in id
order: `/forget` and cleanup rely on that to delete exactly the messages the session has
seen, not the ones queued behind them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import msgspec

from vigil.actors.core.protocol import Sender, SessionCommand, UserText
from vigil.intake.receipt import CURRENT
from vigil.ports import Store, WriteFuture
from vigil.records.schema import InboxEntry

Inbound = UserText | SessionCommand


def entry_of(message: Inbound) -> InboxEntry:
    """The record of a received message."""
    sender = message.sender
    if isinstance(message, UserText):
        return InboxEntry(kind="edit" if message.edited else "text", key=message.key, target=message.target,
                          at=message.at, user_id=sender.user_id, user_name=sender.name, username=sender.username,
                          text=message.text, message_id=message.message_id, chat_title=message.chat_title,
                          chat_type=message.chat_type, attachments=message.attachments)
    return InboxEntry(kind="command", key=message.key, target=message.target, at=time.time(),
                      user_id=sender.user_id, user_name=sender.name, username=sender.username,
                      text=message.args, command=message.name, chat_title=message.chat_title,
                      chat_type=message.chat_type)


def message_of(arrival: int, entry: InboxEntry) -> Inbound:
    """The message again, as the adapter handed it in, carrying its arrival id."""
    sender = Sender(user_id=entry.user_id, name=entry.user_name, username=entry.username)
    if entry.kind == "command":
        return SessionCommand(key=entry.key, target=entry.target, sender=sender, name=entry.command,
                              args=entry.text, chat_title=entry.chat_title, chat_type=entry.chat_type,
                              inbox_id=arrival)
    return UserText(key=entry.key, target=entry.target, sender=sender, text=entry.text, at=entry.at,
                    message_id=entry.message_id, chat_title=entry.chat_title, chat_type=entry.chat_type,
                    inbox_id=arrival, attachments=entry.attachments, edited=entry.kind == "edit")


class Inbox:
    """Hands out arrival ids and writes received messages ahead of their delivery."""

    # Order matters only within a session (its messages must reach it in id order); messages of other
    # sessions need not wait for each other, so the lock that ties an id to its tell is one of a few
    # stripes chosen by key, not one lock for the whole service (actor threads submit side by side).
    STRIPES = 64

    def __init__(self, store: Store) -> None:
        self._store = store
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]
        self._ids = itertools.count(time.time_ns())  # next() on it is atomic: ids are unique and rising

    def load(self) -> list[tuple[int, Inbound]]:
        """What waits in the inbox, oldest first; later arrival ids will be above all of it.

        Called before anything is accepted (Runtime.start runs it before the adapters take updates).
        """
        waiting = [(arrival, message_of(arrival, entry)) for arrival, entry in self._store.inbox()]
        self._ids = itertools.count(max([time.time_ns(), *(arrival + 1 for arrival, _ in waiting)]))
        return waiting

    def accept(self, message: Inbound, tell: Callable[[Inbound], None]) -> WriteFuture:
        """Write the message to the inbox (not waited for), then tell it on, stamped with its arrival id."""
        receipt = CURRENT.get()  # the Telegram update whose confirmation waits for this write (vigil/intake/receipt.py)
        with self._stripes[hash(message.key) % self.STRIPES]:
            arrival = next(self._ids)
            stamped = msgspec.structs.replace(message, inbox_id=arrival)
            entry = entry_of(stamped)
            if receipt is None:
                future = self._store.receive(arrival, entry)
            else:
                future = receipt.write(lambda updates: self._store.receive(arrival, entry, updates))
            tell(stamped)
        return future
