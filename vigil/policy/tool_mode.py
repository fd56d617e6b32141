"""Permission modes: what Claude's tools may do in a chat without a person saying yes.

A chat is in one of three modes (`/mode`, default `VIGIL_TOOL_MODE`):

- `ask`: every bash command, every file change of the text editor and every call of an MCP tool that may
  change something waits for a tap on Allow;
- `auto`: everything runs unasked (vigil before modes);
- `readonly`: only viewing: bash is not offered, file changes are refused, only read-only MCP tools are offered.

What counts as risky is decided here, once, from the tool call alone: a shell command (not a bare
`restart`, which runs nothing), an editor command other than `view`, and a call of an MCP tool
(`mcp__<server>__<tool>`) unless its server annotates it `readOnlyHint: true`. Claude's own bookkeeping
(`save_note`), sending a file of the chat's directory (`send_file`) and a heartbeat's `send_message`
change nothing on disk and never ask. The console is its user's own terminal with no buttons to tap:
there `ask` means `auto` (a chat that set `readonly` stays read-only).

Pure functions over the header and settings, so `/status`, the system prompt and the turn's gate
(actors/tools/approval_gate.py) can't disagree about a chat's mode.
"""

from __future__ import annotations

from typing import Any, Literal

from vigil.config.settings import Settings
from vigil.mcp.names import PREFIX as MCP_PREFIX
from vigil.records.schema import SessionHeader, ToolMode
from vigil.tools.skills import under_skills

BASH = "bash"
EDITOR = "str_replace_based_edit_tool"
MODES: tuple[ToolMode, ...] = ("ask", "auto", "readonly")

Risk = Literal["safe", "command", "change", "mcp"]
"""What a tool call would do: nothing a person must approve, run a shell command, change a file, or call an MCP
tool that may change something (its server acts with the operator's credentials)."""

ALLOWS: dict[ToolMode, str] = {
    "ask": "each shell command, each file change and each MCP tool that may change something waits for Allow "
           "(only the person who asked for the turn, or an admin, can answer); viewing files runs at once",
    "auto": "shell commands, file changes and MCP tools run without asking",
    "readonly": "Claude can only view files and use read-only MCP tools: no shell, file changes are refused",
}


def is_console(key: str) -> bool:
    return key.startswith("console:")


def effective_mode(header: SessionHeader, settings: Settings) -> ToolMode:
    """The chat's mode: its own choice, else the setting's default; `ask` is `auto` on the console."""
    mode: ToolMode = header.tool_mode or settings.tool_mode
    if mode == "ask" and is_console(header.key):
        return "auto"
    return mode


def mode_line(header: SessionHeader, settings: Settings, waiting: bool = False) -> str:
    """/status's line: the mode, and whether a prompt waits for a tap right now."""
    line = f"Mode: {effective_mode(header, settings)} (/mode)"
    return f"{line} · ⏳ waiting for an approval" if waiting else line


def risk_of(name: str, tool_input: dict[str, Any], read_only: bool = False) -> Risk:
    """`read_only`: for an MCP tool, whether its server annotates it `readOnlyHint: true`."""
    if name.startswith(MCP_PREFIX):
        return "safe" if read_only else "mcp"
    if name == BASH:
        # `{"restart": true}` starts nothing (every command runs in a fresh process anyway).
        return "safe" if tool_input.get("restart") is True else "command"
    if name == EDITOR:
        # A change under /skills is refused without running (actors/tools/skills.py): nothing to approve.
        return "safe" if tool_input.get("command") == "view" or under_skills(tool_input.get("path")) else "change"
    return "safe"


def offers_bash(mode: ToolMode) -> bool:
    """Read-only chats are not offered bash at all: offering a shell only to refuse it would confuse."""
    return mode != "readonly"
