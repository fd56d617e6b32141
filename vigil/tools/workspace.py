"""Where each chat works: a directory of its own under the work root, and how far it may reach.

Chats share one machine and one service user, so what keeps one chat's files
from another's (and the store from all of them) is where their tools may go.
Every session has a *workspace*, the tree its `/cd` and its tools are confined
to, and a cwd inside it:

- a new session starts in its own directory, created on demand (0700):
  `users/<user_id>` for a private chat, `chats/<chat_id>` for a group (all
  topics of a forum share it); the console starts at the root itself;
- a non-admin's `/cd` moves the cwd inside the workspace only;
- an admin's `/cd` may go anywhere under the root: into the workspace it only
  moves the cwd, out of it the workspace moves along (pointing the chat at a
  project); the console is the operator's and counts as an admin;
- a session stored before workspaces existed keeps its cwd and is confined to
  it: the narrowest reading of "keeps the directory it has". Confining it to
  the root instead would leave every pre-upgrade chat one `/cd ..` away from
  every other chat's files.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path, PurePosixPath

import msgspec

from vigil.logs import get_logger
from vigil.records.schema import SessionHeader, Target

CONSOLE_PREFIX = "console:"
DIR_MODE = 0o700
_TELEGRAM_KEY = re.compile(r"^tg:(-?\d+)(?::\d+)?$")
_log = get_logger(__name__)


class WorkspaceError(Exception):
    """A chat's directory cannot be made (a symlink or a file is in the way, or the disk refused)."""


def is_operator(key: str) -> bool:
    """The console's sessions belong to whoever runs vigil on this machine: they count as an admin."""
    return key.startswith(CONSOLE_PREFIX)


def own_directory(key: str, target: Target, chat_type: str) -> PurePosixPath:
    """The directory a new session of `key` starts in, relative to the root."""
    if is_operator(key):
        # The root itself: the console is the operator's, who owns the whole tree anyway, and
        # `vigil chat` has always started there to work on the projects under it.
        return PurePosixPath()
    if chat_type == "private":
        # In a private chat Telegram's chat id is the user's id.
        return PurePosixPath("users", str(target.chat_id))
    # The chat id the key was made from, not the target's: a group upgraded to a supergroup keeps its
    # key (and so its directory) under the old id, while its target moves to the new one; topics opened
    # after the upgrade have keys under the old id too, so they share the directory with the rest.
    match = _TELEGRAM_KEY.match(key)
    chat_id = match.group(1) if match else str(target.chat_id)
    return PurePosixPath("chats", chat_id)


def ensure_directory(root: Path, relative: PurePosixPath) -> Path:
    """Create `root/relative` (each new level 0700) without following a symlink on the way.

    Someone with a shell under the root (an admin's chat with bash) could plant `users` as a link
    to `/`; a plain `mkdir -p` would then hand a new chat a workspace outside the root.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkspaceError(f"cannot open the work root {root}: {exc.strerror or exc}") from None
    try:
        for part in relative.parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, DIR_MODE, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise WorkspaceError(f"cannot use {root / relative}: {part} {_what_is(part, fd, exc)}") from None
            os.close(fd)
            fd = child
    except OSError as exc:
        raise WorkspaceError(f"cannot create {root / relative}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return root.joinpath(*relative.parts)


def _what_is(name: str, dir_fd: int, exc: OSError) -> str:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return exc.strerror or str(exc)
    return "is a symlink" if stat.S_ISLNK(mode) else "is not a directory"


def within(path: str | Path, tree: str | Path) -> bool:
    """Whether `path` is `tree` or lies under it, judged on normalized text (both come from resolves)."""
    inner, outer = os.path.normpath(path), os.path.normpath(tree)
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def workspace_of(header: SessionHeader) -> Path:
    """The tree the session's tools are confined to (a legacy session: its cwd)."""
    return Path(header.workspace or header.cwd)


def start_header(header: SessionHeader, root: Path) -> SessionHeader:
    """A new session's header placed in its own directory (created now)."""
    home = _own(header, root)
    return msgspec.structs.replace(header, cwd=home, workspace=home)


def placed(header: SessionHeader, root: Path) -> SessionHeader:
    """`header` with a workspace under `root` and its cwd inside it; creates nothing (for views too).

    A header from before workspaces keeps its cwd as its workspace. One whose directory lies outside
    the root (the root was moved, or it is a pre-upgrade session whose cwd was the old default `$HOME`)
    cannot keep it: it moves to its own directory, as a new session would.
    """
    workspace = header.workspace or header.cwd
    if not within(workspace, root):
        workspace = str(root.joinpath(*own_directory(header.key, header.target, header.chat_type).parts))
    cwd = header.cwd if within(header.cwd, workspace) else workspace
    if (workspace, cwd) == (header.workspace, header.cwd):
        return header
    return msgspec.structs.replace(header, workspace=workspace, cwd=cwd)


def settle(header: SessionHeader, root: Path) -> SessionHeader:
    """`placed`, and the session's own directory made (again) if that is where it works."""
    header = placed(header, root)
    if header.workspace == str(root.joinpath(*own_directory(header.key, header.target, header.chat_type).parts)):
        _own(header, root)
    return header


def _own(header: SessionHeader, root: Path) -> str:
    """The session's own directory, made if missing; if it cannot be made, its path all the same.

    A session must not die of it (a respawn would fail the same way, message after message); its tools
    then refuse the missing or unsafe directory (the toolbox resolves it through the root's jail).
    """
    relative = own_directory(header.key, header.target, header.chat_type)
    try:
        return str(ensure_directory(root, relative))
    except WorkspaceError as exc:
        _log.error("workspace.unavailable", session=header.key, error=str(exc))
        return str(root.joinpath(*relative.parts))
