"""The text editor's input checks and text I/O on descriptors.

Nothing the model sends may make the editor raise: bad input becomes an
`InputError`, whose message goes back to the model verbatim as an error
outcome. Files are read and written through descriptors from the `Jail`,
as UTF-8 text only, and lines are counted the way `cat -n` counts them.
"""

from __future__ import annotations

import os

from vigil.tools.outcome import ToolOutcome

# Larger files are refused rather than read into memory whole: this tool edits
# source and notes, and a 2 GB log would stall the chat's worker.
MAX_FILE_BYTES = 10 * 1024 * 1024



class InputError(Exception):
    """The model's input is unusable; the message goes back to it verbatim."""


def error_outcome(message: str) -> ToolOutcome:
    return ToolOutcome(f"Error: {message}", is_error=True)


def require_str(tool_input: dict[str, object], field: str, command: str) -> str:
    value = tool_input.get(field)
    if value is None:
        raise InputError(f"missing required field `{field}` for command `{command}`")
    if not isinstance(value, str):
        raise InputError(f"field `{field}` must be a string, got {type(value).__name__}")
    return value


def optional_str(tool_input: dict[str, object], field: str) -> str | None:
    value = tool_input.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"field `{field}` must be a string, got {type(value).__name__}")
    return value


def require_path(tool_input: dict[str, object], command: str) -> str:
    path = require_str(tool_input, "path", command)
    if not path:
        raise InputError("field `path` must not be empty")
    return path


def is_int(value: object) -> bool:
    # bool is a subclass of int, but `true` is not a line number.
    return isinstance(value, int) and not isinstance(value, bool)


def text_lines(text: str) -> list[str]:
    """Lines as `cat -n` counts them: split on "\\n", a final newline ends the last line.

    Deliberately not `str.splitlines`, which also splits on \\r, \\f, U+2028 and
    friends and would number lines differently from `cat -n` and from `insert`.
    """
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def numbered(lines: list[str], first_number: int) -> list[str]:
    return [f"{number:6}\t{line}" for number, line in enumerate(lines, start=first_number)]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_text(fd: int, display: str) -> str:
    """The whole file behind `fd` as UTF-8 text, or InputError for binary/huge files."""
    size = os.fstat(fd).st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{display} is too large for the text editor ({size} bytes; the limit is {MAX_FILE_BYTES})"
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_FILE_BYTES:  # it grew while we read
            raise InputError(f"{display} is too large for the text editor (over {MAX_FILE_BYTES} bytes)")
    data = b"".join(chunks)
    # NUL bytes are valid UTF-8 but never appear in text a person edits.
    if b"\x00" in data:
        raise InputError(f"{display} appears to be a binary file; the text editor only handles text files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            f"{display} is not UTF-8 text (probably a binary file); the text editor only handles text files"
        ) from None


def occurrences(text: str, needle: str) -> list[int]:
    # Overlapping occurrences count too: "aa" in "aaa" is ambiguous, and
    # str.count would call it unique.
    found: list[int] = []
    index = text.find(needle)
    while index != -1:
        found.append(index)
        index = text.find(needle, index + 1)
    return found
