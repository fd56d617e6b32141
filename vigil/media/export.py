"""The media of a session as `/export` and `vigil sessions export` list them.

The export already holds every turn with its inputs; this adds one flat list of the files the
session was sent, so a reader (or a script) finds them without walking the turns: where each was
saved in the workspace, and the digest under which the media store keeps what the model got
(`<data dir>/media/<first two hex digits>/<digest>`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vigil.records.schema import Input, SessionHeader, Turn


def media_rows(header: SessionHeader, generations: Iterable[tuple[int, Iterable[Turn]]]) -> list[dict[str, Any]]:
    """One row per file, in the order the session received them; files still waiting to be answered last."""
    rows: list[dict[str, Any]] = []
    for generation, turns in generations:
        for turn in turns:
            rows.extend(_rows(turn.inputs, generation=generation, seq=turn.seq))
    rows.extend(_rows(header.pending, generation=header.generation, seq=None))
    return rows


def _rows(inputs: Iterable[Input], generation: int, seq: int | None) -> list[dict[str, Any]]:
    return [{"generation": generation, "turn": seq, "message_id": item.message_id, "at": item.at,
             "kind": a.kind, "name": a.name, "path": a.path, "size": a.size, "media_type": a.media_type,
             "digest": a.digest}
            for item in inputs for a in item.attachments]
