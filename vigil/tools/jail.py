"""Confine every path the model names to the working root (`VIGIL_WORKDIR_ROOT`).

The model writes paths; we must never let one reach outside the root, whether by
`..`, by an absolute path, or by a symlink — including a symlink that appears
*after* we looked (a time-of-check/time-of-use race: a file or a directory on
the way is swapped for a link to `/etc` between our check and our open).

So we never check a string and then hand that string to the kernel. Every
lookup starts from a file descriptor of the root and goes one component at a
time with `openat(..., O_NOFOLLOW)`: the kernel is never asked to follow a
symlink at all. When a component *is* a symlink we read it ourselves and splice
its target into the remaining components: an absolute target must lie under
the root, a relative one continues from the directory we hold; `..` pops the
directory we came through (not whatever `..` names on disk now), and popping
past the root is an escape. At most 40 links are followed, as the kernel does.
If a name turns into a symlink between our walk and the final `openat`, that
`openat` fails with `ELOOP` (because of `O_NOFOLLOW`) and we walk again, this
time seeing the link.

What this does not cover, on purpose: hard links (a hard link to an outside
file placed inside the root by someone with access outside it), bind mounts,
and anything the opt-in bash tool does — bash is a shell, not a jail.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections import deque
from pathlib import Path
from typing import NamedTuple

__all__ = ["MAX_SYMLINK_HOPS", "EscapeError", "Jail", "JailError"]

# Linux's own limit (MAXSYMLINKS); beyond it the kernel says ELOOP too.
MAX_SYMLINK_HOPS = 40

# How often to walk again when a name became a symlink between the walk and the
# final open. A legitimate rename race settles at once; a hostile loop that
# keeps swapping gets an error instead of a livelock.
_RACE_RETRIES = 5

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class JailError(Exception):
    """A path the model gave cannot be used: outside the root, missing, wrong kind.

    `errno` carries the underlying OS error number when there was one, so that
    callers can tell, say, "already exists" (EEXIST) from other failures
    without parsing the message.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class EscapeError(JailError):
    """The path — directly, via `..`, or via a symlink — leads outside the root."""


class _Walked(NamedTuple):
    """Where a walk ended: an open directory and, optionally, a name in it.

    `name` is None when the path names the directory itself (the root, a path
    ending in `/` or `..`). `name`, when set, is not a symlink as of the walk,
    but may or may not exist. `parts` are the real components below the root.
    The caller owns `dir_fd` and must close it.
    """

    dir_fd: int
    name: str | None
    parts: tuple[str, ...]


def _split(path: str) -> list[str]:
    return path.split("/")


def _check_text(path: str, what: str) -> None:
    # The os module would raise ValueError (NUL) or UnicodeEncodeError (a lone
    # surrogate, which JSON can carry); both are bad model input, so they must
    # surface as JailError like every other unusable path.
    if "\x00" in path:
        raise JailError(f"{what} contains a NUL byte")
    try:
        os.fsencode(path)
    except UnicodeEncodeError as exc:
        raise JailError(f"{what} is not valid text ({exc.reason})") from None


def _kind_error(display: str, mode: int) -> JailError | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device file"
    else:
        kind = "not a regular file"
    return JailError(f"{display}: is {kind}; only regular files and directories can be opened")


def _clear_nonblock(fd: int) -> None:
    # O_NONBLOCK was only there so that opening a FIFO swapped in at the last
    # moment could not hang us; regular files ignore it, but leave a clean fd.
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


class Jail:
    """Resolves and opens model-supplied paths strictly inside `root`.

    `cwd` arguments are the chat session's working directory: an absolute path
    inside the root (a relative one is taken relative to the root). Relative
    model paths resolve against it; absolute model paths are taken as they are
    and must name something under the root.

    Every method raises `JailError` (or its subclass `EscapeError`) for any
    path it will not serve, and nothing else for bad input.
    """

    def __init__(self, root: Path, also: Path | None = None) -> None:
        # The operator chose the root, so its own path may go through symlinks;
        # we pin its real location once. The model may spell it either way, or as `also`, the
        # name it knows the root by (an Agent Skill's folder is `/skills/<name>` to it).
        self._root = Path(os.path.realpath(root))
        spellings = {self._root, Path(os.path.abspath(root))} | ({Path(os.path.abspath(also))} if also else set())
        self._root_spellings: tuple[list[str], ...] = tuple(
            [p for p in _split(str(s)) if p] for s in sorted(spellings, key=str)
        )

    @property
    def root(self) -> Path:
        """The real path of the working root."""
        return self._root

    # -- public API -------------------------------------------------------

    def resolve(self, cwd: Path, path: str) -> Path:
        """The real path `path` names (for display and `/cd`); it need not exist.

        All directories on the way must exist. Raises `JailError` otherwise,
        and `EscapeError` when the path leads outside the root.
        """
        walked = self._walk(cwd, path)
        os.close(walked.dir_fd)
        return self._root.joinpath(*walked.parts)

    def open_dir_fd(self, cwd: Path, path: str) -> int:
        """An O_RDONLY descriptor of the directory `path` names; caller closes it."""
        for _ in range(_RACE_RETRIES):
            walked = self._walk(cwd, path)
            if walked.name is None:
                return walked.dir_fd
            try:
                return os.open(walked.name, _DIR_FLAGS, dir_fd=walked.dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # became a symlink after the walk: look again
                if exc.errno == errno.ENOTDIR:
                    raise JailError(f"{path}: not a directory", errno=exc.errno) from None
                raise self._os_error(path, exc) from None
            finally:
                os.close(walked.dir_fd)
        raise JailError(f"{path}: the path kept changing while it was being opened")

    def open_file(
        self,
        cwd: Path,
        path: str,
        flags: int,
        mode: int = 0o644,
        *,
        create_parents: bool = False,
    ) -> int:
        """Open `path` with `flags` (`os.O_*`) and return the descriptor; caller closes it.

        `O_NOFOLLOW` and `O_CLOEXEC` are always added. Only regular files and
        (for reading) directories are served: devices, FIFOs and sockets are
        refused, checked before the open and again on the open descriptor.
        With `create_parents`, missing directories on the way are created
        (inside the root, 0o755) — meant for `create`.
        """
        writing = bool(flags & _WRITE_FLAGS)
        for _ in range(_RACE_RETRIES):
            walked = self._walk(cwd, path, create_dirs=create_parents)
            handed_over = False
            try:
                if walked.name is None:
                    if writing:
                        raise JailError(f"{path}: is a directory", errno=errno.EISDIR)
                    handed_over = True
                    return walked.dir_fd
                try:
                    before = os.stat(walked.name, dir_fd=walked.dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass  # fine if O_CREAT is set; the open reports it otherwise
                except OSError as exc:
                    raise self._os_error(path, exc) from None
                else:
                    if stat.S_ISLNK(before.st_mode):
                        continue  # became a symlink after the walk: look again
                    # Refuse before opening: opening some devices has side effects.
                    if (err := _kind_error(path, before.st_mode)) is not None:
                        raise err
                try:
                    fd = os.open(
                        walked.name,
                        flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
                        mode,
                        dir_fd=walked.dir_fd,
                    )
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        continue  # swapped for a symlink in the last instant
                    raise self._os_error(path, exc) from None
                try:
                    # Check again on what we actually opened: it may have been
                    # swapped for a FIFO or device after the lstat above.
                    if (err := _kind_error(path, os.fstat(fd).st_mode)) is not None:
                        raise err
                    _clear_nonblock(fd)
                except BaseException:
                    os.close(fd)
                    raise
                return fd
            finally:
                if not handed_over:
                    os.close(walked.dir_fd)
        raise JailError(f"{path}: the path kept changing while it was being opened")

    def relative(self, path: Path) -> str:
        """`path` relative to the root for progress lines ("." for the root itself).

        Lexical only: meant for paths that came out of `resolve`. A path
        outside the root is returned unchanged.
        """
        parts = self._lexical_parts(path)
        if parts is None:
            return str(path)
        return "/".join(parts) or "."

    def contains(self, path: Path) -> bool:
        """Whether `path` lies at or under the root, judged lexically.

        This does not follow symlinks; use it on paths `resolve` produced. To
        decide whether an untrusted string is safe, call `resolve`.
        """
        return self._lexical_parts(path) is not None

    # -- the walk ---------------------------------------------------------

    def _lexical_parts(self, path: Path) -> list[str] | None:
        text = os.path.normpath(os.path.join(self._root, path))
        parts = [p for p in _split(text) if p]
        for root_parts in self._root_spellings:
            if parts[: len(root_parts)] == root_parts:
                return parts[len(root_parts) :]
        return None

    def _strip_root(self, absolute: str, display: str) -> list[str]:
        """The components of an absolute path below the root, or EscapeError.

        Matched component by component against the root's spellings, so
        `/root/../etc` keeps its `..` for the walk (which then refuses it) and
        `/rootother` does not pass for `/root`.
        """
        parts = [p for p in _split(absolute) if p not in ("", ".")]
        for root_parts in self._root_spellings:
            if parts[: len(root_parts)] == root_parts:
                return parts[len(root_parts) :]
        raise EscapeError(f"{display}: path escapes the working root")

    def _components(self, cwd: Path, path: str) -> list[str]:
        _check_text(path, "path")
        cwd_text = str(cwd)
        _check_text(cwd_text, "working directory")
        if path.startswith("/"):
            return self._strip_root(path, path)
        if cwd_text.startswith("/"):
            try:
                base = self._strip_root(cwd_text, cwd_text)
            except EscapeError:
                raise EscapeError(f"the working directory {cwd_text} is outside the working root") from None
        else:
            base = _split(cwd_text)
        return base + _split(path)

    def _open_root(self) -> int:
        try:
            return os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise JailError(
                f"the working root {self._root} is unavailable: {exc.strerror}", errno=exc.errno
            ) from None

    @staticmethod
    def _os_error(display: str, exc: OSError) -> JailError:
        reason = exc.strerror or type(exc).__name__
        return JailError(f"{display}: {reason}", errno=exc.errno)

    @staticmethod
    def _readlink(name: str, dir_fd: int) -> str | None:
        try:
            return os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return None  # not a symlink (EINVAL), or gone (ENOENT)

    def _walk(self, cwd: Path, path: str, *, create_dirs: bool = False) -> _Walked:
        todo = deque(self._components(cwd, path))
        root_fd = self._open_root()
        # The directories we descended through, with their descriptors: `..`
        # pops this stack instead of asking the kernel, so it always returns to
        # the directory we really came from and can never rise above the root.
        stack: list[tuple[str, int]] = []
        keep = -1
        hops = 0
        mkdirs = 0

        def here() -> int:
            return stack[-1][1] if stack else root_fd

        def count_hop() -> None:
            nonlocal hops
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise JailError(f"{path}: too many levels of symbolic links (a loop?)", errno=errno.ELOOP)

        def follow(name: str, target: str) -> None:
            count_hop()
            if target.startswith("/"):
                try:
                    rest = self._strip_root(target, path)
                except EscapeError:
                    shown = "/".join([n for n, _ in stack] + [name])
                    raise EscapeError(
                        f"{path}: path escapes the working root (through the symlink {shown})"
                    ) from None
                while stack:
                    os.close(stack.pop()[1])
                todo.extendleft(reversed(rest))
            else:
                todo.extendleft(reversed(_split(target)))

        try:
            while todo:
                name = todo.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not stack:
                        raise EscapeError(f"{path}: path escapes the working root")
                    os.close(stack.pop()[1])
                    continue
                if not todo:
                    # The final component: whatever it is (or isn't yet), the
                    # caller opens it with O_NOFOLLOW. Only a symlink is
                    # resolved further, here, under our rules.
                    try:
                        st = os.stat(name, dir_fd=here(), follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                    except OSError as exc:
                        raise self._os_error(path, exc) from None
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        target = self._readlink(name, here())
                        if target is not None:
                            follow(name, target)
                            continue
                        # It stopped being a link between lstat and readlink:
                        # look again, but count it so flapping cannot spin us.
                        count_hop()
                        todo.appendleft(name)
                        continue
                    keep = here()
                    return _Walked(keep, name, (*(n for n, _ in stack), name))
                # A directory on the way: it must open as a directory without
                # following anything.
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=here())
                except OSError as exc:
                    target = self._readlink(name, here())
                    if target is not None:
                        follow(name, target)
                        continue
                    if exc.errno == errno.ENOENT and create_dirs and mkdirs < 64:
                        mkdirs += 1
                        try:
                            os.mkdir(name, 0o755, dir_fd=here())
                        except FileExistsError:
                            pass  # someone else made it; open whatever it is now
                        except OSError as mk_exc:
                            raise self._os_error(path, mk_exc) from None
                        todo.appendleft(name)
                        continue
                    if exc.errno == errno.ENOTDIR:
                        shown = "/".join([n for n, _ in stack] + [name])
                        raise JailError(f"{path}: {shown} is not a directory", errno=exc.errno) from None
                    raise self._os_error(path, exc) from None
                stack.append((name, fd))
            # Ran out of components on a directory (the root, "x/", "x/.."):
            # the path names that directory itself.
            keep = here()
            return _Walked(keep, None, tuple(n for n, _ in stack))
        finally:
            for _, fd in stack:
                if fd != keep:
                    os.close(fd)
            if root_fd != keep:
                os.close(root_fd)
