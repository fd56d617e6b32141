"""`vigil backup PATH`: a consistent, compacted copy of the store and the media it names, while vigil runs.

The copy is LMDB's own (`mdb_env_copy2` with compaction, py-lmdb's `env.copy(compact=True)`): it
reads the store in one read transaction, so it is one consistent snapshot however many chats write
meanwhile, and it never blocks the service (LMDB is made for readers in several processes; this
process opens the store as `vigil sessions` does and takes no lock). Compaction writes only the live
pages, so the copy is as small as the data, however large the live file grew before a retention pass.

Then the media files the *copied* store names (its media index, vigil/store/engine/media_refs.py) are copied,
byte for byte (a hard link would share the very inode a disk fault or an operator's rm takes away) and
checked against their name (the sha256 of their bytes). Last comes `manifest.json`: vigil's version,
when, counts, and the size and sha256 of every file, which `vigil restore` verifies before it touches
anything. The backup is built in `PATH.partial-<pid>` and renamed to PATH once complete and synced, so
PATH either is a whole backup or does not exist.

A year's store is gigabytes and tens of thousands of files: files are copied, hashed and synced by a few
threads at once (hashing and I/O release the GIL, and many fsyncs in flight share the file system's
journal commits), and each file is synced once, after all are written, not as each is written.

Layout: `PATH/manifest.json`, `PATH/store/data.mdb`, `PATH/media/<2 hex>/<sha256>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from vigil import __version__
from vigil.config.settings import Settings
from vigil.durable import fsync_dir, fsync_path
from vigil.errors import UserError
from vigil.media.files import MediaStore
from vigil.store.engine import media_refs
from vigil.store.engine.lmdb_env import DB_NAMES, MAX_DBS, PRIVATE_DIR
from vigil.store.store import open_store

FORMAT = "vigil-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_FILE = "store/data.mdb"
CHUNK = 1 << 20
THREADS = 8
T = TypeVar("T")
R = TypeVar("R")


def in_parallel(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`work` over `items` on a few threads (for I/O and hashing, which release the GIL), in order."""
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(work, items))


def sync_tree(root: Path) -> None:
    """Every file under `root` on disk, then every directory (its names)."""
    files: list[Path] = []
    directories: list[Path] = []
    for directory, _, names in os.walk(root):
        directories.append(Path(directory))
        files += [Path(directory) / name for name in names]
    in_parallel(fsync_path, files)
    in_parallel(fsync_dir, directories)


def copy_file(source: Path, target: Path, sync: bool = True) -> tuple[int, str]:
    """Copy bytes (never a link) to a new file (fsynced unless `sync` is False); (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                size += len(chunk)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    return size, digest.hexdigest()


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_copy(store_dir: Path) -> tuple[set[str], int, int]:
    """(media digests named, sessions, turns) of a copied store, opened read-only without a lock file."""
    env = lmdb.open(str(store_dir), readonly=True, lock=False, max_dbs=MAX_DBS, subdir=True)
    try:
        with env.begin() as txn:
            dbs: dict[bytes, Any] = {name: env.open_db(name, txn=txn, create=False) for name in DB_NAMES}
            referenced = media_refs.indexed(txn, dbs)
            return referenced, int(txn.stat(dbs[b"sessions"])["entries"]), int(txn.stat(dbs[b"turns"])["entries"])
    finally:
        env.close()


def take_backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Write a whole backup at `target` (which must not exist yet); the manifest."""
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} exists already: name a new directory for the backup")
    if not (settings.data_dir / "data.mdb").is_file():
        raise UserError(f"no store at {settings.data_dir} (VIGIL_DATA_DIR): nothing to back up")
    data_dir = settings.data_dir.resolve()
    if target == data_dir or data_dir in target.parents:
        raise UserError(f"{target} lies inside the data directory {data_dir}: put backups elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=PRIVATE_DIR)
    for part in ("store", "media"):  # conversations: the service user's only, as in the data directory
        (staging / part).mkdir(mode=PRIVATE_DIR)
    try:
        manifest = _write(settings, staging)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write(settings: Settings, staging: Path) -> dict[str, Any]:
    started = time.time()
    store = open_store(settings.data_dir, settings.store_map_mb)
    try:
        # One read transaction: a consistent snapshot, whatever the service commits meanwhile.
        store.environment.env.copy(str(staging / "store"), compact=True)
    finally:
        store.close()
    os.chmod(staging / STORE_FILE, 0o600)
    files: dict[str, dict[str, Any]] = {}
    referenced, sessions, turns = read_copy(staging / "store")
    media = MediaStore(settings.data_dir / "media")

    def copied(name: str) -> tuple[str, int, str] | None:
        if not name:  # the store's copy: hashed beside the media files' copies
            size, digest = file_digest(staging / STORE_FILE)
            return STORE_FILE, size, digest
        try:
            size, digest = copy_file(media.path(name), staging / f"media/{name[:2]}/{name}", sync=False)
        except FileNotFoundError:
            return None  # named by a record, gone from the disk (deleted by hand, or never arrived)
        if digest != name:
            (staging / f"media/{name[:2]}/{name}").unlink()
            return None  # damaged on disk: a backup must not carry bad bytes under a good name
        return name, size, digest

    missing: list[str] = []
    media_bytes = 0
    names = ["", *sorted(referenced)]
    for name, outcome in zip(names, in_parallel(copied, names), strict=True):
        if outcome is None:
            missing.append(name)
            continue
        _, size, digest = outcome
        files[f"media/{name[:2]}/{name}" if name else STORE_FILE] = {"size": size, "sha256": digest}
        media_bytes += size if name else 0
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "vigil_version": __version__,
        "created_at": started, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "source": str(settings.data_dir), "sessions": sessions, "turns": turns,
        "media_files": len(files) - 1, "media_bytes": media_bytes, "missing_media": missing, "files": files,
    }
    fd = os.open(staging / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    sync_tree(staging)
    return manifest


def verify(backup: Path) -> dict[str, Any]:
    """The manifest of a whole, undamaged backup; UserError naming the first thing that is wrong."""
    path = backup / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{backup} is not a vigil backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{backup}: {MANIFEST} cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{backup}: {MANIFEST} is not a vigil backup's manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(f"{backup} was written by a newer vigil ({manifest.get('vigil_version')}): upgrade vigil")
    files = manifest.get("files")
    if not isinstance(files, dict) or STORE_FILE not in files:
        raise UserError(f"{backup}: the manifest lists no store")
    for relative in files:
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise UserError(f"{backup}: the manifest names {relative!r}, outside the backup")

    def found(relative: str) -> tuple[int, str] | None:
        try:
            return file_digest(backup / relative)
        except FileNotFoundError:
            return None

    ordered = sorted(files, key=lambda r: (r != STORE_FILE, r))  # the largest first: it takes longest
    outcomes = dict(zip(ordered, in_parallel(found, ordered), strict=True))
    for relative in sorted(files):  # the first problem by name, whichever hash ended first
        outcome = outcomes[relative]
        if outcome is None:
            raise UserError(f"{backup} is damaged: {relative} is missing; nothing was restored")
        expected = files[relative]
        if outcome != (expected.get("size"), expected.get("sha256")):
            raise UserError(f"{backup} is damaged: {relative} does not match its manifest (size or sha256); "
                            "nothing was restored")
    return manifest
