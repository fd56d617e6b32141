"""Durable file writes: every byte of a file on disk before a name is made to point at it.

The media store and the uploads folder both write a temporary file, then give it its name (rename or
link), and a crash in between must never leave a name on a short or unsynced file. `os.write` may
write less than asked (a signal, a full pipe-like device, a quota boundary), so the loop writes until
nothing is left, then fsyncs. One place, so the two writers cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` and fsync it; the caller opens and closes `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def fsync_path(path: Path) -> None:
    """Make a file's bytes durable (a file), or a new or renamed name in it (a directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path
