"""The disk in view (vigil/telemetry/disk.py): sizes and free space as measured on this machine, and the admins told
once a day per cause, remembered across restarts in a file written in place.

Everything here is real: the files, `statvfs` of the test's own file system, the `disk-warned` file. A
threshold of 100 % makes every real disk "short", which is how a test creates the condition without
filling a disk (tests/test_disk_e2e.py fills a real one, a small tmpfs, too).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.test_settings import home as home  # the fixture
from tests.test_settings import load, refusal
from vigil.config.parsing import percent as parse_percent
from vigil.telemetry.disk import WARNED_FILE, DiskWatch, measure, no_room, size

DAY = 86400.0


class Admins:
    """Records what the admins were sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, admin: int, text: str) -> None:
        self.sent.append((admin, text))


def watch(data: Path, now: list[float], percent: float = 100.0) -> tuple[DiskWatch, Admins]:
    admins = Admins()
    made = DiskWatch(data, data / "media", (7, 3), percent, clock=lambda: now[0])
    made._told.open()  # what `start` does before its thread's first check
    made._send = admins.send
    return made, admins


def test_sizes_and_free_space_are_measured(tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"\0" * 123_456)
    for digest, length in (("ab/ab01", 1000), ("cd/cd02", 2500)):
        path = tmp_path / "media" / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * length)
    report = measure(tmp_path, tmp_path / "media")
    stats = os.statvfs(tmp_path)
    assert (report.store_bytes, report.media_bytes) == (123_456, 3500)
    assert len(report.rooms) == 1, "the media on the store's own file system: one line"
    assert report.rooms[0].total == stats.f_blocks * stats.f_frsize
    assert report.line().startswith("Disk: store 123 kB · media 3.5 kB · ")
    assert f"on {tmp_path}" in report.line()
    assert measure(tmp_path / "none", tmp_path / "none" / "media").line() == \
        "Disk: store 0 B · media 0 B · free space unknown"


def test_sizes_read_like_df_h() -> None:
    assert [size(n) for n in (0, 999, 1000, 45_100_000, 252_000_000_000, 3 * 10**15)] == \
        ["0 B", "999 B", "1.0 kB", "45.1 MB", "252 GB", "3000 TB"]


def test_the_threshold_setting() -> None:
    assert [parse_percent(v) for v in ("10", "7.5 %", "off", "0", "100")] == [10.0, 7.5, 0.0, 0.0, 100.0]
    for bad in ("-1", "101", "lots"):
        with pytest.raises(ValueError, match="percentage from 0 to 100"):
            parse_percent(bad)


def test_the_threshold_is_a_setting_refused_in_one_line(home: Path) -> None:
    assert load(home).disk_warn_percent == 10.0
    assert load(home, VIGIL_DISK_WARN_PERCENT="5").disk_warn_percent == 5.0
    assert "VIGIL_DISK_WARN_PERCENT" in refusal(home, VIGIL_DISK_WARN_PERCENT="ten")


def test_admins_are_told_once_a_day_and_a_restart_does_not_tell_again(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    first, admins = watch(tmp_path, now)
    assert first.check() == ["space"]
    assert [admin for admin, _ in admins.sent] == [3, 7]
    text = admins.sent[0][1]
    assert text.startswith("⚠️ Disk space is low: ") and "under the 100 % I warn at" in text
    assert "The store takes 0 B, the media 0 B." in text
    now[0] += 3600
    assert first.check() == [], "told already today"
    kept = tmp_path / WARNED_FILE
    inode, length = kept.stat().st_ino, kept.stat().st_size
    first.stop()

    again, admins = watch(tmp_path, now)  # a restart the same day
    assert again.check() == [] and admins.sent == []
    now[0] += DAY
    assert again.check() == ["space"] and len(admins.sent) == 2
    assert (kept.stat().st_ino, kept.stat().st_size) == (inode, length), "written in place, never grown"
    again.stop()

    calm, admins = watch(tmp_path, now, percent=0.0)  # warnings off
    calm.store_failed(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert calm.check() == ["store"], "a store that cannot save is told even with the threshold off"
    assert admins.sent[0][1].startswith("⚠️ The store cannot grow: its disk is full (")
    calm.store_failed(RuntimeError("something else"))
    assert calm.check() == [], "once a day per cause"
    calm.stop()


def test_what_counts_as_no_room() -> None:
    import lmdb

    assert no_room(OSError(errno.ENOSPC, "x")) and no_room(OSError(errno.EDQUOT, "x"))
    assert no_room(lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached"))
    assert no_room(lmdb.Error(f"mdb_txn_commit: {os.strerror(errno.ENOSPC)}"))
    assert not no_room(lmdb.Error("mdb_txn_commit: Input/output error")), "judged by the room left instead"


def test_a_store_failure_with_room_left_is_told_as_it_is(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    failing, admins = watch(tmp_path, now, percent=0.0)
    failing.store_failed(OSError(errno.EIO, "Input/output error"))
    assert failing.check() == ["store"]
    assert admins.sent[0][1].startswith("⚠️ The store could not save (")
    failing.stop()


def test_a_store_whose_map_cannot_grow_tells_the_watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmdb

    from vigil.errors import StoreError
    from vigil.store.store import open_store

    store = open_store(tmp_path / "data", 1)  # a 1 MiB map: a 2 MB write finds it full
    now = [1_800_000_000.0]
    seen, admins = watch(tmp_path / "data", now, percent=0.0)
    store.observe_failures(seen.store_failed)

    def cannot_grow() -> int:
        raise lmdb.Error("mdb_env_set_mapsize: Cannot allocate memory")

    monkeypatch.setattr(store._lmdb, "grow", cannot_grow)  # the map is full and may not grow
    try:
        big = store.writer.submit(lambda txn: txn.put(b"big", b"\0" * 2_000_000, db=store._db[b"meta"]))
        with pytest.raises(StoreError, match="Cannot allocate memory"):
            big.result(10)
        assert seen.check() == ["store"]
        assert "could not save" in admins.sent[0][1] and "Cannot allocate memory" in admins.sent[0][1]
    finally:
        seen.stop()
        store.close()
