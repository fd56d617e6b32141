"""What counts as old: the one rule that retention, `/sessions cleanup` and `vigil sessions cleanup` share.

A session is old when its last activity (a user message, a turn, its creation) is before the cutoff
and it is not pinned (`/pin`). A past conversation (a generation other than the session's current
one) is old when its last activity is before the cutoff; pinned sessions keep every conversation.

Past conversations are judged from the turns actually stored, not only from the header's list of
them (`past_generations`): that list is capped, and other parts may move the current generation
(resuming an earlier conversation), so a generation's turns can outlive its entry. A generation's
activity is the later of its entry's `ended_at` (when it was left) and its last turn's time.

This module reads through the `Store` port only and imports no actors, so that the session itself
(actors/state.py, for a live session), the service's cleanup flow (vigil/cleanup.py) and the
command line (vigil/admin.py) all use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from vigil.ports import Store
from vigil.store.schema import SessionHeader


def activity(header: SessionHeader) -> float:
    """When anything last happened in the session (heartbeats alone do not count)."""
    return max(header.last_activity, header.last_turn_at, header.created_at)


def past_activity(store: Store, header: SessionHeader) -> dict[int, float]:
    """Each past conversation (stored or listed, not the current one) and its last activity."""
    listed = {info.generation: info.ended_at for info in header.past_generations}
    found: dict[int, float] = {}
    for generation in store.generations(header.key):
        if generation == header.generation:
            continue
        last = store.last_turns(header.key, generation, 1)
        at = max((max(t.started_at, t.ended_at) for t in last), default=0.0)
        found[generation] = max(at, listed.get(generation, 0.0))
    for generation, ended_at in listed.items():
        if generation != header.generation:
            found.setdefault(generation, ended_at)
    return found


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
    for header in headers:
        if header.pinned:
            continue
        if activity(header) < before:
            doomed.append(header)
        elif old_generations(store, header, before):
            prune.append(header.key)
    return doomed, prune
