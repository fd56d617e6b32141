"""A chat's conversations: which one is current, the others kept to resume, and their titles.

A session key has one *current* conversation (a generation: its turns are stored under
(key, generation, seq)) and any number of earlier ones, left by `/new` or `/resume`. Seqs, the
history window and the title belong to a conversation, so they live in the header while it is
current (`generation`, `generation_started_at`, `next_seq`, `window_start`, `conversation_title`)
and in a `GenerationInfo` of `past_generations` while it is not. The counters of the session as
a whole (`turns_total`, `usage`, `last_turn_at`) are not per conversation.

Every function here is pure: a header in, a header out. Switching is therefore one header write
by the caller; a crash before it leaves the old conversation current, after it the new one, and
the turns of both are in the store either way (they are never moved). Parts that add per-conversation
data (summaries, retention) extend `leave` and `enter` and nothing else.
"""

from __future__ import annotations

import msgspec

from vigil.ports import Store
from vigil.store.schema import GenerationInfo, Input, SessionHeader

TITLE_CHARS = 40
MAX_TITLE_CHARS = 100  # what /title keeps of a name


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


def last_activity(info: GenerationInfo) -> float:
    return info.last_at or info.ended_at


def earlier(header: SessionHeader) -> list[GenerationInfo]:
    """The conversations one may resume, the most recently active first."""
    return sorted(header.past_generations, key=lambda g: (last_activity(g), g.generation), reverse=True)


def find(header: SessionHeader, generation: int) -> GenerationInfo | None:
    return next((g for g in header.past_generations if g.generation == generation), None)


def next_generation(header: SessionHeader) -> int:
    """A number no conversation of this session has (after a /resume the current one need not be the newest)."""
    return max((header.generation, *(g.generation for g in header.past_generations))) + 1


def last_turn_at(store: Store, key: str, generation: int) -> float:
    """When the conversation's last turn ended (or began), read from the store: 0 if it has none."""
    turns = store.last_turns(key, generation, 1)
    return max((t.ended_at or t.started_at for t in turns), default=0.0)


def leave(header: SessionHeader, now: float, last_at: float) -> GenerationInfo:
    """The current conversation as an earlier one."""
    return GenerationInfo(generation=header.generation, turns=header.next_seq,
                          started_at=header.generation_started_at, ended_at=now, title=header.conversation_title,
                          window_start=header.window_start, last_at=last_at)


def enter(header: SessionHeader, info: GenerationInfo) -> SessionHeader:
    """The header with `info` as its current conversation (the caller has put the current one away)."""
    return msgspec.structs.replace(header, generation=info.generation, generation_started_at=info.started_at,
                                   next_seq=info.turns, window_start=info.window_start,
                                   conversation_title=info.title)


def _kept(header: SessionHeader, now: float, last_at: float, without: int | None = None) -> tuple[GenerationInfo, ...]:
    """The earlier conversations after leaving the current one: an empty one is not kept (nothing to resume)."""
    past = tuple(g for g in header.past_generations if g.generation != without)
    return (*past, leave(header, now, last_at)) if header.next_seq else past


def start_new(header: SessionHeader, now: float, last_at: float, title: str = "") -> SessionHeader:
    """`/new [TITLE]`: a fresh current conversation; the one left stays resumable."""
    fresh = GenerationInfo(generation=next_generation(header), turns=0, started_at=now, ended_at=now,
                           title=title_from(title, MAX_TITLE_CHARS) if title.strip() else "")
    return enter(msgspec.structs.replace(header, past_generations=_kept(header, now, last_at)), fresh)


def switch_to(header: SessionHeader, generation: int, now: float, last_at: float) -> SessionHeader:
    """`/resume`: the earlier conversation `generation` becomes current, the current one earlier.

    Raises KeyError if there is no such earlier conversation.
    """
    info = find(header, generation)
    if info is None:
        raise KeyError(generation)
    return enter(msgspec.structs.replace(header, past_generations=_kept(header, now, last_at, without=generation)),
                 info)


def drop(header: SessionHeader, generations: set[int]) -> SessionHeader:
    """The header without these earlier conversations (their turns are the caller's to delete first)."""
    return msgspec.structs.replace(
        header, past_generations=tuple(g for g in header.past_generations if g.generation not in generations))


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
