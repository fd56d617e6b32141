"""When a session next needs waking: its heartbeat, or the earliest of its schedules.

The timer (actors/timer.py) holds one due time per session, loaded at start from the store's
heartbeat index; that index therefore holds this time, not only the beat's, so a reminder in a
chat whose heartbeat is off (or paused for idleness) still wakes it after a restart or an eviction.
Read by the store when it writes a header (the index follows the header in the same transaction)
and by the session when it re-arms the timer: one rule in one place.
"""

from __future__ import annotations

from vigil.records.schema import SessionHeader


def beat_wake(header: SessionHeader) -> float | None:
    """The heartbeat's next due time, or None if it is off or paused for idleness."""
    beat = header.heartbeat
    return beat.next_due if beat.enabled and not beat.paused_at else None


def wake_at(header: SessionHeader) -> float | None:
    """The earliest time anything in this session falls due, or None if nothing will."""
    # Schedules of a chat that can't be reached wait for someone to write there (actors/timing/unreachable.py).
    times = [s.next_at for s in header.schedules] if not header.unreachable else []
    beat = beat_wake(header)
    if beat is not None:
        times.append(beat)
    return min(times) if times else None
