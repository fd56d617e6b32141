"""What the timer's wake-up does in a session: due schedules fire, then the heartbeat, if it is due.

The timer holds one due time per session, the earliest of its heartbeat and its schedules
(vigil/records/wake.py), and tells the session `HeartbeatDue` then, waking it from eviction through
the Supervisor like any message. Here the session sorts out what fell due: each due schedule is a
turn of its own (actors/turns/schedule.py); the heartbeat runs only if its own time has come (a
schedule may have woken the session early), and not at all in a chat gone quiet (actors/timing/idle_pause.py).
Then the timer is re-armed for whatever is next.
"""

from __future__ import annotations

from vigil.actors.commands import heartbeat
from vigil.actors.core.protocol import HeartbeatDue
from vigil.actors.core.state import Session
from vigil.actors.timing import idle_pause
from vigil.actors.timing.schedules import rearm
from vigil.actors.turns.schedule import fire_due
from vigil.records.wake import beat_wake

# The timer fires at the due time or later; a little slack absorbs clock reads a hair apart.
SLACK_S = 1.0


def on_due(session: Session, message: HeartbeatDue) -> None:
    if session.deps.registry.shutting_down.is_set():
        return  # what is due is on disk: the next start fires it, nothing is lost by waiting
    if session.header is None:
        session.deps.schedule_heartbeat(session.key, None)
        return
    now = session.deps.clock()
    fired = fire_due(session, now + SLACK_S)
    if session.header is None or session.deps.registry.shutting_down.is_set():
        return
    beat = session.header.heartbeat
    if beat.enabled and not beat.paused_at:
        # A wake-up for a schedule is not a beat unless the beat's own time has come too; any other wake-up
        # is the beat's (the timer's word, as before schedules: the beat's checks decide if it runs).
        due = beat_wake(session.header)
        if (not fired or (due is not None and due <= session.deps.clock() + SLACK_S)) \
                and not idle_pause.pause_if_idle(session, session.deps.clock()):
            heartbeat.on_due(session, message)
    rearm(session)
