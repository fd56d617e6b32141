"""Saving what a user sent into the chat's working directory, under `uploads/`, safely.

The file's name comes from the sender, and the directory from a chat whose model may run a shell in
it (bash in the sandbox can plant symlinks anywhere in the chat's tree). So:

- no path from the sender's name is ever followed: `safe_name` keeps only a last component, without
  control or format characters (a right-to-left override can fake an extension), leading dots (hidden
  files, `..`) or dashes (a name read as an option by a shell command), capped in length;
- the working directory is opened through the chat's own workspace jail (vigil/tools/jail.py, the
  editor's rules, with the workspace as its root, as for `send_file` and the sandbox): a directory on
  the way swapped for a symlink to another chat's tree is an escape, refused, not followed; and
  `uploads` in it is opened with O_NOFOLLOW: a symlink planted there is refused too; it is created
  0700 if missing;
- the bytes go to a fresh temporary file (O_EXCL | O_NOFOLLOW) in `uploads`, are fsynced, and are
  hard-linked to the final name, which fails rather than replaces if the name exists (a file, or a
  symlink planted as `uploads/x`, which is then neither followed nor overwritten): the next free
  `name (2).ext` is tried instead. Nothing half-written ever carries the final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from vigil.durable import write_all
from vigil.tools.jail import Jail, JailError

UPLOADS = "uploads"
DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_NAME_BYTES = 120  # well under the 255 bytes a name may have, leaving room for " (123)"
MAX_SUFFIX_CHARS = 16
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SUFFIX = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9_+-]*$")
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)


class Workplace(NamedTuple):
    """Where a chat's upload goes: under `cwd`, through the jail of `workspace` (the chat's own tree)."""

    workspace: Path
    cwd: Path


class UploadError(Exception):
    """The file could not be saved; the message is one sentence for the user. Nothing was left behind."""


def safe_name(name: str, fallback: str = "file") -> str:
    """A file name that is one plain component, whatever `name` held; `fallback` if nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    base = re.sub(r"\s+", " ", unicodedata.normalize("NFC", base))  # a newline or tab becomes a space
    base = "".join(ch for ch in base if unicodedata.category(ch) not in _DROPPED).strip()
    base = base.lstrip(".-").strip().rstrip(". ")
    if not base:
        base = fallback
    return _capped(base)


def _split(name: str) -> tuple[str, str]:
    match = _SUFFIX.search(name)
    if match is None or match.start() == 0 or len(match.group()) > MAX_SUFFIX_CHARS:
        return name, ""
    return name[:match.start()], match.group()


def _capped(name: str) -> str:
    stem, suffix = _split(name)
    limit = MAX_NAME_BYTES - len(suffix.encode())
    encoded = stem.encode()
    if len(encoded) > limit:
        stem = encoded[:limit].decode(errors="ignore").rstrip(". ") or "file"
    return stem + suffix


def candidates(name: str) -> Iterator[str]:
    """`name`, then `name (2).ext`, `name (3).ext`, ...; random suffixes after a thousand."""
    yield name
    stem, suffix = _split(name)
    for number in range(2, 1000):
        yield f"{stem} ({number}){suffix}"
    while True:
        yield f"{stem} ({secrets.token_hex(4)}){suffix}"


def save_upload(root: Path, cwd: Path, name: str, data: bytes) -> str:
    """Write `data` to `<cwd>/uploads/<a safe, unused name>`; returns that path relative to `cwd`.

    `root` is the jail, the tree nothing is saved outside of (the chat's workspace), and `cwd` the chat's
    working directory inside it. Raises UploadError with a sentence for the user.
    """
    wanted = safe_name(name)
    try:
        cwd_fd = Jail(root).open_dir_fd(cwd, ".")
    except JailError as exc:
        raise UploadError(f"the chat's working directory cannot be used ({exc})") from None
    try:
        dir_fd = _uploads_dir(cwd_fd)
    finally:
        os.close(cwd_fd)
    try:
        tmp = f".upload-{secrets.token_hex(8)}.part"
        try:
            _write_new(dir_fd, tmp, data)
            final = _link_unique(dir_fd, tmp, wanted)
            os.fsync(dir_fd)
        except OSError as exc:
            raise UploadError(f"the file could not be saved in {UPLOADS}/ ({exc.strerror or exc})") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return f"{UPLOADS}/{final}"


def _uploads_dir(cwd_fd: int) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(UPLOADS, DIR_MODE, dir_fd=cwd_fd)
    try:
        return os.open(UPLOADS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cwd_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UploadError(f"{UPLOADS} in the chat's directory is not a plain directory (a symlink or a "
                              f"file): it was left alone and nothing was saved; remove or rename it") from None
        raise UploadError(f"{UPLOADS}/ cannot be used ({exc.strerror or exc})") from None


def _write_new(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE,
                 dir_fd=dir_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _link_unique(dir_fd: int, tmp: str, wanted: str) -> str:
    for name in candidates(wanted):
        try:
            # link(2) never follows or replaces an existing name (a planted symlink included): EEXIST.
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return name
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
        # A file system without hard links: rename, after looking (a name planted between the two is
        # replaced, never followed: rename acts on the name, not on what a symlink points at).
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            continue
        except FileNotFoundError:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return name
    raise AssertionError("unreachable: candidates never ends")
