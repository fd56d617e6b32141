"""/pin: keep this session whatever its age, out of reach of retention and cleanups.

`VIGIL_RETENTION` and `/sessions cleanup` delete sessions and past conversations by age
(vigil/policy/expiry.py); a pinned session is never listed, and is kept whole, its earlier conversations
too. The pin is a field of the header (`pinned`), so it lives as long as the session and is seen by
another process (`vigil sessions cleanup`) as well. `/pin` pins, `/pin off` releases.
"""

from __future__ import annotations

import msgspec

from vigil.actors.commands.session import NOT_SAVED
from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session

_OFF = ("off", "no", "unpin", "release")


def cmd_pin(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    word = message.args.strip().lower()
    if word not in ("", "on", *_OFF):
        session.reply(message.target, "Use /pin to keep this chat's history whatever its age, /pin off to release it.")
        return
    wanted = word not in _OFF
    if header.pinned == wanted:
        session.reply(message.target, "📌 This chat is pinned already." if wanted else "This chat is not pinned.")
        return
    session.header = msgspec.structs.replace(header, pinned=wanted)
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, f"{NOT_SAVED} The pin is unchanged.")
        return
    session.reply(message.target, "📌 Pinned: retention and cleanups keep this chat's history, however old. "
                  "/pin off releases it." if wanted else
                  "Unpinned: this chat's history is deleted by retention and cleanups once it is old enough.")


COMMANDS = {"pin": cmd_pin}
