"""What opening a store needs beyond LMDB's defaults: a map with room to spare, and one sentence when it fails.

The map. LMDB maps max(the size it is given, the pages the opened state uses). The state a store
reopens at after an unclean end is the last checkpoint's (vigil.store.engine.journal), which may use fewer
pages than the last process had grown to; the journal's replay then writes in what came after it. Given
only `VIGIL_STORE_MAP_MB`, a store that grew past it reopened with no room at all, and its replay
failed with MapFullError at every start (issue 22). So a store opens with the larger of the map the
last commit recorded (LMDB writes it in every meta page, `mm_mapsize`) and data.mdb's size plus the
setting: `VIGIL_STORE_MAP_MB` is the room to grow into before the first resize, however large the store
already is. The map is address space, not memory or disk. Every write path (the replay too) still grows
the map on MapFullError: the room makes that rare, not impossible.

The sentence. A store that cannot be opened stops vigil before it serves anyone; the operator reads
one line (`vigil: ...`) that says what failed, why, and what to do, never a traceback. The errors LMDB
and the OS raise are turned into that sentence here; anything else is logged in full and named in the
sentence. What no restart can mend (a damaged data.mdb, files not the service user's, a read-only file
system) exits 3, which the systemd unit does not restart on: it would only fail again every few seconds.
A full disk exits 1 and is restarted: the service comes back by itself once there is room.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lmdb

from vigil.errors import StoreError, StoreNeedsAttention
from vigil.logs import get_logger
from vigil.store.engine import checkpoint

MIB = 1024 * 1024
# A recorded map larger than this is not believed (a damaged meta page must not make the open fail).
RECORDED_MAX = 1 << 40
# Less free space than this on the store's file system, and an I/O error is taken for a full disk.
FULL_BELOW = MIB


def map_size_for(path: Path, configured: int) -> int:
    """The map to open the store at `path` with (see the module docstring)."""
    data = path / "data.mdb"
    try:
        size = data.stat().st_size
    except FileNotFoundError:
        return configured
    need = -(-(size + configured) // MIB) * MIB
    recorded = checkpoint.recorded_map_size(data)
    return max(configured, recorded if recorded <= RECORDED_MAX else 0, need)


_OWN = "make the directory and its files the service user's (`chown -R vigil: DIR`)"
_FIX = {  # why, and what to do about it
    errno.ENOSPC: ("the disk is full", "free some space on that disk"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or raise the quota"),
    errno.EACCES: ("permission denied", _OWN),
    errno.EPERM: ("permission denied", _OWN),
    errno.EROFS: ("the file system is read-only", "mount it read-write or point VIGIL_DATA_DIR elsewhere"),
    errno.EIO: ("the disk reported an I/O error", "check the disk (dmesg, smartctl); if data.mdb is damaged, "
                "put a backup back with `vigil restore PATH`"),
    errno.ENOTDIR: ("a file stands where a directory belongs", "move it away or point VIGIL_DATA_DIR elsewhere"),
    errno.EEXIST: ("a file stands where a directory belongs", "move it away or point VIGIL_DATA_DIR elsewhere"),
    errno.ENOMEM: ("the process may not map the store (memory or address space)",
                   "raise its limits (ulimit -v, MemoryMax=) or lower VIGIL_STORE_MAP_MB"),
    errno.EMFILE: ("the process may open no more files", "raise its limit (LimitNOFILE=)"),
    errno.ENFILE: ("the system may open no more files", "close other programs' files"),
}
_DAMAGED = (lmdb.InvalidError, lmdb.CorruptedError, lmdb.VersionMismatchError, lmdb.PageNotFoundError,
            lmdb.BadValsizeError, lmdb.IncompatibleError)


# Failures no restart can mend: the operator must act (StoreNeedsAttention, exit 3, not restarted by systemd).
_STUCK = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def describe(path: Path, exc: BaseException) -> tuple[str, str]:
    """Why a store operation at `path` failed with `exc` (with the error's own words), and what to do ("" if
    nothing but the log can say)."""
    detail = _detail(exc).removeprefix(f"{path}: ")  # py-lmdb names the directory; the sentence already does
    number = _cause(path, exc)
    if number in _FIX:
        why, fix = _FIX[number]
        return f"{why} ({detail})", fix.replace("DIR", str(path))
    if isinstance(exc, _DAMAGED):
        return (f"data.mdb is damaged or not a vigil store ({detail})",
                "put a backup back with `vigil restore PATH`, or move the directory away to start afresh")
    if isinstance(exc, lmdb.MapFullError):
        return f"its map is full even after growing ({detail})", "raise VIGIL_STORE_MAP_MB above data.mdb's size"
    return detail, ""


def open_failure(path: Path, exc: BaseException) -> StoreError:
    """The one sentence for an open of the store at `path` that raised `exc`: what, why, what to do."""
    if isinstance(exc, StoreError):
        return exc
    why, fix = describe(path, exc)
    if not fix:  # the sentence can only point at the log: the traceback goes there
        get_logger(__name__).error("store.open_failed", path=str(path), exc_info=exc)
    then = f"{fix}, then start vigil again" if fix else "the log has the details"
    stuck = isinstance(exc, _DAMAGED) or _cause(path, exc) in _STUCK
    return (StoreNeedsAttention if stuck else StoreError)(f"cannot open the store at {path}: {why}; {then}")


def _cause(path: Path, exc: BaseException) -> int | None:
    number = _errno_of(exc)
    if number == errno.EIO and _nearly_full(path):
        return errno.ENOSPC  # LMDB reports a write that the full disk cut short as EIO
    return number


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    if isinstance(exc, lmdb.DiskError):  # py-lmdb's names for ENOSPC, EACCES and ENOMEM
        return errno.ENOSPC
    if isinstance(exc, lmdb.ReadonlyError):
        return errno.EACCES
    if isinstance(exc, lmdb.MemoryError):
        return errno.ENOMEM
    text = str(exc)  # the OS's other errors py-lmdb reports by their strerror text
    return next((number for number in _FIX if os.strerror(number) in text), None)


def _nearly_full(path: Path) -> bool:
    try:
        found = os.statvfs(path)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < FULL_BELOW


def _detail(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__
