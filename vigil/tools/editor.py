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
an error outcome naming the problem. The input checks and text I/O are in
`editor_input`, what `view` shows in `editor_view`; this module runs commands.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from vigil.tools.editor_input import (
    MAX_FILE_BYTES,
    InputError,
    error_outcome,
    numbered,
    occurrences,
    optional_str,
    read_text,
    require_path,
    require_str,
    text_lines,
    write_all,
)
from vigil.tools.editor_view import listing, render_file
from vigil.tools.jail import Jail, JailError
from vigil.tools.outcome import ToolOutcome

__all__ = ["MAX_FILE_BYTES", "TOOL_NAME", "TOOL_TYPE", "TextEditor"]

TOOL_TYPE = "text_editor_20250728"
TOOL_NAME = "str_replace_based_edit_tool"

# Lines of context shown around an edit, so Claude can check what it did
# without spending a separate `view`.
_SNIPPET_CONTEXT = 4


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
                raise InputError("the tool input must be an object")
            command = tool_input.get("command")
            if command is None:
                raise InputError("missing required field `command`")
            if not isinstance(command, str):
                raise InputError(f"field `command` must be a string, got {type(command).__name__}")
            if command == "undo_edit":
                raise InputError("`undo_edit` is not available in this version of the tool")
            handler = handlers.get(command)
            if handler is None:
                allowed = ", ".join(f"`{name}`" for name in handlers)
                raise InputError(f"unknown command `{command}`; allowed commands are {allowed}")
            return handler(cwd, tool_input)
        except (InputError, JailError) as exc:
            return error_outcome(str(exc))
        except OSError as exc:
            # Descriptor-level failures after a successful open (disk full, I/O
            # error): report, don't crash the chat.
            return error_outcome(exc.strerror or str(exc))

    # -- view -------------------------------------------------------------

    def _view(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = require_path(tool_input, "view")
        view_range = tool_input.get("view_range")
        fd = self._jail.open_file(cwd, path, os.O_RDONLY)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                if view_range is not None:
                    raise InputError(f"`view_range` is not allowed when `path` is a directory ({path})")
                return ToolOutcome(listing(fd, path, self._max))
            lines = text_lines(read_text(fd, path))
        finally:
            os.close(fd)
        return ToolOutcome(render_file(path, lines, view_range, self._max))

    # -- create -----------------------------------------------------------

    def _create(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = require_path(tool_input, "create")
        file_text = require_str(tool_input, "file_text", "create")
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
            write_all(fd, file_text.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)
        if existed:
            return ToolOutcome(
                f"File {path} already existed and has been overwritten with the new content "
                f"({len(text_lines(file_text))} lines)."
            )
        return ToolOutcome(f"File created successfully at: {path} ({len(text_lines(file_text))} lines).")

    # -- str_replace / insert ---------------------------------------------

    def _str_replace(self, cwd: Path, tool_input: dict[str, object]) -> ToolOutcome:
        path = require_path(tool_input, "str_replace")
        old_str = require_str(tool_input, "old_str", "str_replace")
        new_str = optional_str(tool_input, "new_str") or ""
        if not old_str:
            raise InputError("field `old_str` must not be empty")
        fd = self._jail.open_file(cwd, path, os.O_RDWR)
        try:
            text = read_text(fd, path)
            found = occurrences(text, old_str)
            if not found:
                raise InputError(
                    f"No match found for replacement in {path}. `old_str` must match the file "
                    "exactly, including whitespace; please check your text and try again."
                )
            if len(found) > 1:
                line_numbers = sorted({text.count("\n", 0, i) + 1 for i in found})
                shown = ", ".join(str(n) for n in line_numbers[:10])
                more = ", ..." if len(line_numbers) > 10 else ""
                raise InputError(
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
        path = require_path(tool_input, "insert")
        insert_line = tool_input.get("insert_line")
        if insert_line is None:
            raise InputError("missing required field `insert_line` for command `insert`")
        if not isinstance(insert_line, int) or isinstance(insert_line, bool):
            raise InputError(f"field `insert_line` must be an integer, got {type(insert_line).__name__}")
        # `insert_text` is this version's name; older versions called it
        # `new_str`, and accepting both costs nothing.
        insert_text = optional_str(tool_input, "insert_text")
        if insert_text is None:
            insert_text = optional_str(tool_input, "new_str")
        if insert_text is None:
            raise InputError("missing required field `insert_text` for command `insert`")
        if insert_line < 0:
            raise InputError("field `insert_line` must be 0 (top of the file) or a line number")
        fd = self._jail.open_file(cwd, path, os.O_RDWR)
        try:
            text = read_text(fd, path)
            lines = text_lines(text)
            if insert_line > len(lines):
                raise InputError(
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
        write_all(fd, data)
        os.ftruncate(fd, len(data))

    def _snippet(self, path: str, text: str, first: int, last: int) -> str:
        """Lines first..last (0-based) of `text` with some context, numbered, capped."""
        lines = text_lines(text)
        lo = max(first - _SNIPPET_CONTEXT, 0)
        hi = min(last + _SNIPPET_CONTEXT + 1, len(lines))
        if lo >= hi:
            return f"{path} is now empty."
        header = f"Here's the result of running `cat -n` on a snippet of {path}:\n"
        body = "\n".join(numbered(lines[lo:hi], lo + 1))
        budget = self._max - len(header)
        if len(body) > budget:
            body = body[:budget] + "\n[snippet truncated; use view with view_range to see the edited lines]"
        return header + body
