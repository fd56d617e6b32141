"""send_message: the only way a heartbeat turn reaches the chat.

What a beat says is written durably (in its beat turn, opened by the first message) before it is
sent, and a message identical to one sent in the last 24 hours is not sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from vigil.actors.core.state import Session
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import ToolSet
from vigil.actors.timing.beats import message_digest
from vigil.cancel import CancelToken
from vigil.records.schema import Turn
from vigil.tools.outcome import ToolOutcome

DEDUPE_WINDOW_S = 86400.0
MAX_REMEMBERED_HASHES = 50
SEND_MESSAGE_TOOL: dict[str, Any] = {
    "name": "send_message",
    "description": ("Send a message to this chat now. Only text passed to this tool is shown to the people in "
                    "the chat; call it only when you have something genuinely worth saying."),
    "input_schema": {"type": "object", "properties": {"text": {"type": "string",
                                                               "description": "The message (Markdown allowed)."}},
                     "required": ["text"]},
}


@dataclass
class BeatSends:
    """One beat's messages: what it sent, and the turn that holds them (opened by the first)."""

    session: Session
    prompt: str
    now: float
    meter: Meter
    sent: list[str] = field(default_factory=list)
    turn: Turn | None = None


def send(sends: BeatSends, text: str) -> ToolOutcome:
    session, now = sends.session, sends.now
    assert session.header is not None
    text = text.strip()
    if not text:
        return ToolOutcome(content="not sent: the message was empty", is_error=True)
    digest = message_digest(text)
    recent = [(h, at) for h, at in session.header.heartbeat.recent_hashes if now - at < DEDUPE_WINDOW_S]
    if any(h == digest for h, _ in recent):
        return ToolOutcome(content="not sent: you already sent this exact message in the last 24 hours")
    sends.sent.append(text)
    if sends.turn is None:
        seq = session.header.next_seq
        sends.turn = Turn(seq=seq, kind="heartbeat", prompt=sends.prompt, started_at=now, model=session.header.model)
        session.header = msgspec.structs.replace(session.header, next_seq=seq + 1, open_turn=seq,
                                                 turns_total=session.header.turns_total + 1, last_turn_at=now)
    session.set_beat(recent_hashes=(*recent, (digest, now))[-MAX_REMEMBERED_HASHES:])
    # The open beat turn carries what its calls used so far: a crash before it ends is charged on recovery.
    sends.turn = msgspec.structs.replace(sends.turn, reply="\n\n".join(sends.sent), usage=sends.meter.usage())
    if not session.commit(sends.turn, wait=True):
        return ToolOutcome(content="not sent: it could not be saved", is_error=True)
    session.send(text, markdown=True)
    return ToolOutcome(content="sent")


def send_message_tools(sends: BeatSends) -> ToolSet:
    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return send(sends, str(tool_input.get("text", "")))

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        return name

    return ToolSet(specs=(SEND_MESSAGE_TOOL,), run=run, describe=describe)
