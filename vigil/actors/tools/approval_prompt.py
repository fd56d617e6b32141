"""What an approval prompt shows: the whole command, the whole change as a diff, or an MCP tool's server, name
and every argument, and who may answer.

The person deciding must see everything they are asked about, not a summary of it: a command that is
cut, or a diff that stops after a few lines, may hide what matters, and they would allow what they never
saw. So a prompt that fits one Telegram message (PROMPT_LIMIT) carries everything; one that does not goes
with a file holding the whole command or diff (sent before it, so the buttons come after what they are
about) and shows its first lines. Sent as plain text, so the outbox escapes whatever the model wrote
(nothing in it can break or format the message); what cannot be shown (control characters) shows as
`?`, and the file keeps the exact bytes.
"""

from __future__ import annotations

import json
from typing import Any

from vigil.durations import format_duration
from vigil.mcp.tools import McpTool
from vigil.policy.tool_mode import BASH
from vigil.ports import Button, Document, Reply
from vigil.text import one_line
from vigil.tools.approvals import LABELS, button_data

PROMPT_LIMIT = 3500  # UTF-16 units of one prompt message, well under Telegram's 4096
PREVIEW_LINES = 12  # of a prompt whose whole subject goes in a file
LINE_CHARS = 160


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _marked(text: str, mark: str) -> list[str]:
    return [f"{mark} {line}" for line in text.splitlines() or [""]]


def _text(tool_input: dict[str, Any], field: str) -> str:
    value = tool_input.get(field)
    return value if isinstance(value, str) else ""


def subject(name: str, tool_input: dict[str, Any], mcp: McpTool | None = None) -> tuple[str, str, str]:
    """(the headline, the whole of what is asked about: the command, the change as `-`/`+` lines or an MCP
    tool's arguments, the name of the file that carries it when it does not fit the prompt)."""
    if mcp is not None:
        about = one_line(mcp.title or mcp.description, 200)
        return (f"Claude wants to use the tool {_printable(mcp.tool)!r} of the MCP server {mcp.server!r}"
                + (f" ({_printable(about)})" if about else "") + " with these arguments:",
                json.dumps(tool_input, ensure_ascii=False, indent=2, sort_keys=True), "arguments.json")
    if name == BASH:
        command = _text(tool_input, "command").strip() or "(an empty command)"
        return "Claude wants to run this command:", command, "command.sh"
    path = _printable(_text(tool_input, "path")) or "(no path)"
    action = tool_input.get("command")
    if action == "create":
        body = _text(tool_input, "file_text")
        count = len(body.splitlines())
        return (f"Claude wants to create (or overwrite) {path} ({count} line{'s' * (count != 1)}):",
                "\n".join(_marked(body, "+")), "change.diff")
    if action == "str_replace":
        return (f"Claude wants to change {path}:",
                "\n".join([*_marked(_text(tool_input, "old_str"), "-"), *_marked(_text(tool_input, "new_str"), "+")]),
                "change.diff")
    if action == "insert":
        return (f"Claude wants to insert into {path} after line {tool_input.get('insert_line')}:",
                "\n".join(_marked(_text(tool_input, "insert_text"), "+")), "change.diff")
    return f"Claude wants to run the editor's {_printable(str(action))!r} on {path}.", "", ""


def what(name: str, tool_input: dict[str, Any], mcp: McpTool | None = None) -> str:
    """The action itself, whole: the command, the change as a diff, or the MCP tool and its arguments."""
    headline, body, _ = subject(name, tool_input, mcp)
    return f"{headline}\n\n{_printable(body)}" if body else headline


def prompt_reply(name: str, tool_input: dict[str, Any], asker_name: str, timeout_s: float, token: str,
                 mcp: McpTool | None = None) -> Reply:
    """The prompt with its buttons; with the whole command, diff or arguments in a file before it when it is too
    long. `mcp`: the MCP tool `name` is, for a call of one."""
    who = asker_name or "the person whose message started this"
    footer = f"Only {who} (or an admin) can answer; no answer within {format_duration(timeout_s)} counts as Deny."
    whole = f"🔐 {what(name, tool_input, mcp)}\n\n{footer}"
    if _units(whole) <= PROMPT_LIMIT:
        return Reply(text=whole, buttons=prompt_buttons(token))
    headline, body, filename = subject(name, tool_input, mcp)
    lines = _printable(body).splitlines()
    preview = "\n".join(line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"
                        for line in lines[:PREVIEW_LINES])
    size = f"{len(lines)} line{'s' * (len(lines) != 1)}, {len(body)} characters"
    text = (f"🔐 {headline}\n\n{preview}\n…\n\nThat is its beginning: the whole of it ({size}) is in {filename} "
            f"just above. Read it before you answer.\n\n{footer}")
    return Reply(text=text, buttons=prompt_buttons(token),
                 document=Document(filename=filename, content=body.encode(errors="replace"),
                                   caption=f"🔐 All of what the approval prompt below asks about ({size})."))


def prompt_buttons(token: str) -> tuple[tuple[Button, ...], ...]:
    return ((Button(LABELS["allow"], button_data(token, "allow")), Button(LABELS["deny"], button_data(token, "deny"))),
            (Button(LABELS["turn"], button_data(token, "turn")),))
