"""A user edited a message they sent: the session replaces it, or takes the new text as a correction.

An edit arrives like any message (durable inbox first, then the mailbox, in order after the message it
edits), so when the session handles it the edited message is in one of two places:

- still waiting (`header.pending`: not answered, no turn started): its text is replaced in place, its
  attachments kept, and the turn that answers it sees only the new text;
- in a turn of the current conversation (answered, or being answered when the edit came: the actor
  handles the edit once that turn ends): the new text becomes a new message, marked as a correction
  of the old one ("[edited their earlier message «…» to:]"), answered in a turn of its own.

Messages are matched by Telegram's `message_id` (unique within a chat) and the sender. An edit of a
message the session never took (a command, group chatter not addressed to the bot, a message of an
earlier conversation or older than the last `LOOK_BACK` turns) is dropped, and so is one that changes
nothing the model sees. Either way the edit's inbox entry goes with the commit that puts its effect
in the header or a turn, like a message's: a crash before that replays the message and then the edit.
"""

from __future__ import annotations

import msgspec

from vigil.actors.core.protocol import UserText
from vigil.actors.core.state import Session
from vigil.actors.turns import user as user_turn
from vigil.records.schema import Input

LOOK_BACK = 50  # turns of the current conversation searched for the message an edit changes
QUOTE_CHARS = 200
_MARK = "[edited their earlier message «{quote}» to:]\n"


def correction_text(before: str, after: str) -> str:
    """What the model reads for an edit of a message it already answered."""
    flat = " ".join(before.split())
    quote = flat if len(flat) <= QUOTE_CHARS else flat[:QUOTE_CHARS].rstrip() + "…"
    return _MARK.format(quote=quote) + after


def _said(item: Input) -> str:
    """The words of an input as its sender last wrote them (a correction's without its mark)."""
    return item.text.split("\n", 1)[1] if item.edited == "correction" and "\n" in item.text else item.text


def accept(session: Session, message: UserText) -> None:
    """Apply an edit (see the module docstring); called where a new message would be accepted."""
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    sender = message.sender.user_id

    def ours(item: Input) -> bool:
        return item.message_id == message.message_id and item.user_id == sender

    waiting = next((i for i, item in enumerate(header.pending) if ours(item)), None)
    if waiting is not None and header.pending[waiting].edited != "correction":
        item = header.pending[waiting]
        _replace(session, waiting, msgspec.structs.replace(item, text=message.text, edited="replaced"), message)
        return
    answered = _answered(session, message.message_id, sender)
    if answered is None or _said(answered) == message.text:
        session.log.info("session.edit_ignored", message_id=message.message_id,
                         reason="unknown message" if answered is None else "unchanged")
        _drop(session, message.inbox_id)
        return
    text = correction_text(_said(answered), message.text)
    if waiting is not None:  # a correction not answered yet is itself corrected: one correction, the newest
        _replace(session, waiting, msgspec.structs.replace(header.pending[waiting], text=text), message)
        return
    user_turn.accept(session, msgspec.structs.replace(message, text=text))
    assert session.header is not None
    *before, last = session.header.pending
    session.header = msgspec.structs.replace(
        session.header, pending=(*before, msgspec.structs.replace(last, edited="correction")))


def _replace(session: Session, index: int, item: Input, message: UserText) -> None:
    assert session.header is not None
    pending = list(session.header.pending)
    if pending[index].text == item.text:
        _drop(session, message.inbox_id)
        return
    pending[index] = item
    if message.inbox_id:
        session.unconsumed.append(message.inbox_id)  # leaves the inbox with the commit that holds the new text
    session.header = msgspec.structs.replace(session.header, pending=tuple(pending), last_activity=message.at)
    session.dirty = True
    session.publish()


def _answered(session: Session, message_id: int, sender: int) -> Input | None:
    """The newest input of the current conversation's recent turns that came from this message."""
    assert session.header is not None
    if not message_id or not session.header.next_seq:
        return None
    turns = session.deps.store.last_turns(session.key, session.header.generation, LOOK_BACK)
    for turn in reversed(turns):
        for item in reversed(turn.inputs):
            if item.message_id == message_id and item.user_id == sender:
                return item
    return None


def _drop(session: Session, arrival: int) -> None:
    if arrival:
        session.unconsumed.append(arrival)
        session.consume_alone(arrival)
