"""The history window of a live session: the turns sent to the model, normalized once and cached.

Rebuilding the request from the store every turn costs time proportional to
the history; the window keeps each turn's normalized messages and token
estimate, so the cost of a turn does not depend on how long the session is. It
is bounded by the token budget, and it moves in steps (down to ~60% of the
budget when it overflows) so that the request prefix, and with it the prompt
cache, stays stable for many turns.

When turns leave the window they may be carried on as a summary (actors/turns/compaction.py): the
newest summary of the generation stands at the window's start as one user-role text block, and
its tokens count against the budget like a turn's. It changes only when turns leave, so the prefix
stays as stable as before.

Messages are kept as encoded JSON, one bytes object each: compact, and
invisible to Python's cyclic garbage collector. While the window is small (the
common case) a decoded copy is kept too and extended turn by turn, so a turn
costs the same however long the session has run; a large window is decoded
per request instead (one bytes join and one decode, both in C), which keeps
the memory of a thousand live sessions bounded.
"""

from __future__ import annotations

from collections import deque

import msgspec

from vigil.model.attached import ref_spots
from vigil.model.history import ApiMessage, estimate_tokens, normalized_turn
from vigil.ports import Store
from vigil.records.schema import Summary, Turn

SLIDE_TO = 0.6
DECODED_UP_TO_TOKENS = 16_000  # windows up to this size also keep their messages decoded
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(list[dict[str, object]]).decode


class HistoryWindow:
    """Turns [start, upto) of one generation."""

    def __init__(self, generation: int, start: int, group: bool) -> None:
        self.generation = generation
        self.start = start
        self.upto = start
        self.group = group
        self._parts: list[bytes] = []  # one encoded message each, oldest first
        # (seq, tokens, parts, role it ends with, whether it holds files)
        self._turns: deque[tuple[int, int, int, str, bool]] = deque()
        self._tokens = 0
        self._joints = 0  # turns that begin in the role the previous one ended in: merged when read
        self._with_files = 0  # turns holding file placeholders: only then must a request read files in
        self._decoded: list[ApiMessage] | None = None  # the merged messages, while the window is small
        self.summary: Summary | None = None  # what stands for the turns before `start`, if they were summarised
        self._summary_message: ApiMessage | None = None
        self._summary_tokens = 0

    @classmethod
    def load(cls, store: Store, key: str, generation: int, start: int, upto: int, group: bool) -> HistoryWindow:
        """Turns [start, upto) with the generation's newest summary before them.

        A summary reaching past `start` moves the start to its end: what it covers is never carried
        twice, and never summarised again (the header's start may lag behind a summary it was not
        written with, e.g. one made before a restart)."""
        newest = store.summaries(key, generation, newest=1)
        summary = newest[-1] if newest and newest[-1].upto <= upto else None
        if summary is not None:
            start = max(start, summary.upto)
        window = cls(generation, start, group)
        window.carry(summary)
        for turn in store.turns(key, generation, start, upto):
            window.add(turn)
        window.upto = max(window.upto, upto)
        return window

    def carry(self, summary: Summary | None) -> None:
        """Stand `summary` at the window's start, in place of the turns before it (None: nothing)."""
        self.summary = summary
        self._summary_message = summary_message(summary) if summary is not None else None
        self._summary_tokens = estimate_tokens([self._summary_message]) if self._summary_message else 0

    def matches(self, generation: int, start: int, upto: int, group: bool) -> bool:
        return (self.generation, self.start, self.upto, self.group) == (generation, start, upto, group)

    def add(self, turn: Turn) -> None:
        messages = normalized_turn(turn, self.group)
        tokens = estimate_tokens(messages)
        self._parts.extend(_ENCODE(message) for message in messages)
        if self._decoded is not None:
            if self._tokens + tokens > DECODED_UP_TO_TOKENS:
                self._decoded = None
            else:
                _append_merged(self._decoded, messages)
        if messages and self._turns and self._turns[-1][3] == messages[0]["role"]:
            self._joints += 1
        ends = messages[-1]["role"] if messages else (self._turns[-1][3] if self._turns else "")
        # A user's files, or the images a tool returned (an MCP tool's): placeholders to read in.
        files = (turn.kind == "user" and any(item.attachments for item in turn.inputs)) or bool(ref_spots(messages))
        self._turns.append((turn.seq, tokens, len(messages), ends, files))
        self._with_files += files
        self._tokens += tokens
        self.upto = turn.seq + 1

    @property
    def tokens(self) -> int:
        return self._tokens + self._summary_tokens

    @property
    def turn_count(self) -> int:
        return len(self._turns)

    def seq_after(self, count: int) -> int:
        """Where the window would start with its `count` oldest turns gone."""
        return self._turns[count][0] if count < len(self._turns) else self.upto

    @property
    def has_files(self) -> bool:
        """Whether a turn in the window holds files (placeholders `materialize` must read in)."""
        return self._with_files > 0

    def leaving(self, budget: int) -> int:
        """How many of the oldest turns a slide would drop now (0: the window fits `budget`)."""
        total = self.tokens
        if total <= budget:
            return 0
        target = int(budget * SLIDE_TO)
        count = 0
        # Never drop the newest turn while it fits the budget on its own: the model should see it.
        for _, tokens, _, _, _ in self._turns:
            if total <= target or (count == len(self._turns) - 1 and total <= budget):
                break
            total -= tokens
            count += 1
        return count

    def slide(self, budget: int) -> bool:
        """Drop the oldest turns if over budget (down to ~60% of it); True if the start moved."""
        if self.tokens <= budget:
            return False
        self.drop(self.leaving(budget))
        return True

    def drop(self, count: int) -> None:
        """Let the `count` oldest turns leave the window."""
        dropped = 0
        for _ in range(min(count, len(self._turns))):
            _, tokens, parts, _, files = self._turns.popleft()
            self._tokens -= tokens
            self._with_files -= files
            dropped += parts
        del self._parts[:dropped]
        self._joints = self._count_joints()
        self._decoded = None
        self.start = self._turns[0][0] if self._turns else self.upto

    def messages(self) -> list[ApiMessage]:
        """The window as one valid message list (a new list; callers replace items, never change them)."""
        turns = self._turn_messages()
        if self._summary_message is None:
            return turns
        out = [self._summary_message]
        _append_merged(out, turns)  # the first turn begins in the user's role: one message, two blocks
        return out

    def _turn_messages(self) -> list[ApiMessage]:
        if self._decoded is not None:
            return list(self._decoded)
        if not self._parts:
            self._decoded = []
            return []
        decoded: list[ApiMessage] = _DECODE(b"[" + b",".join(self._parts) + b"]")
        if self._joints:
            merged: list[ApiMessage] = []
            _append_merged(merged, decoded)
            decoded = merged
        if self._tokens <= DECODED_UP_TO_TOKENS:
            self._decoded = decoded
            return list(decoded)
        return decoded

    def _count_joints(self) -> int:
        joints = 0
        previous = ""
        first = 0
        for _, _, count, ends, _ in self._turns:
            if count and previous and _role(self._parts[first]) == previous:
                joints += 1
            first += count
            previous = ends
        return joints


def summary_message(summary: Summary) -> ApiMessage:
    """How a summary stands in the history: a user-role text block (the API needs a user message first)."""
    return {"role": "user", "content": [{"type": "text", "text": f"[Summary of the conversation so far:\n"
                                                                 f"{summary.text.strip()}]"}]}


def _role(part: bytes) -> str:
    """The role of one encoded message (only on a slide, which is rare)."""
    role = _DECODE(b"[" + part + b"]")[0]["role"]
    return str(role)


def _append_merged(out: list[ApiMessage], messages: list[ApiMessage]) -> None:
    """Append turns' messages, merging where one ends and the next begins in the same role (new dicts)."""
    for message in messages:
        if out and out[-1]["role"] == message["role"]:
            out[-1] = {"role": message["role"], "content": [*out[-1]["content"], *message["content"]]}
        else:
            out.append(message)
