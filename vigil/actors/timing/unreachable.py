"""A chat vigil cannot reach pauses its schedules until someone writes in it again.

When Telegram refuses a reply for good (the bot was blocked, removed from the group, the chat is gone),
every later firing of a reminder or a recurring task would be a model call paid for nothing, failing
the same way. The heartbeat is turned off then (actors/commands/heartbeat.py); schedules are kept, since someone
asked for each of them, but paused: the header says why (`SessionHeader.unreachable`), which takes them
out of the timer's index (vigil/records/wake.py). The next message from a user (they unblocked the bot, or
added it back) resumes them: what fell due meanwhile fires at once, marked late, and recurring ones go on.
"""

from __future__ import annotations

import msgspec

from vigil.actors.core.protocol import DeliveryFailed
from vigil.actors.core.state import Session
from vigil.actors.timing.schedules import rearm


def on_delivery_failed(session: Session, message: DeliveryFailed) -> None:
    """A reply was refused: if for good, and schedules are waiting, pause them."""
    header = session.header
    if not message.permanent or header is None or header.unreachable or not header.schedules:
        return
    session.header = msgspec.structs.replace(header, unreachable=f"the chat can't be reached ({message.reason[:80]})")
    if not session.commit(wait=True):
        return  # still unpaused: the next firing fails the same way and asks again
    rearm(session)
    session.log.warning("schedules.paused_unreachable", reason=message.reason, schedules=len(header.schedules))


def resume(session: Session) -> None:
    """A user wrote (the message is accepted, not yet committed): schedules go on, without a word."""
    header = session.header
    if header is None or not header.unreachable:
        return
    session.header = msgspec.structs.replace(header, unreachable="")
    session.dirty = True  # committed with the message (the header holds it as pending)
    rearm(session)
    session.log.info("schedules.resumed", schedules=len(header.schedules))


def status_line(session: Session) -> str:
    """For /schedules: why none fire now; "" when they do."""
    if session.header is None or not session.header.unreachable:
        return ""
    return (f"⏸ Paused: {session.header.unreachable}. They go on (what fell due meanwhile at once) "
            "when someone writes here.")
