"""VIGIL_MCP_CONFIG: the `mcpServers` file people already keep for Claude Desktop, Claude Code or Cursor.

    {"mcpServers": {
        "notes":  {"command": "uvx", "args": ["notes-mcp"], "env": {"NOTES_TOKEN": "..."}, "cwd": "/srv/notes"},
        "github": {"type": "http", "url": "https://api.example.com/mcp", "headers": {"Authorization": "Bearer ..."}}}}

Read strictly, entry by entry: a malformed entry is left out with one sentence that names the server
and the field (never its value), and the others still load; a file that cannot be read or parsed
leaves no server and one sentence. Other top-level keys are ignored (Claude Desktop's file has its
own). `url` without `type` means `http` (streamable HTTP), as Cursor writes it; a relative `cwd` is
taken from the file's directory.

Env values, header values and a URL's password and query string are credentials: they are kept out
of every repr, log line and message (`ServerConfig.secrets` lists them so that what a server prints
on stderr can be cleaned of them too, with vigil.logs' `Redactor`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from vigil.mcp.names import server_name_problem

__all__ = ["McpConfig", "RemoteServer", "ServerConfig", "StdioServer", "effective_servers",
           "load_config", "parse_config"]

_STDIO_KEYS = frozenset({"type", "command", "args", "env", "cwd"})
_REMOTE_KEYS = frozenset({"type", "url", "headers"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIN_SECRET = 6  # as vigil.logs.Redactor: shorter values would blank ordinary words out, and are no credential


@dataclass(frozen=True)
class StdioServer:
    """A local server: vigil starts `command args...` and talks to it over its stdin and stdout."""

    name: str
    command: str
    args: tuple[str, ...] = field(default=(), repr=False)  # some put a token on the command line
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    kind: Literal["stdio"] = "stdio"

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in self.env.values() if len(v) >= _MIN_SECRET)

    def describe(self) -> str:
        count = len(self.args)
        return f"stdio: {self.command}" + (f" ({count} argument{'s' if count != 1 else ''})" if count else "")


@dataclass(frozen=True)
class RemoteServer:
    """A server vigil reaches over HTTP: streamable HTTP (`http`) or the older HTTP+SSE (`sse`)."""

    name: str
    url: str = field(repr=False)
    transport: Literal["http", "sse"] = "http"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    kind: Literal["remote"] = "remote"

    @property
    def shown_url(self) -> str:
        """The URL without its user, password or query string: what logs and /mcp may show."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))

    def secrets(self) -> tuple[str, ...]:
        parts = urlsplit(self.url)
        values = [*self.headers.values(), parts.password or "", parts.username or "",
                  *(v for _, v in parse_qsl(parts.query))]
        # "Bearer abc": the token alone may be echoed too.
        values += [v.split(None, 1)[1] for v in self.headers.values() if len(v.split(None, 1)) == 2]
        return tuple(v for v in values if len(v) >= _MIN_SECRET)

    def describe(self) -> str:
        return f"{self.transport}: {self.shown_url}"

    def __repr__(self) -> str:
        return f"RemoteServer(name={self.name!r}, url={self.shown_url!r}, transport={self.transport!r})"


ServerConfig = StdioServer | RemoteServer


@dataclass(frozen=True)
class McpConfig:
    """The servers that loaded, by name (in the file's order), and one sentence per problem."""

    servers: Mapping[str, ServerConfig] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        """Every credential of every server: for the log redactor (vigil.logs.configure_logging)."""
        return tuple(secret for server in self.servers.values() for secret in server.secrets())


def load_config(path: Path | None, defaults: Iterable[str] = ()) -> McpConfig:
    """The file at `path` (None: no servers), and the default servers checked against it."""
    config = McpConfig() if path is None else _read(path)
    missing = [name for name in defaults if name not in config.servers]
    problems = [f"VIGIL_MCP_DEFAULT names {name!r}, which VIGIL_MCP_CONFIG does not define" for name in missing]
    return McpConfig(config.servers, config.problems + tuple(problems))


def _read(path: Path) -> McpConfig:
    where = f"VIGIL_MCP_CONFIG={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return McpConfig(problems=(f"{where}: no such file",))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        return McpConfig(problems=(f"{where}: cannot read it ({reason})",))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position, never the text around it: the file holds credentials.
        return McpConfig(problems=(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",))
    return parse_config(data, where, base=path.parent)


def parse_config(data: Any, where: str = "VIGIL_MCP_CONFIG", base: Path | None = None) -> McpConfig:
    """The servers of an already parsed `{"mcpServers": {...}}` document."""
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        return McpConfig(problems=(f'{where}: expected an object with "mcpServers": {{name: server, ...}}',))
    servers: dict[str, ServerConfig] = {}
    problems: list[str] = []
    for name, entry in data["mcpServers"].items():
        try:
            servers[name] = _server(name, entry, base)
        except ValueError as exc:
            problems.append(f"MCP server {name!r}: {exc}")
    return McpConfig(servers, tuple(problems))


def _server(name: str, entry: Any, base: Path | None) -> ServerConfig:
    if problem := server_name_problem(name):
        raise ValueError(f"the name {problem}")
    if not isinstance(entry, dict):
        raise ValueError("expected an object with command (a local server) or type and url (a remote one)")
    kind = entry.get("type")
    if "command" in entry and "url" in entry:
        raise ValueError("has both command and url; a server is either local (command) or remote (url)")
    if "command" in entry or kind == "stdio":
        _only(entry, _STDIO_KEYS)
        if kind not in (None, "stdio"):
            raise ValueError('type must be "stdio" (or left out) for a server started by command')
        return StdioServer(name=name, command=_text(entry, "command"), args=tuple(_strings(entry, "args")),
                           env=_mapping(entry, "env", _ENV_NAME, "an environment variable name"),
                           cwd=_cwd(entry, base))
    if "url" in entry:
        _only(entry, _REMOTE_KEYS)
        if kind not in (None, "http", "sse"):
            raise ValueError('type must be "http" (streamable HTTP) or "sse" for a server reached by url')
        transport: Literal["http", "sse"] = "sse" if kind == "sse" else "http"
        url = _text(entry, "url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        return RemoteServer(name=name, url=url, transport=transport,
                            headers=_mapping(entry, "headers", _HEADER_NAME, "an HTTP header name"))
    raise ValueError("needs command (a local server) or url (a remote one)")


def _only(entry: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in entry:
        if key not in allowed:
            raise ValueError(f"unknown field {key!r} (a server takes {', '.join(sorted(allowed))})")


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    if "\0" in value:
        raise ValueError(f"{key} holds a NUL character")
    return value


def _strings(entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def _mapping(entry: dict[str, Any], key: str, names: re.Pattern[str], what: str) -> dict[str, str]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object of names to strings")
    for name, item in value.items():
        if not names.match(name):
            raise ValueError(f"{key}: {name!r} is not {what}")
        if not isinstance(item, str):
            raise ValueError(f"{key}.{name} must be a string")
        if "\0" in item or (key == "headers" and ("\r" in item or "\n" in item)):
            raise ValueError(f"{key}.{name} holds a control character")
    return dict(value)


def _cwd(entry: dict[str, Any], base: Path | None) -> str | None:
    if "cwd" not in entry:
        return None
    cwd = _text(entry, "cwd")
    path = Path(os.path.expanduser(cwd))
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)


def effective_servers(on: Iterable[str], off: Iterable[str], defaults: Iterable[str],
                      configured: Iterable[str]) -> tuple[str, ...]:
    """A chat's servers: the defaults it did not turn off and those an admin turned on there, that the
    config defines, sorted (the tool list's order must not depend on the order they were turned on)."""
    known = set(configured)
    chosen = (set(defaults) - set(off)) | set(on)
    return tuple(sorted(chosen & known))
