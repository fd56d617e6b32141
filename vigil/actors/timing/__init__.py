"""Timing: when a session's heartbeats and schedules fall due, and when they pause.

The arithmetic of beats (`beats`: active hours, zones, next times), schedule rules (`rules`: RRULEs and
cron, one answer on the nights clocks change), a session's schedules (`schedules`), the pause of a
silent chat (`idle_pause`) and of a chat that cannot be reached (`unreachable`). The turns that run when
they fall due are in `vigil.actors.turns`; the process-wide timer is `vigil.actors.timer`.

May import `vigil.actors.core`, the records and durations; nothing that runs a turn.
"""
