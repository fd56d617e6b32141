"""The table of session commands: name → handler, contributed by the parts that own them.

A handler is a function of the session and the command. A new command is a function in the part
it belongs to and an entry in that part's `COMMANDS`; a new part is one line below. A name no part
handles is answered "Unknown command".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vigil.actors.commands import (
    conversation as conversation_commands,
)
from vigil.actors.commands import (
    heartbeat,
    pin,
)
from vigil.actors.commands import (
    mcp as mcp_command,
)
from vigil.actors.commands import (
    mode as mode_command,
)
from vigil.actors.commands import (
    schedules as schedule_commands,
)
from vigil.actors.commands import (
    session as session_commands,
)
from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.actors.turns import compaction, think

CommandHandler = Callable[[Session, SessionCommand], None]

COMMANDS: Mapping[str, CommandHandler] = {
    **session_commands.COMMANDS,
    **heartbeat.COMMANDS,
    **conversation_commands.COMMANDS,
    **pin.COMMANDS,
    **mode_command.COMMANDS,
    **compaction.COMMANDS,
    **schedule_commands.COMMANDS,
    **think.COMMANDS,
    **mcp_command.COMMANDS,
}


def run_command(session: Session, message: SessionCommand,
                commands: Mapping[str, CommandHandler] = COMMANDS) -> None:
    handler = commands.get(message.name)
    if handler is None:
        session.send(f"Unknown command /{message.name}.")
        return
    handler(session, message)
