"""The cross-process commit lock: who may write LMDB now, in this process and in the others.

Every process that writes the store takes it around a whole write transaction, before LMDB's own writer
lock (never after: no two processes then wait on each other), and the journal's checkpoints take it so
that no meta page is read mid-write (vigil.store.engine.journal). It is a flock on the checkpoint file, with a
re-entrant mutex for this process's threads.

The owner of the journal commits journal-first: it plans a batch from its caches and LMDB gets the
changes later, from the apply thread (vigil.store.engine.behind). Between the two nobody else may write, so the
owner keeps the lock while its apply thread has work and a moment longer (a talking chat then pays no
flock per turn). Another process that wants to write says so in `want.lock` before it waits; the owner's
apply thread looks (`wanted`, as it polls) and gives way (`give_way`): our commits pause, what we handed
goes into LMDB, the lock goes to the other process, and ours resume once it has committed. Whoever takes
the lock afresh (`unchecked`) must assume another process wrote meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Callable, Iterator
from typing import Protocol


class _Poked(Protocol):
    def poke(self) -> None:
        """The lock was taken for something else than a batch handed to the apply thread."""


class CommitLock:
    """The lock (see the module docstring): `side` is the flocked checkpoint file, `want` the file others
    announce themselves in; `owner` says whether this process owns the journal."""

    def __init__(self, side: int, want: int, owner: bool) -> None:
        self._side = side
        self._want = want
        self.owner = owner
        self.mutex = threading.RLock()  # this process's commits, appends and checkpoints
        self._depth = 0  # `hold` nesting (a transaction holds it, and its commit again, and a checkpoint in it)
        self._flocked = False  # this process holds the cross-process lock
        # Set whenever this process takes the lock afresh (any of its threads: a checkpoint as well as a
        # commit), cleared only by the journal-first commit once it has checked: another process may have
        # written while this one did not hold the lock, and the caches that plan commits must hear of it.
        self.unchecked = False
        self.behind: _Poked | None = None  # the owner's apply thread (vigil.store.engine.behind), once started

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        """Held around a whole write transaction, from before it begins to what makes it durable.

        This process's lock, and the cross-process one: no meta page is read mid-write, and another
        process never writes between a journal-first commit's plan and its apply (vigil.store.engine.behind).
        Everyone takes the cross-process lock before LMDB's writer lock, never after (no deadlock).
        The owner keeps it while its apply thread has work, and a moment longer; another process waits
        for it in `want.lock`, which the owner's apply thread sees (`wanted`) and gives way to.
        """
        self.hold()
        try:
            yield
        finally:
            self.unhold()

    def hold(self) -> None:
        """`committing` without the generator (the journal-first commit's, on every turn); re-entrant."""
        self.mutex.acquire()
        self._depth += 1
        if self._depth > 1:
            return
        if not self._flocked:
            try:
                if not self.owner:
                    fcntl.flock(self._want, fcntl.LOCK_EX)  # the owner's apply thread gives way to it
                fcntl.flock(self._side, fcntl.LOCK_EX)
            except BaseException:
                if not self.owner:
                    fcntl.flock(self._want, fcntl.LOCK_UN)
                self._depth -= 1
                self.mutex.release()
                raise
            self._flocked = True
            self.unchecked = True

    def unhold(self, handed: bool = False) -> None:
        """`handed`: a batch went to the apply thread, which gives the lock up once quiet, unasked."""
        try:
            self._depth -= 1
            if self._depth:
                return
            if self.behind is not None:
                if not handed:
                    self.behind.poke()
            elif self._flocked:
                self._flocked = False
                fcntl.flock(self._side, fcntl.LOCK_UN)
                if not self.owner:
                    fcntl.flock(self._want, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

    def release(self, still: Callable[[], bool]) -> None:
        """Give the cross-process lock up, if held and `still()` holds once no commit is under way."""
        with self.mutex:
            if self._flocked and not self._depth and still():
                self._flocked = False
                fcntl.flock(self._side, fcntl.LOCK_UN)

    def wanted(self) -> bool:
        """Whether another process waits to commit (cheap: the owner's apply thread asks as it polls)."""
        try:
            fcntl.flock(self._want, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._want, fcntl.LOCK_UN)
        return False

    def give_way(self, drain: Callable[[], None]) -> None:
        """Let the process that waits commit: no commit of ours starts meanwhile; `drain` applies ours first."""
        with self.mutex:
            drain()
            if self._flocked:
                self._flocked = False
                fcntl.flock(self._side, fcntl.LOCK_UN)
            fcntl.flock(self._want, fcntl.LOCK_SH)  # returns once it has committed and let go
            fcntl.flock(self._want, fcntl.LOCK_UN)
