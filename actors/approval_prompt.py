"""What an approval prompt says: the command, or a short diff of the file change, and who may answer.

The person deciding must see what would run, not a summary of it: a shell command is shown whole
(up to a few thousand characters), an edit as a few lines of `-`/`+`. Sent as plain text, so the
outbox escapes whatever the model wrote (nothing in it can break or format the message), and kept
well under Telegram's 4096 so the buttons sit under the whole of it.
"""

from __future__ import annotations

from typing import Any

from vigil.approvals import LABELS, button_data
from vigil.durations import format_duration
from vigil.ports import Button
from vigil.tool_mode import BASH

COMMAND_CHARS = 2000
DIFF_LINES = 8  # per side
LINE_CHARS = 160


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def _lines(text: str, mark: str) -> list[str]:
    lines = _printable(text).splitlines() or [""]
    shown = [f"{mark} {line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + '…'}"
             for line in lines[:DIFF_LINES]]
    if len(lines) > DIFF_LINES:
        shown.append(f"{mark} … ({len(lines) - DIFF_LINES} more lines)")
    return shown


def _text(tool_input: dict[str, Any], field: str) -> str:
    value = tool_input.get(field)
    return value if isinstance(value, str) else ""


def what(name: str, tool_input: dict[str, Any]) -> str:
    """The action itself: the command, or the change as a short diff."""
    if name == BASH:
        command = _printable(_text(tool_input, "command")).strip() or "(an empty command)"
        if len(command) > COMMAND_CHARS:
            command = command[:COMMAND_CHARS] + f"… ({len(command) - COMMAND_CHARS} more characters)"
        return f"Claude wants to run this command:\n\n{command}"
    path = _printable(_text(tool_input, "path")) or "(no path)"
    action = tool_input.get("command")
    if action == "create":
        body = _text(tool_input, "file_text")
        count = len(body.splitlines())
        return "\n".join([f"Claude wants to create (or overwrite) {path} ({count} line{'s' * (count != 1)}):", "",
                          *_lines(body, "+")])
    if action == "str_replace":
        return "\n".join([f"Claude wants to change {path}:", "", *_lines(_text(tool_input, "old_str"), "-"),
                          *_lines(_text(tool_input, "new_str"), "+")])
    if action == "insert":
        line = tool_input.get("insert_line")
        return "\n".join([f"Claude wants to insert into {path} after line {line}:", "",
                          *_lines(_text(tool_input, "insert_text"), "+")])
    return f"Claude wants to run the editor's {_printable(str(action))!r} on {path}."


def prompt_text(name: str, tool_input: dict[str, Any], asker_name: str, timeout_s: float) -> str:
    who = asker_name or "the person whose message started this"
    return (f"🔐 {what(name, tool_input)}\n\n"
            f"Only {who} (or an admin) can answer; no answer within {format_duration(timeout_s)} counts as Deny.")


def prompt_buttons(token: str) -> tuple[tuple[Button, ...], ...]:
    return ((Button(LABELS["allow"], button_data(token, "allow")), Button(LABELS["deny"], button_data(token, "deny"))),
            (Button(LABELS["turn"], button_data(token, "turn")),))
