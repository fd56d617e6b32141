"""What the text editor's `view` shows: a file numbered like `cat -n`, or a directory two levels deep.

Both are capped at the editor's `max_characters`, and a cut output says how to
see the rest (a narrower `view_range`, a subdirectory), so Claude never gets a
silently truncated file.
"""

from __future__ import annotations

import os

from vigil.tools.editor_input import InputError, is_int, numbered

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def render_file(path: str, lines: list[str], view_range: object, max_chars: int) -> str:
    """`lines` numbered like `cat -n`, within `view_range` if given, capped at `max_chars` with a note."""
    total = len(lines)
    start, end = 1, total
    if view_range is not None:
        if (
            not isinstance(view_range, list | tuple)
            or len(view_range) != 2
            or not all(is_int(v) for v in view_range)
        ):
            raise InputError("field `view_range` must be a list of two integers [start, end]")
        start, end = int(view_range[0]), int(view_range[1])
        if total == 0:
            raise InputError(f"{path} is empty, so `view_range` cannot select anything")
        if not 1 <= start <= total:
            raise InputError(
                f"invalid `view_range` {list(view_range)}: start must be between 1 and {total} "
                f"(the number of lines in {path})"
            )
        if end == -1 or end > total:
            end = total  # "to the end", or a generous guess at the length
        elif end < start:
            raise InputError(
                f"invalid `view_range` {list(view_range)}: end must be -1 or at least start ({start})"
            )
    if total == 0:
        return f"The file {path} is empty."
    if view_range is None:
        header = f"Here's the result of running `cat -n` on {path}:\n"
    else:
        header = f"Here's the result of running `cat -n` on {path} (lines {start}-{end} of {total}):\n"
    budget = max_chars - len(header)
    shown: list[str] = []
    used = 0
    cut_line = False
    for row in numbered(lines[start - 1 : end], start):
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
            f"\n[Truncated: line {start} alone is longer than the {max_chars}-character view cap "
            f"and was cut. Use the bash tool (if available) to see it in pieces.]"
        )
    if last < end:
        suggestion_end = -1 if end == total else end
        return body + (
            f"\n[Truncated: showed lines {start}-{last} of {total}; the view is capped at "
            f"{max_chars} characters. To see more, call view again with "
            f"view_range [{last + 1}, {suggestion_end}] or a narrower range.]"
        )
    return body


def listing(dir_fd: int, path: str, max_chars: int) -> str:
    """The directory behind `dir_fd`, two levels deep without hidden entries, capped at `max_chars`."""
    header = f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n"
    rows: list[str] = []
    _list_level(dir_fd, "", rows, depth=1)
    if not rows:
        return header + "(empty)"
    budget = max_chars - len(header)
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
            f"{max_chars} characters. View a subdirectory to see its contents.]"
        )
    return body


def _list_level(dir_fd: int, prefix: str, rows: list[str], depth: int) -> None:
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
                    sub_fd = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        _list_level(sub_fd, f"{name}/", rows, depth + 1)
                    finally:
                        os.close(sub_fd)
            else:
                rows.append(name)
        except OSError as exc:
            rows.append(f"{name} (unreadable: {exc.strerror})")
