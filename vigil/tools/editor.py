"""Anthropic's text editor tool (`text_editor_20250728`), served inside the jail.

Claude is trained on this tool's schema, so we offer Anthropic's own definition
(`{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}`) and
implement its commands here:

- `view`: a file, numbered like `cat -n`, optionally `view_range: [start, end]`
  (1-based, inclusive, `end = -1` for "to the end"); or a directory, listed up
  to two levels deep without hidden entries. Output is capped at
  `max_characters`, with a note saying how to see the rest.
- `create`: write `file_text` to `path`, creating missing parent directories.
  An existing file is overwritten, and the result says so.
- `str_replace`: replace `old_str` with `new_str` (default empty) when
  `old_str` occurs exactly once; otherwise an error saying how often it occurs.
- `insert`: insert `insert_text` after line `insert_line` (0 = at the top).

`undo_edit` belonged to older versions of the tool and is not offered.

All file I/O goes through descriptors from the `Jail`, never through path
strings, and nothing the model sends makes `run` raise: bad input comes back as
an error outcome naming the problem.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from vigil.tools.jail import Jail, JailError
from vigil.tools.outcome import ToolOutcome

__all__ = ["MAX_FILE_BYTES", "TOOL_NAME", "TOOL_TYPE", "TextEditor"]

TOOL_TYPE = "text_editor_20250728"
TOOL_NAME = "str_replace_based_edit_tool"

# Larger files are refused rather than read into memory whole: this tool edits
# source and notes, and a 2 GB log would stall the chat's worker.
MAX_FILE_BYTES = 10 * 1024 * 1024

# Lines of context shown around an edit, so Claude can check what it did
# without spending a separate `view`.
_SNIPPET_CONTEXT = 4

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _InputError(Exception):
    """The model's input is unusable; the message goes back to it verbatim."""


def _error(message: str) -> ToolOutcome:
    return ToolOutcome(f"Error: {message}", is_error=True)


def _require_str(tool_input: dict[str, object], field: str, command: str) -> str:
    value = tool_input.get(field)
    if value is None:
        raise _InputError(f"missing required field `{field}` for command `{command}`")
    if not isinstance(value, str):
        raise _InputError(f"field `{field}` must be a string, got {type(value).__name__}")
    return value


def _optional_str(tool_input: dict[str, object], field: str) -> str | None:
    value = tool_input.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _InputError(f"field `{field}` must be a string, got {type(value).__name__}")
    return value


def _require_path(tool_input: dict[str, object], command: str) -> str:
    path = _require_str(tool_input, "path", command)
    if not path:
        raise _InputError("field `path` must not be empty")
    return path


def _is_int(value: object) -> bool:
    # bool is a subclass of int, but `true` is not a line number.
    return isinstance(value, int) and not isinstance(value, bool)


def _lines(text: str) -> list[str]:
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


def _numbered(lines: list[str], first_number: int) -> list[str]:
    return [f"{number:6}\t{line}" for number, line in enumerate(lines, start=first_number)]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_text(fd: int, display: str) -> str:
    """The whole file behind `fd` as UTF-8 text, or _InputError for binary/huge files."""
    size = os.fstat(fd).st_size
    if size > MAX_FILE_BYTES:
        raise _InputError(
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
            raise _InputError(f"{display} is too large for the text editor (over {MAX_FILE_BYTES} bytes)")
    data = b"".join(chunks)
    # NUL bytes are valid UTF-8 but never appear in text a person edits.
    if b"\x00" in data:
        raise _InputError(f"{display} appears to be a binary file; the text editor only handles text files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _InputError(
            f"{display} is not UTF-8 text (probably a binary file); the text editor only handles text files"
        ) from None


def _occurrences(text: str, needle: str) -> list[int]:
    # Overlapping occurrences count too: "aa" in "aaa" is ambiguous, and
    # str.count would call it unique.
    found: list[int] = []
    index = text.find(needle)
    while index != -1:
        found.append(index)
        index = text.find(needle, index + 1)
    return found


class TextEditor:
    """Runs `str_replace_based_edit_tool` calls against files inside the jail."""

    def __init__(self, jail: Jail, max_characters: int = 16000) -> None:
        if max_characters < 200:
            raise ValueError("max_characters must be at least 200")
        self._jail = jail
        self._max = max_characters

    @property
    def jail(self) -> Jail:
        """The jail every path of this editor goes through."""
        return self._jail

    @property
    def max_characters(self) -> int:
        return self._max

    def spec(self) -> dict[str, object]:
        """The tool definition to offer in the Messages API request."""
        return {"type": TOOL_TYPE, "name": TOOL_NAME, "max_characters": self._max}

    def run(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        """Perform one editor command; never raises for anything the model sent."""
        handlers: dict[str, Callable[[Path, dict[str, object]], ToolOutcome]] = {
            "view": self._view,
            "create": self._create,
            "str_replace": self._str_replace,
            "insert": self._insert,
        }
        try:
            if not isinstance(tool_input, dict):
                raise _InputError("the tool input must be an object")
            command = tool_input.get("command")
            if command is None:
                raise _InputError("missing required field `command`")
            if not isinstance(command, str):
                raise _InputError(f"field `command` must be a string, got {type(command).__name__}")
            if command == "undo_edit":
                raise _InputError("`undo_edit` is not available in this version of the tool")
            handler = handlers.get(command)
            if handler is None:
                allowed = ", ".join(f"`{name}`" for name in handlers)
                raise _InputError(f"unknown command `{command}`; allowed commands are {allowed}")
            return handler(cwd, tool_input)
        except (_InputError, JailError) as exc:
            return _error(str(exc))
        except OSError as exc:
            # Descriptor-level failures after a successful open (disk full, I/O
            # error): report, don't crash the chat.
            return _error(exc.strerror or str(exc))

    # -- view -------------------------------------------------------------

    def _view(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = _require_path(tool_input, "view")
        view_range = tool_input.get("view_range")
        fd = self._jail.open_file(cwd, path, os.O_RDONLY)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                if view_range is not None:
                    raise _InputError(f"`view_range` is not allowed when `path` is a directory ({path})")
                return ToolOutcome(self._listing(fd, path))
            lines = _lines(_read_text(fd, path))
        finally:
            os.close(fd)
        return ToolOutcome(self._render_file(path, lines, view_range))

    def _render_file(self, path: str, lines: list[str], view_range: object) -> str:
        total = len(lines)
        start, end = 1, total
        if view_range is not None:
            if (
                not isinstance(view_range, list | tuple)
                or len(view_range) != 2
                or not all(_is_int(v) for v in view_range)
            ):
                raise _InputError("field `view_range` must be a list of two integers [start, end]")
            start, end = int(view_range[0]), int(view_range[1])
            if total == 0:
                raise _InputError(f"{path} is empty, so `view_range` cannot select anything")
            if not 1 <= start <= total:
                raise _InputError(
                    f"invalid `view_range` {list(view_range)}: start must be between 1 and {total} "
                    f"(the number of lines in {path})"
                )
            if end == -1 or end > total:
                end = total  # "to the end", or a generous guess at the length
            elif end < start:
                raise _InputError(
                    f"invalid `view_range` {list(view_range)}: end must be -1 or at least start ({start})"
                )
        if total == 0:
            return f"The file {path} is empty."
        if view_range is None:
            header = f"Here's the result of running `cat -n` on {path}:\n"
        else:
            header = f"Here's the result of running `cat -n` on {path} (lines {start}-{end} of {total}):\n"
        budget = self._max - len(header)
        shown: list[str] = []
        used = 0
        cut_line = False
        for row in _numbered(lines[start - 1 : end], start):
            cost = len(row) + 1
            if used + cost > budget:
                if not shown:
                    # A single line longer than the cap (minified code, say):
                    # show its head rather than nothing.
                    shown.append(row[: max(budget - 1, 0)])
                    cut_line = True
                break
            shown.append(row)
            used += cost
        body = header + "\n".join(shown)
        last = start + len(shown) - 1
        if cut_line:
            return body + (
                f"\n[Truncated: line {start} alone is longer than the {self._max}-character view cap "
                f"and was cut. Use the bash tool (if available) to see it in pieces.]"
            )
        if last < end:
            suggestion_end = -1 if end == total else end
            return body + (
                f"\n[Truncated: showed lines {start}-{last} of {total}; the view is capped at "
                f"{self._max} characters. To see more, call view again with "
                f"view_range [{last + 1}, {suggestion_end}] or a narrower range.]"
            )
        return body

    def _listing(self, dir_fd: int, path: str) -> str:
        header = f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n"
        rows: list[str] = []
        self._list_level(dir_fd, "", rows, depth=1)
        if not rows:
            return header + "(empty)"
        budget = self._max - len(header)
        shown: list[str] = []
        used = 0
        for row in rows:
            if used + len(row) + 1 > budget:
                break
            shown.append(row)
            used += len(row) + 1
        body = header + "\n".join(shown)
        if len(shown) < len(rows):
            body += (
                f"\n[Truncated: showed {len(shown)} of {len(rows)} entries; the listing is capped at "
                f"{self._max} characters. View a subdirectory to see its contents.]"
            )
        return body

    def _list_level(self, dir_fd: int, prefix: str, rows: list[str], depth: int) -> None:
        try:
            with os.scandir(dir_fd) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            rows.append(f"{prefix}(unreadable: {exc.strerror})")
            return
        for entry in entries:
            name = prefix + entry.name
            try:
                if entry.is_symlink():
                    # Shown, not followed: the target may be outside the root.
                    rows.append(f"{name} -> {os.readlink(entry.name, dir_fd=dir_fd)}")
                elif entry.is_dir(follow_symlinks=False):
                    rows.append(f"{name}/")
                    if depth < 2:
                        sub_fd = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
                        try:
                            self._list_level(sub_fd, f"{name}/", rows, depth + 1)
                        finally:
                            os.close(sub_fd)
                else:
                    rows.append(name)
            except OSError as exc:
                rows.append(f"{name} (unreadable: {exc.strerror})")

    # -- create -----------------------------------------------------------

    def _create(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = _require_path(tool_input, "create")
        file_text = _require_str(tool_input, "file_text", "create")
        existed = False
        try:
            # O_EXCL first, only to learn whether we are about to overwrite.
            fd = self._jail.open_file(cwd, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_parents=True)
        except JailError as exc:
            if exc.errno != errno.EEXIST:
                raise
            existed = True
            fd = self._jail.open_file(cwd, path, os.O_WRONLY | os.O_TRUNC)
        try:
            # "replace" only matters for lone surrogates, which JSON can carry
            # but UTF-8 cannot: they become "?" instead of failing the write.
            _write_all(fd, file_text.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)
        if existed:
            return ToolOutcome(
                f"File {path} already existed and has been overwritten with the new content "
                f"({len(_lines(file_text))} lines)."
            )
        return ToolOutcome(f"File created successfully at: {path} ({len(_lines(file_text))} lines).")

    # -- str_replace / insert ---------------------------------------------

    def _str_replace(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = _require_path(tool_input, "str_replace")
        old_str = _require_str(tool_input, "old_str", "str_replace")
        new_str = _optional_str(tool_input, "new_str") or ""
        if not old_str:
            raise _InputError("field `old_str` must not be empty")
        fd = self._jail.open_file(cwd, path, os.O_RDWR)
        try:
            text = _read_text(fd, path)
            found = _occurrences(text, old_str)
            if not found:
                raise _InputError(
                    f"No match found for replacement in {path}. `old_str` must match the file "
                    "exactly, including whitespace; please check your text and try again."
                )
            if len(found) > 1:
                line_numbers = sorted({text.count("\n", 0, i) + 1 for i in found})
                shown = ", ".join(str(n) for n in line_numbers[:10])
                more = ", ..." if len(line_numbers) > 10 else ""
                raise _InputError(
                    f"Found {len(found)} matches for replacement text in {path} (lines {shown}{more}). "
                    "Please provide more context in `old_str` to make a unique match."
                )
            at = found[0]
            updated = text[:at] + new_str + text[at + len(old_str) :]
            self._rewrite(fd, updated)
        finally:
            os.close(fd)
        first = text.count("\n", 0, at)  # 0-based line where the edit starts
        last = first + new_str.count("\n")
        return ToolOutcome(
            f"Successfully replaced text at exactly one location in {path}.\n"
            + self._snippet(path, updated, first, last)
        )

    def _insert(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = _require_path(tool_input, "insert")
        insert_line = tool_input.get("insert_line")
        if insert_line is None:
            raise _InputError("missing required field `insert_line` for command `insert`")
        if not isinstance(insert_line, int) or isinstance(insert_line, bool):
            raise _InputError(f"field `insert_line` must be an integer, got {type(insert_line).__name__}")
        # `insert_text` is this version's name; older versions called it
        # `new_str`, and accepting both costs nothing.
        insert_text = _optional_str(tool_input, "insert_text")
        if insert_text is None:
            insert_text = _optional_str(tool_input, "new_str")
        if insert_text is None:
            raise _InputError("missing required field `insert_text` for command `insert`")
        if insert_line < 0:
            raise _InputError("field `insert_line` must be 0 (top of the file) or a line number")
        fd = self._jail.open_file(cwd, path, os.O_RDWR)
        try:
            text = _read_text(fd, path)
            lines = _lines(text)
            if insert_line > len(lines):
                raise _InputError(
                    f"`insert_line` {insert_line} is out of range: {path} has {len(lines)} lines; "
                    f"use 0 to insert at the top or {len(lines)} to append at the end"
                )
            new_lines = insert_text.split("\n")
            if insert_text.endswith("\n"):
                new_lines.pop()
            merged = lines[:insert_line] + new_lines + lines[insert_line:]
            # Keep the file's own convention for a final newline; an empty
            # file gets one, as text files conventionally do.
            trailing = text.endswith("\n") or not text
            updated = "\n".join(merged) + ("\n" if trailing and merged else "")
            self._rewrite(fd, updated)
        finally:
            os.close(fd)
        where = "at the top of" if insert_line == 0 else f"after line {insert_line} of"
        return ToolOutcome(
            f"Text inserted {where} {path}.\n"
            + self._snippet(path, updated, insert_line, insert_line + len(new_lines) - 1)
        )

    @staticmethod
    def _rewrite(fd: int, text: str) -> None:
        data = text.encode("utf-8", errors="replace")  # lone surrogates, as in _create
        os.lseek(fd, 0, os.SEEK_SET)
        _write_all(fd, data)
        os.ftruncate(fd, len(data))

    def _snippet(self, path: str, text: str, first: int, last: int) -> str:
        """Lines first..last (0-based) of `text` with some context, numbered, capped."""
        lines = _lines(text)
        lo = max(first - _SNIPPET_CONTEXT, 0)
        hi = min(last + _SNIPPET_CONTEXT + 1, len(lines))
        if lo >= hi:
            return f"{path} is now empty."
        header = f"Here's the result of running `cat -n` on a snippet of {path}:\n"
        body = "\n".join(_numbered(lines[lo:hi], lo + 1))
        budget = self._max - len(header)
        if len(body) > budget:
            body = body[:budget] + "\n[snippet truncated; use view with view_range to see the edited lines]"
        return header + body
