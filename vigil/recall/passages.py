"""What of a turn recall indexes: the passages people and Claude wrote, each with who and when.

A turn becomes one passage per user message that has words (`Input.text`) and one for Claude's reply as
the user saw it (`Turn.reply`; a heartbeat's or a schedule's: the messages it sent). Tool inputs and
results, prompts vigil wrote itself (a heartbeat's), and attachments' bytes are not indexed: they are
not what anyone said, and they would swamp the words that were.

The index holds no text (see vigil/recall/__init__.py): a hit names (generation, seq, part) and the
passage is made again from the stored turn, by this same function, so it must be a pure function of
the turn. `PASSAGES_VERSION` changes whenever its output would: an index built by another version
is rebuilt. A checksum of each indexed passage is kept beside it, so a turn that changed under the
index (a store restored, a session recreated elsewhere) is noticed instead of trusted.
"""

from __future__ import annotations

import zlib
from typing import Literal

import msgspec

from vigil.records.schema import Turn

Speaker = Literal["user", "claude"]

PASSAGES_VERSION = 1
# A pasted log of megabytes would cost the index more than months of conversation: past this many
# characters a passage's words are not indexed (they stay in the store and in /export).
MAX_PASSAGE_CHARS = 20_000
CLAUDE = "Claude"


class Passage(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One stretch of a turn's words, as indexed: `part` is its place in `passages(turn)`."""

    part: int
    speaker: Speaker
    name: str  # the user's name as Telegram gave it ("" if none), or "Claude"
    user_id: int = 0
    at: float
    text: str


def passages(turn: Turn) -> list[Passage]:
    """The passages of a final turn, in order: each user message with words, then Claude's reply."""
    found: list[Passage] = []
    for given in turn.inputs:
        text = given.text.strip()
        if text:
            found.append(Passage(part=len(found), speaker="user", name=given.user_name, user_id=given.user_id,
                                 at=given.at or turn.started_at, text=text[:MAX_PASSAGE_CHARS]))
    reply = turn.reply.strip()
    if reply:
        found.append(Passage(part=len(found), speaker="claude", name=CLAUDE,
                             at=turn.ended_at or turn.started_at, text=reply[:MAX_PASSAGE_CHARS]))
    return found


def texts(turn: Turn) -> list[str]:
    """The texts of `passages(turn)`, in order, without building them: what indexing needs, cheaply."""
    found = [text[:MAX_PASSAGE_CHARS] for given in turn.inputs if (text := given.text.strip())]
    reply = turn.reply.strip()
    if reply:
        found.append(reply[:MAX_PASSAGE_CHARS])
    return found


def checksum(text: str) -> int:
    """The passage's fingerprint kept in the index (CRC-32: four bytes, enough to tell a changed turn)."""
    return zlib.crc32(text.encode())
