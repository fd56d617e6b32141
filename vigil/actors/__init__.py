"""Session actors: the Supervisor, one SessionActor per chat, the heartbeat timer.

A SessionActor (session.py) is only the actor: mailbox, eviction, failure, stop. What a session is
lives in a plain `Session` (core/state.py); what it does is composed from parts it calls, each a
folder: `core` (state, messages, registry, recovery), `engine` (how any turn runs), `timing` (when
beats and schedules fall due), `tools` (what a turn offers Claude, behind the approval gate), `turns`
(the kinds: user, heartbeat, schedule, compaction) and `commands` (the table the parts contribute to).
The modules here are what ties them together: the session actor, the Supervisor, the process-wide
heartbeat timer and the wake-up that routes a due timer to a beat or a schedule.

The folders import each other in that order (core, timing, tools, turns, commands), and only the
modules here import the commands; the runtime, control and adapters import the actors, never the reverse.
"""
