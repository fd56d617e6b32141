"""The disk in view: how big the store and the media are, how much room is left, and a word to the admins
when it runs short.

A store that cannot grow refuses every session's next commit, and by the time the log says so the
service already turns work away; a full disk is also the one failure an operator can fix before it
happens. So `vigil run` watches the file systems the store and the media live on: every minute, after
every file a user sends is stored, and at once when the store fails to save. When free space falls
under `VIGIL_DISK_WARN_PERCENT` (10 %) or the store could not save (cannot grow), each admin
(`VIGIL_ADMIN_USERS`) is told in their private chat, at most once a day for each of the two causes.
When they were told is kept in `<data dir>/disk-warned`: a file of fixed size, made while there is room
and then written in place, over its own blocks, so recording a warning needs no new block on a full disk,
and a restart (systemd restarting a failing service, say) does not tell them again the same day.
`/status` (for admins) and `vigil check` show the same numbers (`DiskReport.line`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vigil.logs import get_logger

CHECK_EVERY_S = 60.0
MEDIA_WALK_EVERY_S = 60.0
TELL_AGAIN_AFTER_S = 86400.0
WARNED_FILE = "disk-warned"
FULL_BYTES = 1024 * 1024  # less room than this where the store lives: a failed write is the disk being full

Cause = Literal["space", "store"]
CAUSES: tuple[Cause, ...] = ("space", "store")
_TIMES = struct.Struct("<" + "d" * len(CAUSES))  # when each cause was last told, epoch seconds
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def size(count: int) -> str:
    """Bytes the way `df -H` counts them: 45.1 MB, 252 GB."""
    amount = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" or amount >= 100 else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Room:
    """The free space of one file system, as an unprivileged process may use it."""

    path: Path
    free: int
    total: int

    @property
    def percent_free(self) -> float:
        return 100.0 * self.free / self.total if self.total else 100.0

    def line(self) -> str:
        return f"{size(self.free)} free of {size(self.total)} ({self.percent_free:.0f} %) on {self.path}"


def rooms(paths: Iterable[Path]) -> tuple[Room, ...]:
    """The file systems `paths` lie on, each once (by device); a path that does not exist yet is skipped."""
    found: dict[int, Room] = {}
    for path in paths:
        try:
            device = os.stat(path).st_dev
            stats = os.statvfs(path)
        except OSError:
            continue
        if device not in found:
            found[device] = Room(path, stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize)
    return tuple(found.values())


def tree_bytes(root: Path) -> int:
    """The bytes of the files under `root` (the media store: two levels of content-addressed files)."""
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    total += tree_bytes(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


@dataclass(frozen=True)
class DiskReport:
    store_bytes: int  # the LMDB data file
    media_bytes: int
    rooms: tuple[Room, ...]

    def line(self) -> str:
        where = "; ".join(room.line() for room in self.rooms) or "free space unknown"
        return f"Disk: store {size(self.store_bytes)} · media {size(self.media_bytes)} · {where}"


def measure(data_dir: Path, media_dir: Path, media_bytes: int | None = None) -> DiskReport:
    """The sizes and the room left now (`media_bytes`, if known, spares walking the media store)."""
    try:
        store = os.stat(data_dir / "data.mdb").st_size
    except OSError:
        store = 0
    media = tree_bytes(media_dir) if media_bytes is None else media_bytes
    return DiskReport(store, media, rooms((data_dir, media_dir)))


def no_room(error: BaseException) -> bool:
    """Whether a failed write failed for want of room (a full disk, a quota, a map that could not grow)."""
    import lmdb  # not at the top: the settings import this module to read VIGIL_DISK_WARN_PERCENT

    if isinstance(error, lmdb.MapFullError):
        return True
    if isinstance(error, OSError) and error.errno in _NO_ROOM:
        return True
    text = str(error)
    return any(os.strerror(code) in text for code in _NO_ROOM) or "MDB_MAP_FULL" in text


class Told:
    """When the admins were last told of each cause, kept in a file written in place."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._times = dict.fromkeys(CAUSES, 0.0)
        self._log = get_logger(__name__)

    def open(self) -> None:
        """Read the file, made (zeroed, durably) if missing; without it, warnings are remembered in memory."""
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._log.warning("disk.told_file_unavailable", path=str(self._path), error=str(exc))
            return
        try:
            raw = os.pread(fd, _TIMES.size, 0)
            if len(raw) == _TIMES.size:
                self._times = dict(zip(CAUSES, _TIMES.unpack(raw), strict=True))
            else:  # new (or cut short): its blocks are taken now, while there is room
                os.pwrite(fd, _TIMES.pack(*(0.0 for _ in CAUSES)), 0)
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self._log.warning("disk.told_file_unavailable", path=str(self._path), error=str(exc))
            return
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def due(self, cause: Cause, now: float) -> bool:
        return not 0 <= now - self._times[cause] < TELL_AGAIN_AFTER_S

    def record(self, cause: Cause, now: float) -> None:
        self._times[cause] = now
        if self._fd is None:
            return
        try:
            os.pwrite(self._fd, _TIMES.pack(*(self._times[c] for c in CAUSES)), 0)
            os.fdatasync(self._fd)
        except OSError as exc:
            self._log.warning("disk.told_not_kept", error=str(exc))


class DiskWatch:
    """Checks the room left and tells the admins; `start` it with a way to reach them (vigil run only)."""

    def __init__(self, data_dir: Path, media_dir: Path, admins: Iterable[int], warn_percent: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.media_dir = media_dir
        self.admins = tuple(sorted(admins))
        self.warn_percent = warn_percent
        self._clock = clock
        self._told = Told(data_dir / WARNED_FILE)
        self._send: Callable[[int, str], None] | None = None
        self._failure = ""  # why the store could not save, since the last check
        self._full = False  # and whether that error itself said there was no room
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._media, self._media_at = 0, float("-inf")  # the media store's size as last walked, and when
        self._quiet: set[Cause] = set()  # causes found again while already told (logged once per process)
        self._log = get_logger(__name__)

    def report(self) -> DiskReport:
        """The numbers now; the media store's size is walked at most once a minute (20,000 files: ~0.1 s)."""
        now = time.monotonic()
        with self._lock:
            known = self._media if now - self._media_at < MEDIA_WALK_EVERY_S else None
        report = measure(self.data_dir, self.media_dir, known)
        if known is None:
            with self._lock:
                self._media, self._media_at = report.media_bytes, now
        return report

    def start(self, send: Callable[[int, str], None]) -> None:
        """Check now, then every minute and when poked, on a thread of its own; `send(admin id, text)`."""
        self._send = send
        self._told.open()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self._told.close()

    def poke(self) -> None:
        """Something took room (a file stored): check soon. Any thread; costs nothing."""
        self._wake.set()

    def store_failed(self, error: BaseException) -> None:
        """The store could not save (told by its writer, any thread): the admins hear of it soon.

        A full disk does not always say ENOSPC: LMDB reports a short write as EIO ("Input/output error"),
        so the cause is judged from the error and the room left together (`_text`); any failure to save
        is worth an admin's attention."""
        with self._lock:
            self._failure = str(error) or type(error).__name__
            self._full = self._full or no_room(error)
        self._wake.set()

    def check(self) -> list[Cause]:
        """One check: the causes the admins were told of now."""
        now = self._clock()
        with self._lock:
            failure, self._failure = self._failure, ""
            full, self._full = self._full, False
        short = [room for room in rooms((self.data_dir, self.media_dir)) if room.percent_free < self.warn_percent]
        found: list[Cause] = []
        if short:
            found.append("space")
        if failure:
            found.append("store")
        told: list[Cause] = []
        for cause in found:
            if not self._told.due(cause, now):
                if cause not in self._quiet:
                    self._quiet.add(cause)
                    self._log.info("disk.already_told", cause=cause)
                continue
            text = self._text(cause, self.report(), failure, full)
            self._log.warning("disk.admins_told", cause=cause, admins=len(self.admins), text=text)
            for admin in self.admins:
                if self._send is not None:
                    self._send(admin, text)
            self._told.record(cause, now)
            told.append(cause)
        return told

    def _text(self, cause: Cause, report: DiskReport, failure: str, full: bool) -> str:
        sizes = f"The store takes {size(report.store_bytes)}, the media {size(report.media_bytes)}."
        where = "; ".join(room.line() for room in report.rooms)
        if cause == "store":
            store_room = report.rooms[0] if report.rooms else None  # the data directory's comes first
            if full or (store_room is not None and store_room.free < FULL_BYTES):
                return (f"⚠️ The store cannot grow: its disk is full ({failure[:200]}). Until there is room, "
                        f"what people send may not be kept. {where}. {sizes} Free some space on that disk.")
            return (f"⚠️ The store could not save ({failure[:200]}). {where}. {sizes} "
                    "The log (journalctl -u vigil) says more.")
        return (f"⚠️ Disk space is low: {where}, under the {self.warn_percent:g} % I warn at. {sizes} "
                "Free some space there, or delete old conversations (/sessions cleanup, VIGIL_RETENTION), "
                "before the store cannot save. I'll tell you again tomorrow if it stays low.")

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception as exc:  # a check must never end the watch
                self._log.error("disk.check_failed", error=repr(exc))
            self._wake.wait(CHECK_EVERY_S)
            self._wake.clear()
