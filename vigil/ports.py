"""The ports sessions talk through: the store, the model and the outbox.

Each port is a Protocol with a real implementation in the package
(`vigil.store.store.LmdbStore`, `vigil.model.anthropic_model.AnthropicModel`,
`adapters.telegram.outbox.TelegramOutbox` / `adapters.console.ConsoleOutbox`);
test doubles live in `tests/`. Values crossing a port are frozen msgspec Structs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from vigil.cancel import CancelToken
from vigil.store.schema import InboxEntry, Note, SessionHeader, Target, Turn
from vigil.store.store import UsageEntry, UsageRow
from vigil.store.writer import WriteFuture

# ---------------------------------------------------------------------------- model


class TokenUsage(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class ModelRequest(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One Messages API call, already valid: alternating roles, answered tool_use, no empty text."""

    model: str
    max_tokens: int
    system: tuple[dict[str, Any], ...]
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()


class ModelResponse(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The assistant message. `stop_reason` is "cancelled" when /stop cut it short."""

    content: tuple[dict[str, Any], ...]
    stop_reason: str
    usage: TokenUsage
    model: str = ""


class ModelError(Exception):
    """A model call failed after the SDK's own retries; `sentence` is what the user is told."""

    def __init__(self, sentence: str, kind: str, partial: ModelResponse | None = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.kind = kind
        self.partial = partial


class ModelPort(Protocol):
    def stream(self, request: ModelRequest, on_text: Callable[[str], None],
               cancel: CancelToken) -> ModelResponse:
        """Stream one reply, calling `on_text` with each text delta; raise ModelError on failure."""
        ...


# ---------------------------------------------------------------------------- outbox


class Button(msgspec.Struct, frozen=True, gc=False):
    label: str
    data: str


class Document(msgspec.Struct, frozen=True, gc=False):
    filename: str
    content: bytes
    caption: str = ""


class Reply(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A message for the user: Markdown from the model, or plain text from vigil itself."""

    text: str
    markdown: bool = False
    buttons: tuple[tuple[Button, ...], ...] = ()
    document: Document | None = None


class ReplyStream(Protocol):
    """One reply being streamed: shown as it grows, then finished."""

    def update(self, text: str) -> None: ...

    def progress(self, line: str) -> None: ...

    def finish(self, text: str, note: str = "") -> None: ...


class Outbox(Protocol):
    """Delivery to a channel. Calls return at once; delivery is ordered per target.

    A delivery that fails for good (bot blocked, chat gone) is reported through
    the callback the adapter was built with, naming the session key.
    """

    def update_interval(self, target: Target) -> float:
        """Seconds between visible updates of a streamed reply for this target."""
        ...

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None: ...

    def stream(self, key: str, target: Target, ref: int | None = None) -> ReplyStream:
        """`ref` (the turn's seq) comes back in a failure report if the reply could not be delivered."""
        ...

    def typing(self, target: Target) -> None: ...


DeliveryFailure = Callable[[str, bool, str, int | None], None]
"""(session key, permanent, reason, ref): how an outbox reports a failed delivery (ref: the turn's seq)."""


# ---------------------------------------------------------------------------- store


class Store(Protocol):
    """What sessions and commands need from persistence (LmdbStore implements it)."""

    def header(self, key: str) -> SessionHeader | None: ...

    def canonical(self, key: str) -> str: ...

    def turn(self, key: str, generation: int, seq: int) -> Turn | None: ...

    def turns(self, key: str, generation: int, start: int = 0, stop: int | None = None) -> list[Turn]: ...

    def last_turns(self, key: str, generation: int, count: int) -> list[Turn]: ...

    def generations(self, key: str) -> list[int]: ...

    def headers(self, user_id: int | None = None) -> list[SessionHeader]: ...

    def session_count(self) -> int: ...

    def changed_elsewhere(self) -> bool: ...

    def recovery_keys(self) -> list[str]: ...

    def heartbeat_schedule(self) -> list[tuple[str, float]]: ...

    def inbox(self) -> list[tuple[int, InboxEntry]]: ...

    def inbox_count(self, key: str | None = None) -> int: ...

    def notes(self, key: str) -> list[Note]: ...

    def usage_rows(self, user_id: int | None = None, since_day: str = "") -> list[UsageRow]: ...

    def user_cost_micros(self, user_id: int, day: str) -> int: ...

    def commit(self, header: SessionHeader, turn: Turn | None = None, usage: Sequence[UsageEntry] = (),
               new_members: Iterable[int] = (), create: bool = False,
               previous: SessionHeader | None = None, urgent: bool = True,
               consumed: Sequence[int] = ()) -> WriteFuture: ...

    def receive(self, arrival: int, entry: InboxEntry) -> WriteFuture: ...

    def consume(self, key: str, arrivals: Sequence[int]) -> WriteFuture | None: ...

    def delete_session(self, key: str, inbox_upto: int | None = None) -> WriteFuture: ...

    def drop_generation(self, key: str, generation: int) -> WriteFuture: ...

    def mark_undelivered(self, key: str, seq: int) -> WriteFuture: ...

    def add_note(self, key: str, note: Note, keep: int) -> WriteFuture: ...

    def clear_notes(self, key: str) -> WriteFuture: ...

    def set_alias(self, alias: str, canonical: str) -> WriteFuture: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...

    @property
    def writer_alive(self) -> bool: ...
