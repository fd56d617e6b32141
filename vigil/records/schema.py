"""The persisted records: versioned, tagged msgspec Structs encoded as MessagePack.

Rules that keep old data readable for as long as users run vigil:
- every record carries a `type` tag and a `schema` number from the first release;
- fields are only ever added, each with a default, so older records decode;
- `omit_defaults` keeps an encoding stable when a defaulted field is added;
- a record whose `schema` is newer than this code knows is refused with a clear message
  (`NewerSchemaError`) instead of being half-understood; bytes that are no record at all raise
  `DamagedRecord`. Both are `UnreadableRecord`s: the store refuses only the session that owns one,
  and listings name it and go on. Golden-bytes tests pin the v1 encodings.

Records are `gc=False`: they hold only strings, numbers, tuples and plain
dicts, so they can never be part of a reference cycle, and keeping them out of
the cyclic collector's sight keeps its pauses (which stop every session at
once) short; a busy service replaces a header at every turn.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

# The record errors' old home: re-exported.
from vigil.errors import DamagedRecord as DamagedRecord
from vigil.errors import NewerSchemaError as NewerSchemaError
from vigil.errors import UnreadableRecord as UnreadableRecord

TurnKind = Literal["user", "heartbeat", "schedule"]
"""What started a turn: a user's messages, the session's own check-in, or a schedule firing."""

TurnStatus = Literal["open", "done", "stopped", "failed", "interrupted"]
"""Where a turn stands: "open" while it runs (or was cut short by a crash), the rest final.

A stored turn with a status outside this set is refused on decode like any record of unknown shape."""


class Record(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every persisted record. `schema` stays 1 by default forever; newer writers write theirs."""

    schema: int = 1
    CURRENT: ClassVar[int] = 1


class Target(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type", tag="target"):
    """Where a session's replies go; owned by the session, never rewritten by a heartbeat."""

    channel: str
    chat_id: int = 0
    thread_id: int | None = None


AttachmentKind = Literal["image", "pdf", "text", "file"]
EditKind = Literal["", "replaced", "correction"]
"""How an input came from an edit (actors/turns/edits.py): not at all, edited before it was answered (its text
replaced in place), or a correction of a message already answered (a new input, marked for the model)."""
"""How an attachment reaches the model: an image block, a PDF document block, its text, or only its path."""


class Attachment(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type",
                 tag="attachment"):
    """A file a user sent, by reference: the bytes live once in the media store (`vigil/media/files.py`).

    Turns and inbox records hold these, never the bytes, so a header or turn stays small however many
    photos a chat shares, and one photo forwarded to three chats is stored once.
    """

    kind: AttachmentKind
    digest: str  # sha256 hex of the stored bytes: the media store's name for them
    media_type: str  # as sent to the model: image/jpeg, image/png, image/gif, image/webp, application/pdf, text/plain
    size: int = 0  # bytes
    name: str = ""  # the file's name as saved in the workspace ("" for a photo)
    # Where it was saved: an absolute path in the chat's workspace ("/…/users/7/uploads/x.pdf"), or "" if
    # nowhere. Attachments stored by earlier builds hold a path relative to the working directory the chat had
    # when the file arrived ("uploads/x.pdf"): still decoded, and named as such (vigil/model/history.py).
    path: str = ""
    tokens: int = 0  # the model-side cost estimated at arrival, for the history window


class Input(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type", tag="input"):
    """One user message as it arrived."""

    text: str
    at: float
    user_id: int = 0
    user_name: str = ""
    message_id: int = 0
    attachments: tuple[Attachment, ...] = ()
    edited: EditKind = ""


class Usage(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type", tag="usage"):
    """Tokens and money of one or more model calls. Money is integer micro-dollars: sums stay exact."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0
    estimated_calls: int = 0  # calls of a model missing from the price table, charged at its family's top price
    web_searches: int = 0  # Anthropic web searches (billed per search, in cost_micros too)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_micros=self.cost_micros + other.cost_micros,
            estimated_calls=self.estimated_calls + other.estimated_calls,
            web_searches=self.web_searches + other.web_searches,
        )

    @property
    def cost_usd(self) -> float:
        return self.cost_micros / 1_000_000

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class Heartbeat(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type",
                tag="heartbeat"):
    """A session's own check-in schedule; it lives in the header so it outlives the actor."""

    enabled: bool = False
    interval_s: float = 1800.0
    active_from: int | None = None  # hour of day, inclusive, in `tz`
    active_until: int | None = None  # hour of day, exclusive, in `tz`
    tz: str = "UTC"
    next_due: float = 0.0
    last_beat_at: float = 0.0
    last_decision: str = ""
    recent_hashes: tuple[tuple[str, float], ...] = ()  # (sha256 of a sent message, when): no repeats in 24h
    disabled_reason: str = ""
    owner: int = 0  # who turned it on: beats are charged to them
    last_message: str = ""
    # The idle pause (actors/timing/idle_pause.py): when beats stopped because nobody wrote for
    # VIGIL_HEARTBEAT_IDLE_PAUSE (0: not paused), and when they were last turned on, which counts as
    # activity (a chat silent for weeks that turns its heartbeat on is not paused at the first beat).
    paused_at: float = 0.0
    active_since: float = 0.0


class Schedule(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type",
               tag="schedule"):
    """A reminder or recurring task Claude set with the `schedule` tool; it lives in the header.

    `next_at` is when it fires next (epoch seconds); a one-shot has no `rule` and is removed when it
    fired. A recurrence keeps its `rule` (an RFC 5545 RRULE or a cron expression), the time zone it is
    evaluated in and its first time (`start_at`, the rule's DTSTART), so every next time is computed
    from the rule itself, never by adding intervals: it does not drift, and DST is the zone's.
    """

    id: str
    text: str
    next_at: float
    rule: str = ""
    tz: str = "UTC"
    start_at: float = 0.0
    owner: int = 0  # who asked for it (the sender of the turn that created it): firings are charged to them
    owner_name: str = ""
    created_at: float = 0.0
    fired: int = 0
    last_fired_at: float = 0.0


class Message(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type", tag="message"):
    """One Messages API message in request form (role + content blocks)."""

    role: str
    content: tuple[dict[str, Any], ...]


class Turn(Record, frozen=True, gc=False, kw_only=True, tag="turn"):
    """One exchange, appended under (key, generation, seq); never rewritten once final.

    `messages` holds the model exchange of this turn after the user input:
    assistant messages and the user tool_result messages between them.
    """

    CURRENT: ClassVar[int] = 1

    seq: int
    kind: TurnKind = "user"
    status: TurnStatus = "open"
    started_at: float
    ended_at: float = 0.0
    inputs: tuple[Input, ...] = ()
    prompt: str = ""  # the user-role text a heartbeat turn was given
    messages: tuple[Message, ...] = ()
    reply: str = ""  # what the user was shown (heartbeat: the messages sent)
    note: str = ""  # e.g. "stopped", or the plain sentence of a failure
    model: str = ""
    usage: Usage = Usage()
    attempts: int = 1
    superseded_reply: str = ""  # partial text shown before a restart re-ran this turn

    @property
    def final(self) -> bool:
        return self.status != "open"


class Note(Record, frozen=True, gc=False, kw_only=True, tag="note"):
    """One entry of the session's scratchpad, written by the model with save_note."""

    text: str
    at: float


class Conversation(Record, frozen=True, gc=False, kw_only=True, tag="conversation"):
    """A conversation of the session other than the current one (left by /new or /resume), kept until cleanup:
    a record under (key, generation); the header holds only the current one (vigil/records/conversations.py moves the
    per-conversation fields between the two: seqs, `turns` being its next seq, window and title)."""

    generation: int
    turns: int
    started_at: float
    ended_at: float  # when it was last left
    title: str = ""
    window_start: int = 0
    last_at: float = 0.0  # its last turn (0 if it had none then: ended_at stands in)
    deleting: bool = False  # its deletion began (vigil/store/deletes.py): not resumable, old whatever its times


ToolMode = Literal["ask", "auto", "readonly"]
"""A chat's permission mode for Claude's risky tools (vigil/policy/tool_mode.py says what each allows)."""

ApprovalState = Literal["asked", "allowed", "denied"]
"""Where one approval stands: the prompt is open, or it was answered (a timeout or /stop is a denial)."""


class Approval(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True, tag_field="type",
               tag="approval"):
    """A decision on one risky tool call of the open turn (actors/tools/approval_gate.py), written before the tool runs.

    `scope` "turn" (with no `tool_use_id`) is "Allow for this turn": the rest of that turn runs unasked.
    """

    generation: int
    seq: int
    tool_use_id: str = ""
    state: ApprovalState = "asked"
    scope: Literal["call", "turn"] = "call"
    by: int = 0  # who answered (0: nobody: a timeout, /stop, /new)


class SessionHeader(Record, frozen=True, gc=False, kw_only=True, tag="session"):
    """The small per-session record: settings, schedule, counters. Turns live elsewhere."""

    CURRENT: ClassVar[int] = 1

    key: str
    incarnation: int  # a fresh random id per creation: detects a delete by another process
    created_at: float
    target: Target
    cwd: str
    model: str
    # The tree this chat's /cd and tools are confined to (cwd lies inside it); "" in headers written
    # before workspaces existed (see vigil/tools/workspace.py: such a session is confined to its cwd).
    # Added with a default, so no schema bump: an older vigil ignores it and confines to the root.
    workspace: str = ""
    title: str = ""
    chat_type: str = ""
    generation: int = 1
    generation_started_at: float = 0.0
    next_seq: int = 0
    window_start: int = 0  # first seq of the history window sent to the model (moves in steps: cache-friendly)
    last_activity: float = 0.0  # last user message; heartbeats do not count
    last_turn_at: float = 0.0
    participants: tuple[int, ...] = ()
    usage: Usage = Usage()
    heartbeat_usage: Usage = Usage()
    heartbeat: Heartbeat = Heartbeat()
    pending: tuple[Input, ...] = ()  # received, not yet answered: survives a restart
    open_turn: int | None = None  # seq of a turn in progress: recovered after a crash
    undelivered: tuple[int, ...] = ()  # seqs whose final reply may not have reached the chat: sent again
    turns_total: int = 0
    # Files the model service refused to read, by digest (actors/turns/refused_files.py): later requests name them.
    unreadable: tuple[str, ...] = ()
    conversation_title: str = ""  # this conversation's (`title` is the chat's): its first message cut, or /title's
    pinned: bool = False  # kept by retention and cleanups whatever its age (/pin); no schema bump
    # The chat's /mode ("": VIGIL_TOOL_MODE's default), and the approvals of its open turn
    # (actors/tools/approval_gate.py).
    # Added with defaults, so no schema bump.
    tool_mode: Literal["", "ask", "auto", "readonly"] = ""
    approvals: tuple[Approval, ...] = ()
    # Reminders and recurring tasks (actors/timing/schedules.py), few per chat (VIGIL_MAX_SCHEDULES): in the
    # header, they outlive eviction, restarts and /new. Added with a default, so no schema bump.
    schedules: tuple[Schedule, ...] = ()
    # Why the schedules are paused: Telegram refused a reply for good (actors/timing/unreachable.py); "" when they
    # fire. Added with a default, so no schema bump.
    unreachable: str = ""
    # /think ("": VIGIL_THINKING's): actors/turns/think.py
    thinking: Literal["", "off", "auto", "low", "medium", "high"] = ""
    think_show: bool = False  # /think show: the summarized thinking above each answer. No schema bump for either.
    mcp_on: tuple[str, ...] = ()  # MCP servers turned on here (/mcp on: actors/commands/mcp.py); no schema bump
    mcp_off: tuple[str, ...] = ()  # VIGIL_MCP_DEFAULT's turned off here (/mcp off); an older vigil ignores both

    @property
    def needs_recovery(self) -> bool:
        return bool(self.pending) or self.open_turn is not None or bool(self.undelivered)


class UsageDay(Record, frozen=True, gc=False, kw_only=True, tag="usage_day"):
    """Usage of one user in one session on one day (UTC), split by call kind."""

    usage: Usage = Usage()


InboxKind = Literal["text", "command", "edit"]
"""A message, a command, or an edit of the earlier message `message_id` (its new text; actors/turns/edits.py).

An edit is a kind rather than a flag: a 16th field would change the encoding of every entry (msgspec
writes a map16 header from 16 fields on), and the golden bytes pin it."""


class InboxEntry(Record, frozen=True, gc=False, kw_only=True, tag="inbox"):
    """A message vigil received that no session has made part of its own state yet.

    Written before any session sees the message, removed in the transaction that
    puts it in the session's header (`pending`) or turn: at every durable point a
    message is in exactly one of the two places.
    """

    CURRENT: ClassVar[int] = 1

    kind: InboxKind = "text"
    key: str
    target: Target
    at: float = 0.0
    user_id: int = 0
    user_name: str = ""
    username: str = ""
    text: str = ""  # the message; for a command, its arguments
    command: str = ""  # a command's name, without the slash
    message_id: int = 0
    chat_title: str = ""
    chat_type: str = ""
    attachments: tuple[Attachment, ...] = ()


class Summary(Record, frozen=True, gc=False, kw_only=True, tag="summary"):
    """What compaction made of the oldest turns of one conversation (actors/turns/compaction.py).

    Stored under (key, generation, upto) beside the turns, never instead of them: the turns stay for
    /export and /resume. It covers every turn of its generation with seq < `upto`: it read turns
    [`start`, `upto`) itself and folded in the summary ending at `previous` (0: none) for the rest, so
    the newest summary of a generation is all a window needs in place of what it no longer carries.
    """

    CURRENT: ClassVar[int] = 1

    generation: int
    upto: int
    start: int = 0
    previous: int = 0
    folded: int = 0  # turns read for this summary
    text: str
    made_at: float
    model: str = ""
    usage: Usage = Usage()  # what the summary call cost (charged as usage kind "compact")
    user_id: int = 0  # who paid: the user whose turn (or /compact) made it


class StoreMeta(Record, frozen=True, gc=False, kw_only=True, tag="store"):
    """The store's own format marker. Schema 2: `Conversation` records and the media index; a store of
    schema 1 is upgraded when opened (vigil/store/upgrade.py), and an older vigil refuses schema 2."""

    CURRENT: ClassVar[int] = 2

    created_at: float
    created_by: str = ""


_ENCODER = msgspec.msgpack.Encoder()


def encode(record: Record) -> bytes:
    return _ENCODER.encode(record)


T = TypeVar("T", bound=Record)


class _Decoder(Generic[T]):
    def __init__(self, kind: type[T]) -> None:
        self._kind = kind
        self._decoder = msgspec.msgpack.Decoder(kind)

    def __call__(self, data: bytes) -> T:
        try:
            record = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            # Well-formed MessagePack of an unknown shape (a new tag, a changed field): a newer writer.
            raise NewerSchemaError(
                f"a stored {self._kind.__name__} record could not be read ({exc}); "
                "it may have been written by a newer vigil"
            ) from None
        except msgspec.DecodeError as exc:
            raise DamagedRecord(f"a stored {self._kind.__name__} record is damaged ({exc})") from None
        if record.schema > self._kind.CURRENT:
            raise NewerSchemaError(
                f"this store holds {self._kind.__name__} records of schema {record.schema}, written by a "
                f"newer vigil; this vigil reads schema {self._kind.CURRENT} at most. Upgrade vigil."
            )
        return record


decode_header = _Decoder(SessionHeader)
decode_turn = _Decoder(Turn)
decode_note = _Decoder(Note)
decode_usage_day = _Decoder(UsageDay)
decode_meta = _Decoder(StoreMeta)
decode_inbox = _Decoder(InboxEntry)
decode_summary = _Decoder(Summary)
decode_conversation = _Decoder(Conversation)
