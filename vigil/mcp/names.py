"""Names: an MCP server's name as the operator writes it, and each of its tools as Claude sees it.

The Messages API takes tool names matching `^[a-zA-Z0-9_-]{1,64}$`, while MCP tool names may hold dots,
slashes and up to 128 characters. Claude sees `mcp__<server>__<tool>`; a name that does not fit is made
to fit the same way every time, because the prompt cache keys on the exact tool definitions and the
history's `tool_use` blocks name tools by what they were called then:

- a name that fits and is unique among its server's tools is used as it is;
- otherwise every character outside `[a-zA-Z0-9_-]` becomes `_`, the result is cut to 55 characters,
  and `_` and eight hex digits of the SHA-256 of the server and tool names are appended. The suffix
  depends on the original names only, and every member of a colliding pair gets one, so which name
  arrives first never matters.

Server names are held to `[A-Za-z0-9_.-]`, at most 32 characters, without `__` (the separator), so a
name that fits is never ambiguous across servers: collisions can only happen within one server's tools,
and deciding them needs only that server's list. The same rule lets `/mcp on NAME` and
`VIGIL_MCP_DEFAULT` (comma-separated) name servers without quoting.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

__all__ = ["API_TOOL_NAME", "PREFIX", "exposed_names", "parse_server_names", "server_name_problem"]

API_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
PREFIX = "mcp__"
MAX_SERVER_NAME = 32
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNFIT = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_HEX = 8
_KEEP = 64 - 1 - _HASH_HEX


def server_name_problem(name: str) -> str | None:
    """Why `name` cannot name an MCP server (a clause to follow "the name "), or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_SERVER_NAME:
        return f"is longer than {MAX_SERVER_NAME} characters"
    if not _SERVER_NAME.match(name):
        return "may hold only letters, digits, '_', '-' and '.'"
    if "__" in name:
        return "may not hold '__' (it separates the server from the tool in mcp__<server>__<tool>)"
    return None


def parse_server_names(raw: str) -> tuple[str, ...]:
    """VIGIL_MCP_DEFAULT: comma-separated server names, in the order given, each once."""
    names: list[str] = []
    for part in raw.replace(";", ",").split(","):
        name = part.strip()
        if not name:
            continue
        if problem := server_name_problem(name):
            raise ValueError(f"the server name {name!r} {problem}")
        if name not in names:
            names.append(name)
    return tuple(names)


def _hashed(server: str, tool: str) -> str:
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:_HASH_HEX]
    return f"{_UNFIT.sub('_', PREFIX + server + '__' + tool)[:_KEEP]}_{digest}"


def exposed_names(server: str, tools: Iterable[str]) -> dict[str, str]:
    """Each tool of `server` to the name Claude sees: valid for the API, unique, the same every time."""
    tools = list(dict.fromkeys(tools))
    plain = {tool: PREFIX + server + "__" + tool for tool in tools}
    fits = {tool for tool, name in plain.items() if API_TOOL_NAME.match(name)}
    names = {tool: plain[tool] if tool in fits else _hashed(server, tool) for tool in tools}
    # Distinct tools may still land on one name (only through a hashed name meeting a plain one, or two
    # hashes meeting): every member of such a group is hashed, so the outcome ignores the order.
    while True:
        by_name: dict[str, list[str]] = defaultdict(list)
        for tool, name in names.items():
            by_name[name].append(tool)
        clashing = [tool for group in by_name.values() if len(group) > 1 for tool in group]
        if not clashing:
            return names
        for tool in clashing:
            if names[tool] == plain[tool]:
                names[tool] = _hashed(server, tool)
            else:  # two hashes met: lengthen neither blindly, take the next slice of the digest
                digest = hashlib.sha256(f"{server}\0{tool}\0{names[tool]}".encode()).hexdigest()[:_HASH_HEX]
                names[tool] = f"{names[tool][:_KEEP]}_{digest}"
