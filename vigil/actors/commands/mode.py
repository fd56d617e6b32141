"""`/mode [ask|auto|readonly]`: show or set what Claude's tools may do in this chat without asking.

A session command (it changes the header, in order with the chat's messages); the choice lives in the
header's `tool_mode`, and a chat that never chose follows `VIGIL_TOOL_MODE`. What each mode allows is
vigil/policy/tool_mode.py's; the gate that applies it, actors/tools/approval_gate.py.
"""

from __future__ import annotations

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.policy.tool_mode import ALLOWS, MODES, effective_mode, is_console
from vigil.records.schema import ToolMode

NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."


def _overview(session: Session, note: str = "") -> str:
    assert session.header is not None
    mode = effective_mode(session.header, session.deps.settings)
    chosen = "" if session.header.tool_mode else " (the default)"
    lines = [f"{note}🔐 Mode for this chat: {mode}{chosen}: {ALLOWS[mode]}.", ""]
    lines += [f"{'•' if m == mode else '◦'} /mode {m}: {ALLOWS[m]}" for m in MODES]
    if is_console(session.key):
        lines += ["", "On the console (your own terminal, no buttons) ask works as auto."]
    return "\n".join(lines)


def cmd_mode(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    wanted = message.args.strip().lower()
    if not wanted:
        session.reply(message.target, _overview(session))
        return
    if wanted not in MODES:
        session.reply(message.target, f"⛔ {message.args.strip()!r} is not a mode: /mode ask, /mode auto or "
                                      "/mode readonly.")
        return
    mode: ToolMode = next(m for m in MODES if m == wanted)
    if mode == "ask" and is_console(session.key):
        session.reply(message.target, "⛔ The console has no buttons to approve with: it runs as auto or readonly.")
        return
    session.header = msgspec.structs.replace(header, tool_mode=mode)
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, NOT_SAVED)
        return
    session.reply(message.target, _overview(session, "Done. "))


COMMANDS = {"mode": cmd_mode}
