"""save_note: the model's scratchpad for a chat, shown to it in every later turn."""

from __future__ import annotations

from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.records.schema import Note
from vigil.tools.outcome import ToolOutcome

MAX_NOTES = 50
MAX_NOTE_CHARS = 1000
SAVE_NOTE_TOOL: dict[str, Any] = {
    "name": "save_note",
    "description": ("Save a short note to this chat's scratchpad: your memory across turns and check-ins. "
                    "Notes are shown to you, newest first, in every later turn of this chat."),
    "input_schema": {"type": "object", "properties": {"text": {"type": "string",
                                                               "description": "The note, one or two lines."}},
                     "required": ["text"]},
}


def save_note(session: Session, tool_input: dict[str, Any]) -> ToolOutcome:
    text = str(tool_input.get("text", "")).strip()
    if not text:
        return ToolOutcome(content="not saved: the note was empty", is_error=True)
    if len(text) > MAX_NOTE_CHARS:
        return ToolOutcome(content=f"not saved: notes are at most {MAX_NOTE_CHARS} characters; shorten it",
                           is_error=True)
    try:
        session.deps.store.add_note(session.key, Note(text=text, at=session.deps.clock()), MAX_NOTES).result()
    except Exception as exc:
        return ToolOutcome(content=f"not saved: the store refused ({exc})", is_error=True)
    session.notes_cache = None  # the next prompt shows the new note
    return ToolOutcome(content="saved")


def note_tools(session: Session) -> ToolSet:
    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return save_note(session, tool_input)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        return name

    return ToolSet(specs=(SAVE_NOTE_TOOL,), run=run, describe=describe)
