"""`/mcp` and `/skills`, answered at once: what a chat can reach beyond its directory and the web.

`/mcp` shows the chat's MCP servers (its header's choice over `VIGIL_MCP_DEFAULT`), each with its state
(not started, running, failed and why, when it is tried again) and its tools, read-only ones apart; the
servers configured but off here by name. It reads the manager's snapshots and never waits on a server,
so it answers while a slow call runs. No credential is in any of it: a server is shown as its command
(without its arguments) or its URL without user, password or query (vigil/mcp/config.py). The operator's
config problems are shown to vigil admins only.

`/mcp on|off NAME` changes the chat's header, so it goes to the session in order with the chat's
messages (actors/commands/mcp.py); vigil/policy/roles.py has refused it already unless a vigil admin asked.

`/skills` lists the Agent Skills Claude is told about (their names and descriptions) and the folders
left out, with why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vigil.actors.core.protocol import SessionCommand
from vigil.control.caller import Caller
from vigil.mcp.config import effective_servers
from vigil.mcp.tools import NO_CONFIG, server_lines
from vigil.ports import Reply
from vigil.records.schema import SessionHeader

if TYPE_CHECKING:  # the session's side (actors/commands/mcp.py) shares server_lines; the runtime imports it
    from vigil.runtime import Runtime

__all__ = ["McpCommands"]

class McpCommands:
    """The control side of `/mcp` and `/skills`; `header` reads a chat's header (live, else stored)."""

    def __init__(self, runtime: Runtime, header: Callable[[str], SessionHeader | None]) -> None:
        self.runtime = runtime
        self.header = header

    def mcp(self, caller: Caller, args: str) -> Reply | None:
        words = args.split()
        if not words:
            return Reply(text=self.overview(caller))
        if words[0].lower() not in ("on", "off"):
            return Reply(text="⛔ /mcp shows this chat's MCP servers; /mcp on NAME and /mcp off NAME turn one on or "
                              "off here.")
        if len(words) < 2:
            return Reply(text=f"Which server? /mcp {words[0].lower()} NAME; /mcp lists them.")
        self.runtime.submit(SessionCommand(key=caller.key, target=caller.target, sender=caller.sender, name="mcp",
                                           args=args, chat_title=caller.chat_title, chat_type=caller.chat_type))
        return None

    def overview(self, caller: Caller) -> str:
        manager = self.runtime.mcp
        problems = self.runtime.mcp_config.problems
        if manager is None:
            lines = [NO_CONFIG]
        else:
            header = self.header(caller.key)
            on = effective_servers(header.mcp_on if header else (), header.mcp_off if header else (),
                                   self.runtime.settings.mcp_default, manager.servers)
            lines = ["🔌 MCP servers on in this chat:" if on else "🔌 No MCP server is on in this chat."]
            for status in manager.status(on):
                lines += server_lines(status)
            off = [name for name in manager.servers if name not in on]
            if off:
                how = "/mcp on NAME" if caller.admin else "a vigil admin can turn one on here with /mcp on NAME"
                lines += ["", f"Off here: {', '.join(off)} ({how})."]
        if problems and caller.admin:
            lines += ["", "⚠️ Left out of VIGIL_MCP_CONFIG:", *(f"• {problem}" for problem in problems)]
        return "\n".join(lines)

    def skills(self, caller: Caller) -> Reply:
        found = self.runtime.skills.current()
        if found.skills:
            lines = [f"🧩 Agent Skills Claude can use ({len(found.skills)}): it reads a skill's SKILL.md when a task "
                     "calls for it."]
            lines += [f"• {skill.name} — {' '.join(skill.description.split())}" for skill in found.skills]
        else:
            lines = ["🧩 No Agent Skills are loaded."]
            if caller.admin:
                lines.append(f"Put skill folders (each with a SKILL.md) in {found.directory} (VIGIL_SKILLS_DIR).")
        if found.problems:
            lines += ["", "Left out:", *(f"• {problem.line()}" for problem in found.problems)]
        return Reply(text="\n".join(lines))


