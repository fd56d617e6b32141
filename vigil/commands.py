"""The chat commands: one catalogue (names, help, where each runs) and one parser.

A command either changes the session, and so goes through the session's
mailbox in order with its messages ("session"), or only reads or signals, and
is answered at once without waiting behind a running turn ("control").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.ports import Button, CommandScope


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    scope: CommandScope


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "/start", "what vigil is and how to use it", "control"),
    CommandSpec("help", "/help", "this list of commands", "control"),
    CommandSpec("new", "/new [TITLE]", "start another conversation here; this one is kept (/resume)", "session"),
    CommandSpec("status", "/status", "this session: state, model, directory, turns, cost, heartbeat", "control"),
    CommandSpec("sessions", "/sessions [cleanup [AGE]]",
                "your sessions, newest first; cleanup deletes those idle longer than AGE (default 24h)", "control"),
    CommandSpec("cd", "/cd DIR", "change this chat's working directory (inside the work root)", "session"),
    CommandSpec("pwd", "/pwd", "show this chat's working directory", "control"),
    CommandSpec("model", "/model [NAME]", "show the models, or set this chat's model", "session"),
    CommandSpec("heartbeat", "/heartbeat [on|off|every DUR|hours HH-HH|tz ZONE|test|status]",
                "this chat's own check-ins", "session"),
    CommandSpec("notes", "/notes [clear]", "the notes Claude keeps for this chat", "session"),
    CommandSpec("usage", "/usage", "your tokens and cost: today, 7 and 30 days, per chat", "control"),
    CommandSpec("stop", "/stop", "stop the reply in progress at once", "control"),
    CommandSpec("export", "/export", "this session's history as a JSON file", "control"),
    CommandSpec("forget", "/forget", "delete this session's stored data (asks first)", "session"),
    CommandSpec("resume", "/resume [N]", "this chat's earlier conversations; go back to one", "session"),
    CommandSpec("title", "/title [NAME]", "show or set this conversation's title", "session"),
    CommandSpec("pin", "/pin [off]", "keep this chat's history whatever its age (retention, cleanups)", "session"),
    CommandSpec("mode", "/mode [ask|auto|readonly]",
                "what Claude's commands and file changes may do here: ask first, run, or only read", "session"),
    CommandSpec("compact", "/compact", "fold the earlier conversation into a summary now (/export keeps it all)",
                "session"),
    CommandSpec("schedules", "/schedules [cancel ID]", "this chat's reminders and recurring tasks", "session"),
    CommandSpec("search", "/search WORDS", "find words in this chat's conversations, earlier ones included", "control"),
    CommandSpec("think", "/think [off|auto|low|medium|high|show [off]]",
                "whether Claude thinks before answering here, and whether you see its thinking", "session"),
    CommandSpec("mcp", "/mcp [on|off NAME]",
                "this chat's MCP servers: their state and tools (a vigil admin turns one on or off)", "control"),
    CommandSpec("skills", "/skills", "the Agent Skills Claude can read and use", "control"),
)
BY_NAME = {spec.name: spec for spec in COMMANDS}

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,64}))?(?:\s+(.*))?$", re.DOTALL)


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    args: str
    addressed_to: str | None  # the @bot suffix, if any

    @property
    def spec(self) -> CommandSpec | None:
        return BY_NAME.get(self.name)


def parse_command(text: str) -> ParsedCommand | None:
    """`/name[@bot] args` -> ParsedCommand; None if the text is not a command at all."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name, bot, args = match.groups()
    return ParsedCommand(name=name.lower(), args=(args or "").strip(), addressed_to=bot)


CANCEL = "cancel"


def cancel_button(asker: int) -> Button:
    """A prompt's Cancel: it names who asked, so in a group only they (or an admin) may take the prompt away."""
    return Button("Cancel", f"{CANCEL}:{asker}")


def cancel_asker(data: str) -> int | None:
    """Who asked for the prompt a Cancel button belongs to: None for a button from before they were named (an
    admin's then); raises ValueError if `data` is no Cancel button."""
    if data == CANCEL:
        return None
    word, _, asker = data.partition(":")
    if word != CANCEL or not asker.isdigit():
        raise ValueError(data)
    return int(asker)


def help_text() -> str:
    lines = ["Commands:"]
    lines += [f"{spec.usage} — {spec.summary}" for spec in COMMANDS]
    lines.append("")
    lines.append("Anything else you write goes to Claude. Every chat (and each forum topic) is its own session.")
    return "\n".join(lines)
