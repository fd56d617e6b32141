"""Directives in the user's words (``[[reply=...]]``, ``[[len=N]]``, ``[[tool=NAME {json}]]``...)
that steer the stand-in, so a test that only controls what the user types can still script the model.

This module only parses them; `script` turns them into an answer. A problem (bad JSON, a missing value)
is collected rather than raised, so the reply can say what was wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_DIRECTIVE = re.compile(
    r"\[\[(reply|len|delay|slow|error|hang|drop|stream_error|tool_search|tool|search|fetch|pause|search_hang)(=|\]\])")
_TOOL_DIRECTIVE_NAME = re.compile(r"\s*([A-Za-z0-9_-]+)\s*")
_ERROR_DIRECTIVE = re.compile(r"^\s*(\d{3})(?:\s+times=(\d+))?\s*$")


@dataclass
class Directives:
    reply: str | None = None
    length: int | None = None
    delay: float = 0.0
    slow: float = 0.0
    error: tuple[int, int | None] | None = None
    hang: bool = False
    drop: int | None = None
    stream_error: str | None = None
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # The API's own web tools: [[search=QUERY]], [[fetch=URL]], [[pause]] (pause_turn after them),
    # [[search_hang]] (the search starts and never ends).
    searches: list[str] = field(default_factory=list)
    fetches: list[str] = field(default_factory=list)
    pause: bool = False
    search_hang: bool = False
    # The API's tool search tool: [[tool_search=QUERY]] (see tool_search).
    tool_searches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_directives(text: str) -> Directives:
    found = Directives()
    decoder = json.JSONDecoder()
    pos = 0
    while match := _DIRECTIVE.search(text, pos):
        name = match.group(1)
        if match.group(2) == "]]":
            value = None
            pos = match.end()
        elif name == "tool":
            # The JSON may itself contain "]]", so it is decoded rather than cut at the first "]]".
            name_match = _TOOL_DIRECTIVE_NAME.match(text, match.end())
            if name_match is None:
                found.problems.append(f"tool directive without a tool name at {match.start()}")
                pos = match.end()
                continue
            tool_input: Any = {}
            p = name_match.end()
            if not text.startswith("]]", p):
                try:
                    tool_input, p = decoder.raw_decode(text, p)
                except json.JSONDecodeError as e:
                    found.problems.append(f"tool {name_match.group(1)}: bad JSON input ({e})")
                    pos = p
                    continue
                while p < len(text) and text[p].isspace():
                    p += 1
            if not text.startswith("]]", p) or not isinstance(tool_input, dict):
                found.problems.append(f"tool {name_match.group(1)}: expected a JSON object then ]]")
                pos = p
                continue
            found.tools.append((name_match.group(1), tool_input))
            pos = p + 2
            continue
        else:
            end = text.find("]]", match.end())
            if end < 0:
                found.problems.append(f"unterminated [[{name}=")
                break
            value = text[match.end() : end]
            pos = end + 2
        try:
            _apply_directive(found, name, value)
        except ValueError as e:
            found.problems.append(f"[[{name}={value}]]: {e}")
    return found


def _apply_directive(found: Directives, name: str, value: str | None) -> None:
    if name == "hang":
        found.hang = True
        return
    if name in ("pause", "search_hang"):
        setattr(found, name, True)
        return
    if value is None:
        raise ValueError("needs a value")
    if name == "reply":
        found.reply = value
    elif name == "len":
        found.length = int(value)
    elif name == "delay":
        found.delay = float(value)
    elif name == "slow":
        found.slow = float(value)
    elif name == "drop":
        found.drop = int(value)
    elif name == "stream_error":
        found.stream_error = value.strip()
    elif name == "search":
        found.searches.append(value.strip())
    elif name == "fetch":
        found.fetches.append(value.strip())
    elif name == "tool_search":
        found.tool_searches.append(value.strip())
    elif name == "error":
        m = _ERROR_DIRECTIVE.match(value)
        if m is None:
            raise ValueError("expected STATUS or STATUS times=N")
        found.error = (int(m.group(1)), int(m.group(2)) if m.group(2) else None)
