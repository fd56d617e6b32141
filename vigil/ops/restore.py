"""`vigil restore PATH`: put a backup (vigil/ops/backup.py) in place of the store, never under a running vigil.

Refused while the store is in use: `vigil run` and every `vigil chat` hold a lock in the data
directory (vigil/lock.py) for as long as they live; restore takes those same locks and keeps them
until it is done, so a service starting meanwhile refuses instead of opening a half-restored store.
Refused too when the backup fails its manifest (a missing file, a size or sha256 that differs):
nothing is touched then.

Otherwise the store is replaced in one step: the backup's store is copied next to `data.mdb`, fsynced,
and renamed over it (atomic: at every instant `data.mdb` is the old store or the new one, whole).
Files are copied by the kernel (`copy_file_range`), a few at once, and synced once each before their
names are given (vigil/ops/backup.py says why: a year's backup is gigabytes in tens of thousands of files).
Nothing of the old is deleted: before the swap, `data.mdb` and every media file are hard-linked into
`pre-restore-<time>/` in the data directory (a link costs no space and keeps the old bytes when the
names are replaced; it is a place to go back to, not a backup). The backup's media files are copied
into the media store beside the old ones (content-addressed: a file of the same name holds the same
bytes); every file is then marked for the next sweep (vigil/media/files.py), so those the restored store does
not name are removed by the service's media sweep at start-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from vigil.config.settings import Settings
from vigil.durable import fsync_dir, fsync_path
from vigil.errors import AlreadyRunning, UserError
from vigil.lock import ProcessLock
from vigil.media.files import MediaStore
from vigil.ops.backup import MANIFEST, STORE_FILE, in_parallel, verify
from vigil.store.engine.lmdb_env import PRIVATE_DIR
from vigil.store.store import open_store, unreadable_line


def _lock_all(data_dir: Path) -> list[ProcessLock]:
    """The locks of every vigil that could be using the store: `vigil run`'s and each `vigil chat`'s."""
    held: list[ProcessLock] = []
    paths = [data_dir / "vigil-run.lock", *sorted(data_dir.glob("console-*.lock"))]
    try:
        for path in paths:
            what = "vigil run" if path.name == "vigil-run.lock" else f"vigil chat ({path.stem})"
            held.append(ProcessLock(path, what).acquire())
    except AlreadyRunning as exc:
        for lock in held:
            lock.release()
        raise UserError(f"refusing to restore while the store is in use: {exc}") from None
    return held


def _link_aside(source: Path, aside: Path) -> None:
    aside.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    try:
        os.link(source, aside)
    except OSError:
        shutil.copy2(source, aside)  # a file system without hard links: the old bytes are kept all the same


def _move_aside(data_dir: Path, stamp: str) -> Path | None:
    """Hard links of the old store and media under `pre-restore-<stamp>/`; None when there is no old store."""
    store = data_dir / "data.mdb"
    if not store.exists():
        return None
    aside = data_dir / f"pre-restore-{stamp}"
    aside.mkdir(mode=PRIVATE_DIR)
    _link_aside(store, aside / "data.mdb")
    media = MediaStore(data_dir / "media")
    for name in media.digests():
        with contextlib.suppress(FileNotFoundError):
            _link_aside(media.path(name), aside / "media" / name[:2] / name)
    fsync_dir(aside)
    return aside


def _already(media: MediaStore, manifest: dict[str, Any], relative: str) -> bool:
    """The media store holds this file already (content-addressed: the same name is the same bytes)."""
    final = media.path(Path(relative).name)
    return final.is_file() and final.stat().st_size == manifest["files"][relative]["size"]


def _copied(source: Path, final: Path) -> Path:
    """`source`'s bytes in a partial file beside `final` (the kernel copies them; not yet synced)."""
    final.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.restore.tmp")
    partial.unlink(missing_ok=True)
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o600)
    return partial


def restore_backup(settings: Settings, backup: Path) -> dict[str, Any]:
    """Verify and put in place; a summary (counts, where the old store went)."""
    backup = backup.absolute()
    if not (backup / MANIFEST).is_file():
        raise UserError(f"{backup} is not a vigil backup: it has no {MANIFEST}")
    data_dir = settings.data_dir
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    locks = _lock_all(data_dir)
    try:
        manifest = verify(backup)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        aside = _move_aside(data_dir, stamp)
        media = MediaStore(data_dir / "media")
        wanted = [r for r in sorted(manifest["files"]) if r != STORE_FILE and not _already(media, manifest, r)]
        partials = in_parallel(lambda relative: _copied(backup / relative, media.path(Path(relative).name)), wanted)
        in_parallel(fsync_path, partials)  # every file's bytes on disk, then their names
        for partial in partials:
            os.replace(partial, partial.with_name(partial.name.removeprefix(".").removesuffix(".restore.tmp")))
        in_parallel(fsync_dir, sorted({p.parent for p in partials}))
        partial = _copied(backup / STORE_FILE, data_dir / "data.mdb")
        fsync_path(partial)
        os.replace(partial, data_dir / "data.mdb")  # the one step: old store or new, never neither
        fsync_dir(data_dir)
        media.mark(media.digests())  # the old store's files and the backup's: the sweep keeps what is named
        store = open_store(data_dir, settings.store_map_mb)
        try:
            headers, skipped = store.scan_headers()
        finally:
            store.close()
    finally:
        for lock in locks:
            lock.release()
    return {"sessions": len(headers), "unreadable": unreadable_line(skipped), "turns": manifest["turns"],
            "media_files": manifest["media_files"], "created": manifest["created"],
            "aside": str(aside) if aside else ""}
