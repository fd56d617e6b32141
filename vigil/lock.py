"""Process locks in the data directory, so two processes never serve the same sessions.

Telegram allows one poller per bot token, and two processes answering the same
console session would interleave its turns; an advisory `flock` held for the
process's lifetime makes the second one refuse with a clear message. The lock
disappears with the process, also after `kill -9`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vigil.errors import AlreadyRunning as AlreadyRunning  # its old home: re-exported


class ProcessLock:
    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> ProcessLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # also a lock file an older vigil (or another umask) created
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"{self.what} is already running on {self.path.parent} (pid {holder}); "
                                 "stop it first, or use another VIGIL_DATA_DIR") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
