"""Deleting the media files no session references any more, after /forget and cleanups.

The media store keeps each file once, for every chat that shared it, so a file can go only when no
stored record names it. The store keeps an index of what names what (vigil/store/engine/media_refs.py), in
the transactions that add and drop references, and marks the files a deletion dropped a reference to;
the media store marks the files it wrote new. A sweep looks at those marked files only, asks the index
(one read transaction) which are still named, deletes the others, and drops the marks it settled: its
cost follows what was deleted (and written) since the last one, not the size of the store. It still
runs on a thread of its own (`MediaSweeper`), never on a session's actor thread, and requests made
while one runs are served by one more run.

The race that matters: a photo arrives (its file is written, then its inbox record) while a sweep
runs. The file may be written, or found already there and touched, after the sweep read the
references and before the inbox record lands; so a sweep spares every file written or touched
within `GRACE_S` before it began (vigil/media/files.py). A file orphaned within that time goes at the next
sweep (the service sweeps at start-up too, over the marks a crash left: no store is read in full).

`vigil sessions delete|cleanup` run `sweep` themselves, from their own process: the grace covers the
service writing a file at the same moment, since it is judged by the file's time on disk.
"""

from __future__ import annotations

import threading
import time

from vigil.logs import get_logger
from vigil.media.files import MediaStore
from vigil.ports import Store

GRACE_S = 15 * 60.0


def sweep(store: Store, media: MediaStore, grace_s: float = GRACE_S) -> tuple[int, int]:
    """Delete the marked files no record references and not written within `grace_s`; (files, bytes) removed."""
    began = time.time()  # before the references are read: what is written after this is spared anyway
    new = media.marked()
    suspects = store.media_suspects()
    if not new and not suspects:
        return 0, 0
    named, stale = store.media_named({*new, *suspects})
    settled, files, removed = media.remove(sorted({*new, *suspects} - named), written_before=began - grace_s)
    done = named.union(settled)
    # Not waited for: until it lands, a later sweep looks at the same files again, harmlessly.
    store.media_settle({d: mark for d, mark in suspects.items() if d in done}, stale)
    media.unmark(d for d in new if d in done)
    return files, removed


class MediaSweeper:
    """Runs `sweep` on its own thread when asked; asks made while one runs coalesce into one more run."""

    def __init__(self, store: Store, media: MediaStore, grace_s: float = GRACE_S) -> None:
        self._store = store
        self._media = media
        self._grace_s = grace_s
        self._cond = threading.Condition()
        self._wanted = 0  # asks so far
        self._done = 0  # asks answered by a finished run
        self._closed = False
        self._thread: threading.Thread | None = None
        self._log = get_logger(__name__)

    def request(self) -> int:
        """Ask for a sweep (never blocks); returns a ticket for `wait`."""
        with self._cond:
            if self._closed:
                return self._wanted
            self._wanted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="media-sweep", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self._wanted

    def wait(self, ticket: int, timeout: float) -> bool:
        """Whether a sweep that began after ask `ticket` finished within `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= ticket or self._closed, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking asks and let a running sweep finish (the store must outlive it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted > self._done or self._closed)
                if self._closed:
                    return
                ticket = self._wanted
            started = time.monotonic()
            try:
                files, removed = sweep(self._store, self._media, self._grace_s)
            except Exception as exc:  # a sweep that failed deletes nothing more; the next ask tries again
                self._log.error("media.sweep_failed", error=repr(exc))
            else:
                if files:
                    self._log.info("media.swept", files=files, bytes=removed,
                                   ms=round((time.monotonic() - started) * 1000))
            with self._cond:
                self._done = ticket
                self._cond.notify_all()
