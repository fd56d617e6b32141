"""The media store: every file a user sent, stored once, by the sha256 of its bytes.

Photos, PDFs and documents must outlive eviction and restarts (the next request of a session carries
the same image), but they must not live inside turn records: a header or turn is rewritten at every
turn, and a 5 MB photo in it would be rewritten with it. So the bytes live here, under
`<data dir>/media/<first two hex digits>/<digest>`, and records hold an `Attachment` naming the digest.
Content addressing makes a photo shared in three chats one file, and makes writes idempotent: a
message replayed from the inbox after a crash finds its file already there.

Writes are durable before anything references them: temp file, fsync, rename, fsync of the directory.
Files are 0600 in 0700 directories (the service's user only; the bash sandbox never sees the data
dir). Removal is only ever of what no session references (`remove`), decided by the caller, which
knows the references (vigil/media/sweep.py).

A new file is marked before it is written (an empty file of its name in `fresh/`, made durable first):
the store learns of a file only from a record naming it, and a file whose record never lands (a crash
before the inbox write, a refused upload) would otherwise never be looked at again. A sweep looks at
the marked files as well as those the store's deletions marked, and unmarks what it settled; so no
sweep lists the whole directory.

A file is written before the record naming it (the inbox entry of the message) is committed, so a
sweep that gathered the references a moment earlier would not see that record: `sweep` therefore
spares files younger than a cutoff, and `put` of bytes already stored refreshes the file's time, so a
photo sent again, while a /forget of the only chat that held it sweeps, is not taken from under it.

Requests carry old images again at every turn, base64-encoded: `base64` keeps the encoded strings of
the files in use (bounded), so a session's history costs one encoding per file, not one per turn.
"""

from __future__ import annotations

import base64 as b64
import contextlib
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

from vigil.durable import fsync_dir, write_all

_DIGEST = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[0-9a-f]{2}")
FRESH = "fresh"


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MediaStore:
    """Content-addressed files under one directory; thread-safe (writes are atomic renames)."""

    def __init__(self, root: Path, cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self._cache_bytes = cache_bytes
        self._encoded: OrderedDict[str, str] = OrderedDict()
        self._encoded_chars = 0
        self._lock = threading.Lock()
        # Held across a put's "already there" check and a sweep's "old enough, delete": one of them wins.
        self._sweep_lock = threading.Lock()

    def path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a media digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store `data` (durably) unless it is there already; returns its digest."""
        digest = digest_of(data)
        final = self.path(digest)
        with self._sweep_lock:
            try:
                if final.stat().st_size == len(data):
                    os.utime(final)  # in use again: a sweep running now must spare it (see the docstring)
                    return digest
            except FileNotFoundError:
                pass
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.mark((digest,))
        tmp = final.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        """The bytes of `digest`. Raises FileNotFoundError if the file is gone (deleted by hand, a damaged disk)."""
        return self.path(digest).read_bytes()

    def base64(self, digest: str) -> str:
        """The file's bytes base64-encoded, as a request carries them; cached (bounded) by digest.

        Raises FileNotFoundError if the file is gone. Only the encoded form is kept: it is what every
        request of a session with images in its history wants, and keeping the bytes too would hold
        each image twice."""
        with self._lock:
            text = self._encoded.get(digest)
            if text is not None:
                self._encoded.move_to_end(digest)
                return text
        text = b64.b64encode(self.read(digest)).decode("ascii")
        if len(text) <= self._cache_bytes // 4:
            with self._lock:
                if digest not in self._encoded:
                    self._encoded[digest] = text
                    self._encoded_chars += len(text)
                while self._encoded_chars > self._cache_bytes and self._encoded:
                    _, dropped = self._encoded.popitem(last=False)
                    self._encoded_chars -= len(dropped)
        return text

    def digests(self) -> Iterator[str]:
        """Every stored digest (a walk of every file: for stats, backups and restores, never for a sweep)."""
        if not self.root.is_dir():
            return
        for bucket in sorted(self.root.iterdir()):
            if _BUCKET.fullmatch(bucket.name) and bucket.is_dir():
                for item in sorted(bucket.iterdir()):
                    if _DIGEST.fullmatch(item.name):
                        yield item.name

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def mark(self, digests: Iterable[str]) -> None:
        """Mark files for the next sweep to look at, durably (before a new file is written; after a restore)."""
        fresh = self.root / FRESH
        made = False
        for digest in digests:
            path = fresh / self.path(digest).name
            if not made:
                fresh.mkdir(mode=0o700, parents=True, exist_ok=True)
                made = True
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        if made:
            fsync_dir(fresh)

    def marked(self) -> list[str]:
        """The files marked for the next sweep (new since the last one, or put back by a restore)."""
        try:
            return [entry.name for entry in os.scandir(self.root / FRESH) if _DIGEST.fullmatch(entry.name)]
        except FileNotFoundError:
            return []

    def unmark(self, digests: Iterable[str]) -> None:
        for digest in digests:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / FRESH / self.path(digest).name)

    def remove(self, digests: Iterable[str], written_before: float | None = None) -> tuple[list[str], int, int]:
        """Delete these files (no record names them); (those settled: deleted or gone, files, bytes removed).

        With `written_before` (a time.time()), a file written or put again since then is spared, and not
        settled: a message naming it may be on its way to the store (see the module docstring)."""
        settled: list[str] = []
        files = removed = 0
        for digest in digests:
            size = self.take_away(digest, written_before)
            if size is None:
                if self.path(digest).exists():
                    continue  # spared: looked at again by a later sweep
                settled.append(digest)
                continue
            with self._lock:
                encoded = self._encoded.pop(digest, None)
                if encoded is not None:
                    self._encoded_chars -= len(encoded)
            settled.append(digest)
            files += 1
            removed += size
        return settled, files, removed

    def take_away(self, digest: str, written_before: float | None) -> int | None:
        """Delete a file unless it was put since `written_before`; its size, or None if spared or gone.

        The lock keeps this process's `put` out; another process's (`vigil sessions delete` sweeps from
        its own) is kept out by renaming the file away first: a `put` from then on finds no file and
        writes it anew, and one that refreshed its time just before shows in the time read after."""
        path = self.path(digest)
        doomed = path.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.doomed")
        with self._sweep_lock:
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                return None
            info = os.stat(doomed)
            if written_before is not None and info.st_mtime >= written_before:
                with contextlib.suppress(FileExistsError):  # a fresh copy is there already: keep that one
                    os.link(doomed, path)
                os.unlink(doomed)
                return None
            os.unlink(doomed)
        return info.st_size


def sniff_image(data: bytes) -> str | None:
    """The image format by signature (a Pillow format name), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None
