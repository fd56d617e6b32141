"""Session actors: the Supervisor, one SessionActor per chat, the heartbeat timer.

A SessionActor (session.py) is only the actor: mailbox, eviction, failure, stop. What a session is
lives in a plain `Session` (state.py); what it does is composed from parts it calls, each a module:
the user turn (user_turn.py), recovery (recovery.py), commands (commands.py: a table the parts
contribute to, e.g. session_commands.py), heartbeats (heartbeat.py, its turn heartbeat_turn.py, its
schedule beat_schedule.py), and the tools a turn offers (tools/, assembled in tools/__init__.py).
"""
