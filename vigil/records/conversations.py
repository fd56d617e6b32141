"""A chat's conversations: which one is current, the others kept to resume, and their titles.

A session key has one *current* conversation (a generation: its turns are stored under
(key, generation, seq)) and any number of earlier ones, left by `/new` or `/resume`. Seqs, the
history window and the title belong to a conversation, so they live in the header while it is
current (`generation`, `generation_started_at`, `next_seq`, `window_start`, `conversation_title`)
and in a `Conversation` record of its own while it is not (stored under (key, generation), read by
range: the header, written at every turn, stays the same size however many conversations were left).
The counters of the session as a whole (`turns_total`, `usage`, `last_turn_at`) are not per conversation.

Every function here is pure: a header in, a header and a `ConversationMove` out (the record of the one
left, and the generation whose record goes because it is current now). Switching is therefore one
commit by the caller, header and records in one transaction; a crash before it leaves the old
conversation current, after it the new one, and the turns of both are in the store either way (they
are never moved). Parts that add per-conversation data (summaries, retention) extend `leave` and
`enter` and nothing else.
"""

from __future__ import annotations

import msgspec

from vigil.records.schema import Conversation, Input, SessionHeader

TITLE_CHARS = 40
MAX_TITLE_CHARS = 100  # what /title keeps of a name


class ConversationMove(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """What a switch of conversations writes beside the header that makes another one current.

    `left`: the conversation put away, as its record (None: it was empty, and is not kept); `resumed`: the
    generation made current, whose record goes (its header fields hold it now). One transaction with the
    header, so a crash leaves one current conversation and every other one in a record, never a mix.
    """

    left: Conversation | None = None
    resumed: int | None = None


def title_from(text: str, limit: int = TITLE_CHARS) -> str:
    """A title from a user's message: its words (not the marked reply/forward lines), cut at a word."""
    lines = [line for line in text.splitlines() if line.strip()]
    while lines and lines[0].lstrip().startswith("[") and lines[0].rstrip().endswith("]") and len(lines) > 1:
        lines.pop(0)  # "[replying to Ann: «…»]": context, not what this conversation is about
    flat = " ".join(" ".join(lines).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    if flat[limit].isalnum():  # mid-word: back to the word's start, if that leaves enough
        space = cut.rfind(" ")
        cut = cut[:space] if space > limit // 2 else cut
    return cut.rstrip(" ,.;:-") + "…"


def titled(header: SessionHeader, inputs: tuple[Input, ...]) -> SessionHeader:
    """The header with a title for its conversation from these inputs, unless it has one."""
    if header.conversation_title:
        return header
    title = next((t for t in (title_from(item.text) for item in inputs) if t), "")
    return msgspec.structs.replace(header, conversation_title=title) if title else header


def named(header: SessionHeader, name: str) -> SessionHeader:
    """`/title NAME`: the current conversation's title, one line, bounded."""
    return msgspec.structs.replace(header, conversation_title=title_from(name, MAX_TITLE_CHARS))


def last_activity(info: Conversation) -> float:
    return info.last_at or info.ended_at


def earlier(past: list[Conversation]) -> list[Conversation]:
    """The conversations one may resume, the most recently active first."""
    return sorted(past, key=lambda g: (last_activity(g), g.generation), reverse=True)


def next_generation(header: SessionHeader, newest: int) -> int:
    """A number no conversation of this session has: `newest` is the highest the store holds anything under
    (after a /resume the current one need not be the newest)."""
    return max(header.generation, newest) + 1


def leave(header: SessionHeader, now: float, last_at: float) -> Conversation:
    """The current conversation as an earlier one."""
    return Conversation(generation=header.generation, turns=header.next_seq,
                        started_at=header.generation_started_at, ended_at=now, title=header.conversation_title,
                        window_start=header.window_start, last_at=last_at)


def enter(header: SessionHeader, info: Conversation) -> SessionHeader:
    """The header with `info` as its current conversation (the caller has put the current one away)."""
    return msgspec.structs.replace(header, generation=info.generation, generation_started_at=info.started_at,
                                   next_seq=info.turns, window_start=info.window_start,
                                   conversation_title=info.title)


def _left(header: SessionHeader, now: float, last_at: float) -> Conversation | None:
    """The record of the conversation being left: an empty one is not kept (nothing to resume)."""
    return leave(header, now, last_at) if header.next_seq else None


def start_new(header: SessionHeader, now: float, last_at: float, newest: int, title: str = ""
              ) -> tuple[SessionHeader, ConversationMove]:
    """`/new [TITLE]`: a fresh current conversation; the one left stays resumable."""
    fresh = Conversation(generation=next_generation(header, newest), turns=0, started_at=now, ended_at=now,
                         title=title_from(title, MAX_TITLE_CHARS) if title.strip() else "")
    return enter(header, fresh), ConversationMove(left=_left(header, now, last_at))


def switch_to(header: SessionHeader, info: Conversation, now: float, last_at: float
              ) -> tuple[SessionHeader, ConversationMove]:
    """`/resume`: the earlier conversation `info` becomes current, the current one earlier."""
    return enter(header, info), ConversationMove(left=_left(header, now, last_at), resumed=info.generation)


RESUME_PREFIX = "resume:"


def resume_button(generation: int, incarnation: int) -> str:
    """A /resume button's callback data (≤ 64 bytes: 7 + 10 + 1 + 19). The incarnation keeps a button from
    before a /forget (which numbers conversations from 1 again) from resuming a different conversation."""
    return f"{RESUME_PREFIX}{generation}:{incarnation}"


def resume_args(data: str) -> str | None:
    """The `/resume` arguments a button's data stands for ("2 81234…"), or None if it is no resume button."""
    generation, _, incarnation = data.removeprefix(RESUME_PREFIX).partition(":")
    if not data.startswith(RESUME_PREFIX) or not generation.isdigit() or not incarnation.isdigit():
        return None
    return f"{generation} {incarnation}"
