"""Heartbeats that notice silence: a chat nobody has written in for a while stops beating.

Beats cost a model call each; in a chat its people left, they are money spent on nobody. When a beat
falls due and no user has written for `VIGIL_HEARTBEAT_IDLE_PAUSE` (nor turned the heartbeat on in
that time), the beat is not run: the heartbeat is marked paused (`Heartbeat.paused_at`), which takes
it out of the timer's index (vigil/records/wake.py), and the chat is told once. The next message from a
user resumes it, silently, counting its interval from then. Schedules are not paused: someone asked
for each of them.
"""

from __future__ import annotations

import datetime as dt

from vigil.actors.core.state import Session
from vigil.actors.timing.beats import next_due, zone_of
from vigil.actors.timing.schedules import rearm
from vigil.durations import format_duration


def idle_for(session: Session, now: float) -> float:
    """How long since a user last wrote here (or turned the heartbeat on)."""
    assert session.header is not None
    header = session.header
    return now - max(header.last_activity, header.heartbeat.active_since, header.created_at)


def pause_if_idle(session: Session, now: float) -> bool:
    """At a beat's due time: pause instead of beating if the chat has gone quiet; True if it did."""
    limit = session.deps.settings.heartbeat_idle_pause_s
    if session.header is None or not limit:
        return False
    idle = idle_for(session, now)
    if idle < limit:
        return False
    session.set_beat(paused_at=now, last_decision=f"paused: nobody wrote for {format_duration(idle)}")
    if not session.commit(wait=True):
        return True  # not beating now; the next due time asks again
    rearm(session)
    session.log.info("heartbeat.idle_paused", idle_s=round(idle))
    session.send(f"💤 Nobody has written here for {format_duration(limit)}, so I've paused my check-ins "
                 "(the heartbeat). Write anything to resume them.")
    return True


def resume(session: Session) -> None:
    """A user wrote (the message is accepted, not yet committed): beats go on, from now, without a word."""
    header = session.header
    if header is None or not header.heartbeat.paused_at:
        return
    now = session.deps.clock()
    session.set_beat(paused_at=0.0, last_decision="resumed: someone wrote", next_due=next_due(header.heartbeat, now))
    session.dirty = True  # committed with the message (the header holds it as pending)
    rearm(session)
    session.log.info("heartbeat.idle_resumed")


def status_line(session: Session) -> str:
    """For /heartbeat status: why beats stopped, and how to restart them; "" when not paused."""
    if session.header is None or not session.header.heartbeat.paused_at:
        return ""
    beat = session.header.heartbeat
    since = dt.datetime.fromtimestamp(beat.paused_at, zone_of(beat.tz)).strftime("%Y-%m-%d %H:%M")
    limit = format_duration(session.deps.settings.heartbeat_idle_pause_s)
    return (f"💤 Paused since {since}: nobody had written here for {limit} (VIGIL_HEARTBEAT_IDLE_PAUSE). "
            "The next message resumes it.")
