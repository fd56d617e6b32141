"""`vigil backup PATH`: a consistent, compacted copy of the store and the media it names, while vigil runs.

The copy is LMDB's own (`mdb_env_copy2` with compaction, py-lmdb's `env.copy(compact=True)`): it
reads the store in one read transaction, so it is one consistent snapshot however many chats write
meanwhile, and it never blocks the service (LMDB is made for readers in several processes; this
process opens the store as `vigil sessions` does and takes no lock). Compaction writes only the live
pages, so the copy is as small as the data, however large the live file grew before a retention pass.

Then the media files the *copied* store names (its media index, vigil/store/media_refs.py) are copied,
byte for byte with fsync (a hard link would share the very inode a disk fault or an operator's rm
takes away) and checked against their name (the sha256 of their bytes). Last comes `manifest.json`:
vigil's version, when, counts, and the size and sha256 of every file, which `vigil restore` verifies
before it touches anything. The backup is built in `PATH.partial-<pid>` and renamed to PATH once
complete, so PATH either is a whole backup or does not exist.

Layout: `PATH/manifest.json`, `PATH/store/data.mdb`, `PATH/media/<2 hex>/<sha256>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import lmdb

from vigil import __version__
from vigil.durable import fsync_dir
from vigil.errors import UserError
from vigil.media import MediaStore
from vigil.settings import Settings
from vigil.store import media_refs
from vigil.store.lmdb_env import DB_NAMES, MAX_DBS, PRIVATE_DIR
from vigil.store.store import open_store

FORMAT = "vigil-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_FILE = "store/data.mdb"
CHUNK = 1 << 20


def copy_file(source: Path, target: Path) -> tuple[int, str]:
    """Copy bytes (never a link) to a new file, fsynced; (size, sha256 hex)."""
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


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


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
    size, digest = file_digest(staging / STORE_FILE)
    files[STORE_FILE] = {"size": size, "sha256": digest}
    referenced, sessions, turns = read_copy(staging / "store")
    media = MediaStore(settings.data_dir / "media")
    missing: list[str] = []
    media_bytes = 0
    for name in sorted(referenced):
        relative = f"media/{name[:2]}/{name}"
        try:
            size, digest = copy_file(media.path(name), staging / relative)
        except FileNotFoundError:
            missing.append(name)  # named by a record, gone from the disk (deleted by hand, or never arrived)
            continue
        if digest != name:
            (staging / relative).unlink()
            missing.append(name)  # damaged on disk: a backup must not carry bad bytes under a good name
            continue
        files[relative] = {"size": size, "sha256": digest}
        media_bytes += size
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "vigil_version": __version__,
        "created_at": started, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "source": str(settings.data_dir), "sessions": sessions, "turns": turns,
        "media_files": len(files) - 1, "media_bytes": media_bytes, "missing_media": missing, "files": files,
    }
    fd = os.open(staging / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    _fsync_tree(staging)
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
    for relative, expected in sorted(files.items()):
        file = backup / relative
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise UserError(f"{backup}: the manifest names {relative!r}, outside the backup")
        try:
            size, digest = file_digest(file)
        except FileNotFoundError:
            raise UserError(f"{backup} is damaged: {relative} is missing; nothing was restored") from None
        if size != expected.get("size") or digest != expected.get("sha256"):
            raise UserError(f"{backup} is damaged: {relative} does not match its manifest (size or sha256); "
                            "nothing was restored")
    return manifest
