"""What counts as old: the one rule that retention, `/sessions cleanup` and `vigil sessions cleanup` share.

A session is old when its last activity (a user message, a turn, its creation) is before the cutoff
and it is not pinned (`/pin`). A past conversation (a generation other than the session's current
one) is old when its last activity is before the cutoff; pinned sessions keep every conversation.

A past conversation's activity is in its record (`Conversation`, one range read per session): the
later of `ended_at` (when it was left) and `last_at` (its last turn), so no turn is read to judge it.
Every stored turn of a past conversation has its record (written when it was left; the upgrade made one
for each generation an earlier build stopped listing; a deletion removes the record with the last
turns), so the records are all there is to judge. One whose deletion a crash interrupted (`deleting`)
is old whatever its times. A record this vigil can't read (a newer one's) is never judged old.

This module reads through the `Store` port only and imports no actors, so that the session itself
(actors/core/state.py, for a live session), the service's cleanup flow (vigil/control/cleanup.py) and the
command line (vigil/ops/admin.py) all use it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from vigil.ports import Store
from vigil.records.schema import Conversation, SessionHeader

YIELD_EVERY = 20  # sessions judged between two chances for other threads to take the GIL


def activity(header: SessionHeader) -> float:
    """When anything last happened in the session (heartbeats alone do not count)."""
    return max(header.last_activity, header.last_turn_at, header.created_at)


def conversation_activity(record: Conversation) -> float:
    """When a past conversation was last active: left, or its last turn (whichever is later)."""
    return max(record.ended_at, record.last_at)


def past_activity(store: Store, header: SessionHeader) -> dict[int, float]:
    """Each past conversation (not the current one) and its last activity (-inf: its deletion was begun)."""
    records, _ = store.scan_conversations(header.key)
    return {r.generation: -math.inf if r.deleting else conversation_activity(r) for r in records
            if r.generation != header.generation}


def old_generations(store: Store, header: SessionHeader, before: float) -> list[int]:
    """The past conversations of an unpinned session whose last activity is before `before`."""
    if header.pinned:
        return []
    return sorted(g for g, at in past_activity(store, header).items() if at < before)


def expired(store: Store, headers: Iterable[SessionHeader], before: float
            ) -> tuple[list[SessionHeader], list[str]]:
    """(whole sessions idle since before `before`, keys of other sessions holding old conversations).

    Pinned sessions are in neither.
    """
    doomed: list[SessionHeader] = []
    prune: list[str] = []
    for n, header in enumerate(headers):
        if n % YIELD_EVERY == 0:
            time.sleep(0)  # a pass over thousands of sessions runs beside live chats: it gives way to them often
        if header.pinned:
            continue
        if activity(header) < before:
            doomed.append(header)
        elif old_generations(store, header, before):
            prune.append(header.key)
    return doomed, prune
