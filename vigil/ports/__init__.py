"""The contract sessions talk through: the store, the model and the outbox, and the values they trade.

A session needs persistence, a model and a way to reach its chat, but not which ones: each is a
Protocol here, with a real implementation in the package (`vigil.store.store.LmdbStore`,
`vigil.model.anthropic_model.AnthropicModel`, `vigil.adapters.telegram.send.outbox.TelegramOutbox` /
`vigil.adapters.console.ConsoleOutbox`) and test doubles in `tests/`. Values crossing a port are frozen
msgspec Structs or frozen dataclasses; closed sets of values are `Literal` types, so mypy checks
every use and msgspec refuses a stored record holding a value outside its set. The store's Protocol
and its values live in `vigil/ports/store.py` (one screen each) and are re-exported here.

The arrows point here:

    actors, adapters, commands, model, store  ──►  vigil.ports  ──►  vigil.records, vigil.values,
                                                                     vigil.errors, vigil.cancel, msgspec

The contract depends on nothing heavy: importing it loads neither `lmdb` nor the store, the SDK or
Telegram (tests/test_ports.py proves it), so an implementation can be swapped or faked without them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import msgspec

from vigil.cancel import CancelToken

# Named by the contract, defined with the errors and the records; re-exported so a port's user imports one module.
from vigil.errors import ModelError as ModelError
from vigil.errors import ModelErrorKind as ModelErrorKind
from vigil.errors import SessionGone as SessionGone
from vigil.errors import TranscriptionError as TranscriptionError
from vigil.ports.store import Store as Store
from vigil.ports.store import Unreadable as Unreadable
from vigil.ports.store import UpdateMarks as UpdateMarks
from vigil.ports.store import UsageEntry as UsageEntry
from vigil.ports.store import UsageRow as UsageRow
from vigil.ports.store import WriteFuture as WriteFuture
from vigil.records.schema import Target
from vigil.records.schema import TurnKind as TurnKind
from vigil.records.schema import TurnStatus as TurnStatus
from vigil.values import ModelRequest as ModelRequest
from vigil.values import ModelResponse as ModelResponse
from vigil.values import TokenUsage as TokenUsage

# ---------------------------------------------------------------------------- closed sets

SessionState = Literal["idle", "answering", "heartbeat"]
"""What a live session is doing, as its status snapshot shows it."""

CommandScope = Literal["session", "control"]
"""Where a chat command runs: in the session's mailbox, in order, or answered at once beside it."""

UsageKind = Literal["chat", "heartbeat", "compact"]
"""What a session's model calls were for, as it charges them (the store keeps any kind it is given)."""

# ---------------------------------------------------------------------------- model


UsageSink = Callable[[TokenUsage], None]
"""Told the usage of a call while it streams (the input as soon as the API reports it): a call cut
short by /stop or a crash is charged for what it consumed, not zero."""

ServerToolSink = Callable[[str, dict[str, Any]], None]
"""Told (name, input) when the model starts a server tool (web search, fetch): it runs at the service meanwhile."""

ThinkingPhase = Literal["start", "text", "end"]
ThinkingSink = Callable[[ThinkingPhase, str], None]
"""Told while the model thinks: ("start", "") when a thinking block opens (a redacted one too), ("text",
piece) for each piece of its summarized thinking as it streams, ("end", "") when the block closed."""


class ModelPort(Protocol):
    def stream(self, request: ModelRequest, on_text: Callable[[str], None],
               cancel: CancelToken, on_usage: UsageSink | None = None,
               on_server_tool: ServerToolSink | None = None,
               on_thinking: ThinkingSink | None = None) -> ModelResponse:
        """Stream one reply, calling `on_text` with each text delta; raise ModelError on failure.

        A response cut short (cancelled, or an error's `partial`) carries the input usage the API
        reported and, for its output, at least an estimate of what was streamed.
        """
        ...


class MediaSource(Protocol):
    """The stored bytes of the files users sent, by digest, for building requests (`vigil.media.files.MediaStore`).

    Requests are built from records that name files by digest (`Attachment`); the code that builds them
    (vigil/model/) touches no disk, so it is handed this. Both methods raise FileNotFoundError for a file
    that is gone (deleted by hand): the request then says so in a line of text instead of failing.
    """

    def read(self, digest: str) -> bytes:
        """The file's bytes."""
        ...

    def base64(self, digest: str) -> str:
        """The file's bytes base64-encoded (cached by the implementation: old images are sent every turn)."""
        ...


# ---------------------------------------------------------------------------- outbox


class Button(msgspec.Struct, frozen=True, gc=False):
    label: str
    data: str


class Document(msgspec.Struct, frozen=True, gc=False):
    filename: str
    content: bytes
    caption: str = ""


class OutgoingFile(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A file from a chat's working directory, read once, for the chat (Claude's `send_file`)."""

    path: str  # as the chat knows it (shown by the console), not opened again
    filename: str
    content: bytes
    caption: str = ""  # Markdown from the model
    as_photo: bool = False  # shown inline as a photo (recompressed by Telegram) rather than as the exact file


class FileDelivery(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """What became of an OutgoingFile: delivered, or one sentence saying why not."""

    delivered: bool
    detail: str = ""


class Reply(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A message for the user: Markdown from the model, or plain text from vigil itself."""

    text: str
    markdown: bool = False
    buttons: tuple[tuple[Button, ...], ...] = ()
    document: Document | None = None


class ReplyStream(Protocol):
    """One reply being streamed: shown as it grows, then finished."""

    def update(self, text: str, durable: bool = True) -> None:
        """Show `text` as the reply so far (the whole of it, not a delta); may be shown later, coalesced.

        `durable` says whether `text` is on disk: text that is not may only be shown as a draft, which
        leaves nothing in the chat (see `needs_checkpoint`).
        """
        ...

    def needs_checkpoint(self, text: str) -> bool:
        """Whether showing `text` now would leave something in the chat that stays (an edited message,
        or the part of a drafted reply cut off at the length limit and sent): then `text` must be
        durable before `update`. A draft of a private chat is a preview that vanishes, and needs none."""
        ...

    def progress(self, line: str) -> None:
        """Show `line` (a tool being run) beside the reply until the text changes again."""
        ...

    def finish(self, text: str, note: str = "", thinking: str = "") -> None:
        """Show the final `text`, with `note` (e.g. "stopped") after it; nothing more is shown after this.

        `thinking`: the summarized thinking to show above the answer (`/think show`), apart from its text."""
        ...


class Outbox(Protocol):
    """Delivery to a channel. Calls return at once; delivery is ordered per target.

    A delivery that fails for good (bot blocked, chat gone) is reported through
    the callback the adapter was built with, naming the session key.
    """

    def update_interval(self, target: Target) -> float:
        """Seconds between visible updates of a streamed reply for this target."""
        ...

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        """Queue `reply` for `target`, after what was queued before; a failure for good is reported with `ref`."""
        ...

    def stream(self, key: str, target: Target, ref: int | None = None) -> ReplyStream:
        """Start a streamed reply; `ref` (the turn's seq) comes back in a failure report if it is not delivered."""
        ...

    def typing(self, target: Target) -> None:
        """Show that a reply is being written (best effort: a failure is not reported)."""
        ...

    def send_file(self, key: str, target: Target, file: OutgoingFile, cancel: CancelToken) -> FileDelivery:
        """Deliver `file` to `target` after what was queued before, and wait for the outcome.

        Unlike the other calls this one blocks the calling (session) thread until the channel took the
        file or refused it, or until `cancel` (then the outcome is unknown: it may still arrive), so the
        model learns in its tool result whether the file arrived. It never raises for a refusal.
        """
        ...


DeliveryFailure = Callable[[str, bool, str, int | None], None]
"""(session key, permanent, reason, ref): how an outbox reports a failed delivery (ref: the turn's seq)."""


# ---------------------------------------------------------------------------- speech


class Transcriber(Protocol):
    """Speech to text on this machine (`vigil.media.transcribe.WhisperTranscriber` with the `voice` extra).

    Slow (seconds of CPU per minute of speech) and blocking: callers run it in a worker thread of
    its own, never on an actor thread or the Telegram adapter's event loop, so other chats go on.
    """

    def transcribe(self, audio: bytes) -> str:
        """The words spoken in `audio` (what Telegram sends: OGG/Opus voice, MP3/M4A audio, MP4 video
        notes); "" if nothing is said. Raises TranscriptionError, whose `sentence` is for the user."""
        ...
