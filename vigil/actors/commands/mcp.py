"""`/mcp on NAME` and `/mcp off NAME`: which of the operator's MCP servers this chat has.

A session command (it changes the header, in order with the chat's messages); only a vigil admin gets
here (vigil/policy/roles.py refused everyone else, and the session checks again: a command held in the inbox
across a restart with other admins is judged by the settings it runs under). The choice lives in the
header (`mcp_on`, and `mcp_off` for a `VIGIL_MCP_DEFAULT` server turned off here), so it survives
restarts; the chat's servers are vigil.mcp.config.effective_servers of these.

Turning a server on starts it (or connects to it) at once, so the answer says whether it works and what
tools Claude now has, instead of leaving the first failure to a turn.
"""

from __future__ import annotations

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.actors.tools.mcp import chat_servers
from vigil.mcp.names import parse_server_names
from vigil.mcp.tools import NO_CONFIG, server_lines
from vigil.policy.roles import place_of

NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."


def cmd_mcp(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    manager = session.deps.mcp
    settings = session.deps.settings
    words = message.args.split(None, 1)
    verb = words[0].lower() if words else ""
    if verb not in ("on", "off") or len(words) < 2:
        session.reply(message.target, "/mcp on NAME or /mcp off NAME; /mcp lists this chat's servers.")
        return
    verdict = session.deps.roles.command(place_of(header), message.sender.user_id, "mcp", message.args)
    if not verdict.allowed:  # vigil/policy/roles.py, again: a command held across a restart runs under today's settings
        session.reply(message.target, verdict.reason)
        return
    if manager is None:
        session.reply(message.target, NO_CONFIG)
        return
    try:
        names = parse_server_names(words[1].replace(" ", ","))
    except ValueError as exc:
        session.reply(message.target, f"⛔ {exc}.")
        return
    if not names:
        session.reply(message.target, f"Which server? /mcp {verb} NAME; /mcp lists them.")
        return
    unknown = [n for n in names if n not in manager.servers and not (verb == "off" and n in header.mcp_on)]
    if unknown:
        known = ", ".join(manager.servers) or "none"
        session.reply(message.target, f"⛔ No MCP server is called {', '.join(unknown)} (configured: {known}).")
        return
    before = chat_servers(session)
    if verb == "on":
        on, off = sorted({*header.mcp_on, *names}), [n for n in header.mcp_off if n not in names]
    else:
        on = [n for n in header.mcp_on if n not in names]
        off = sorted({*header.mcp_off, *(n for n in names if n in settings.mcp_default)})
    session.header = msgspec.structs.replace(header, mcp_on=tuple(on), mcp_off=tuple(off))
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, NOT_SAVED)
        return
    now = chat_servers(session)
    session.log.info("mcp.chosen", by=message.sender.user_id, verb=verb, servers=list(names), on=list(now))
    if verb == "off":
        gone = [n for n in names if n in before]
        said = f"✅ Off in this chat: {', '.join(gone)}." if gone else f"{', '.join(names)} was not on here."
        session.reply(message.target, f"{said} On here now: {', '.join(now) or 'none'}.")
        return
    manager.tools(names)  # started (or connected to) now, so the answer says whether it works
    lines = [f"✅ On in this chat: {', '.join(names)}. Claude can use their tools from the next message."]
    for status in manager.status(names):
        lines += server_lines(status)
    session.reply(message.target, "\n".join(lines))


COMMANDS = {"mcp": cmd_mcp}
