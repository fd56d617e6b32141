"""Showing a reply while it streams: throttled to the channel, and never ahead of the disk.

Before each update that leaves something in the chat (an edited message, the beginning of a
drafted reply sent for good) the partial turn is committed durably (the checkpoint), so whatever
stays in the chat survives `kill -9`. A draft (a private chat's preview, which vanishes) needs no
checkpoint: the first one goes out with the first words, the rest no faster than the channel's
interval (the open turn is still written about once a second meanwhile, so a crash is charged for
what streamed). Edits come no faster than it either, and the first waits one interval, so a reply done
sooner is shown once, final, and costs no checkpoint. A slow channel (a group, edited every 3 s to stay
within Telegram's ~20 messages a minute there) would then show nothing for 3 s: there the first words
are made durable at once, and again a little before FIRST_WORDS_S, and the channel shows them after FIRST_WORDS_S
(adapters/telegram/send/stream.py), so a reply done sooner is still shown once, final; the interval holds
from then on. The final text is shown by the session after its final commit, not here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vigil.logs import get_logger
from vigil.ports import Outbox, ReplyStream
from vigil.records.schema import Target

# Drafts need no checkpoint, but the open turn is still written this often while a reply streams: a
# crash is then charged for what streamed, and the restart knows what was said (as with edits).
CHECKPOINT_S = 1.0
SLOW_CHANNEL_S = 1.0  # a channel updated less often than this shows its first words sooner (see above)
FIRST_WORDS_S = 0.8  # how long a slow channel's first words wait to be shown (the channel waits, not this)
RESAVE_S = 0.6  # when they are made durable again, before that: the channel then shows all written by then


class CheckpointedDisplay:
    """The TurnDisplay of a session turn."""

    def __init__(self, stream: ReplyStream, outbox: Outbox, target: Target, interval: float,
                 checkpoint: Callable[[str], bool], key: str, slow: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._outbox = outbox
        self._target = target
        self._interval = interval
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._latest = ""
        self._shown = ""
        # The first preview waits one interval too: a reply done sooner is shown once, final, and
        # costs no checkpoint.
        self._last = time.monotonic()
        self._saved_at = self._last
        self._closed = False
        self._key = key
        self._slow = slow
        self._first_words = 0.0  # monotonic time of the first words
        self._early = 0  # flushes a slow channel made for its first words (at most two)
        self.first_shown: float | None = None  # monotonic time the first text was shown (the metrics ask)

    def text(self, full: str) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            if not self._latest:
                # The first words: a preview's interval counts from here. Time spent waiting for a model
                # slot or the first token is not streaming, and a reply that then comes at once needs
                # no preview (and no checkpoint) before its final message.
                self._last = self._first_words = now
            self._latest = full
            if self._early_words(now):
                self._early += 1
                self._flush()
            elif now - self._last >= self._interval or self._first_draft():
                self._flush()

    def progress(self, line: str) -> None:
        with self._lock:
            if not self._closed:
                self._stream.progress(line)

    def keepalive(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._slow is not None:
                slow, self._slow = self._slow, None
                slow()  # the first keepalive: this turn is taking a while, so it is written down as open
                if not self._latest.strip() and not self._stream.needs_checkpoint(""):
                    self._stream.update("", durable=False)  # an empty draft: "Thinking…"
            self._outbox.typing(self._target)
            if self._latest != self._shown and time.monotonic() - self._last >= self._interval:
                self._flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _early_words(self, now: float) -> bool:
        """A slow channel's first words: durable at once (the channel shows them FIRST_WORDS_S later) and once
        more just before that (RESAVE_S), so what it then shows is all that was written by then."""
        if self._interval <= SLOW_CHANNEL_S or self._early >= 2 or not self._latest.strip():
            return False
        if not self._stream.needs_checkpoint(self._latest):
            return False  # a draft: shown at once without a checkpoint (`_first_draft`)
        return self._early == 0 or now - self._first_words >= RESAVE_S

    def _first_draft(self) -> bool:
        """Whether the first words can go out now, as a draft: no checkpoint, so no reason to wait."""
        return not self._shown and bool(self._latest.strip()) and not self._stream.needs_checkpoint(self._latest)

    def _flush(self) -> None:
        self._last = time.monotonic()
        if not self._latest.strip() or self._latest == self._shown:
            return
        durable = False
        needed = self._stream.needs_checkpoint(self._latest)
        if needed or self._last - self._saved_at >= CHECKPOINT_S:
            try:
                durable = self._checkpoint(self._latest)
            except Exception as exc:  # an unsaved preview is simply not shown; the final commit decides
                get_logger(__name__, session=self._key).warning("display.checkpoint_failed", error=repr(exc))
            if durable:
                self._saved_at = self._last
            elif needed:
                return
        self._stream.update(self._latest, durable=durable)
        self._shown = self._latest
        # A slow channel shows its first words FIRST_WORDS_S after they were made durable (the final, if sooner).
        self.first_shown = self.first_shown or self._last + (FIRST_WORDS_S if self._early == 1 else 0.0)
