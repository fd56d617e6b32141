"""The system prompt of a session.

It holds only what changes rarely (the chat, its directory, the notes), so it
stays byte-identical between turns and the prompt cache keeps paying; the time
of day travels in the heartbeat prompt instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vigil.records.schema import Note, SessionHeader, ToolMode

RECALL_SENTENCE = ("You can search this chat's earlier conversations, including what no longer fits in your "
                   "context, with the recall tool: use it whenever the user refers to something said before that "
                   "you cannot see.")
NOTES_SHOWN = 20
NOTES_CHARS = 4000

_BASE = """You are Claude, talking with people through {channel} via vigil. Each chat is its own \
session with its own history and working directory.

This chat: {where}.
Working directory: {cwd}
{tools}
Your replies are shown in a chat app: write concisely; use Markdown sparingly (bold, italics, \
`code`, fenced code blocks, short lists). {group_hint}"""


def _where(header: SessionHeader) -> str:
    if header.chat_type in ("group", "supergroup"):
        topic = f", topic {header.target.thread_id}" if header.target.thread_id else ""
        return f'the group "{header.title}"{topic}' if header.title else f"a group chat{topic}"
    if header.chat_type == "console":
        return "a terminal session"
    return f"a private chat with {header.title}" if header.title else "a private chat"


def notes_section(notes: Sequence[Note]) -> str:
    """Newest first, bounded in count and characters."""
    lines: list[str] = []
    used = 0
    for note in sorted(notes, key=lambda n: n.at, reverse=True)[:NOTES_SHOWN]:
        line = f"- {note.text.strip()}"
        if used + len(line) > NOTES_CHARS:
            break
        lines.append(line)
        used += len(line)
    if not lines:
        return ""
    return "Your notes for this chat (saved with save_note, newest first):\n" + "\n".join(lines)


def system_blocks(header: SessionHeader, notes: Sequence[Note],
                  tool_names: Sequence[str], mode: ToolMode | None = None,
                  skills: str = "") -> tuple[dict[str, Any], ...]:
    """The system prompt as text blocks; the last carries the cache breakpoint. `mode`: the chat's permission
    mode, said in a line when the turn offers tools it governs (None: a turn where no one is asked). `skills`:
    the Agent Skills' listing (vigil/tools/skills.py: names and descriptions), shown when the editor can read them."""
    tools = ""
    if "str_replace_based_edit_tool" in tool_names:
        tools = ("You can read and edit files in the working directory with the text editor tool; "
                 "relative paths resolve against it and you cannot leave the working root.\n")
    if "bash" in tool_names:
        tools += "You can run shell commands with the bash tool; each command starts in the working directory.\n"
    if "send_file" in tool_names:
        tools += "You can send a file from the working directory to the chat with send_file.\n"
    if mode is not None and "str_replace_based_edit_tool" in tool_names:
        tools += mode_sentence(mode) + "\n"
    if "recall" in tool_names:
        tools += RECALL_SENTENCE + "\n"
    if "schedule" in tool_names:
        tools += ("You can set reminders and recurring tasks in this chat with schedule (its list action also "
                  "tells the current time).\n")
    group_hint = ("Messages from the group are prefixed with the sender's name in brackets."
                  if header.chat_type in ("group", "supergroup") else "")
    text = _BASE.format(channel="a terminal" if header.chat_type == "console" else "Telegram",
                        where=_where(header), cwd=header.cwd, tools=tools, group_hint=group_hint).strip()
    if skills and "str_replace_based_edit_tool" in tool_names:
        text = f"{text}\n\n{skills}"
    section = notes_section(notes)
    if section:
        text = f"{text}\n\n{section}"
    return ({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}},)


def mode_sentence(mode: ToolMode) -> str:
    """The system prompt's line about the mode: brief, and what it asks of Claude."""
    if mode == "ask":
        return ("Permission mode: ask. The user sees each shell command (or the diff of each file change, or the "
                "arguments of each MCP tool that may change something) before it runs and must approve it, and "
                "may decline. So say in a sentence what a command or change is for before you make the call; if "
                "one is declined, don't retry it: ask instead.")
    if mode == "readonly":
        return ("Permission mode: read-only. You can view files but not change them or run commands; "
                "the user can switch with /mode.")
    return "Permission mode: auto. Your commands and file changes run without asking the user."
