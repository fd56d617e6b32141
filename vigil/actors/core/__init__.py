"""What a session is, beneath everything a session does: its state, its messages, its registry, its recovery.

- `protocol`: every message the actors exchange, frozen msgspec Structs in one catalogue;
- `state`: `Session` (header, committed and dirty state, pending messages) and `SessionDeps`;
- `registry`: status snapshots and cancel flags of live sessions, read from other threads;
- `recovery`: taking up what a previous run left (an open turn, replies not delivered).

May import the turn engine (`vigil.actors.engine`) and the machinery beneath the actors (store, model,
media, policy, recall, telemetry, tools); the other actor folders import it, never the reverse.
"""
