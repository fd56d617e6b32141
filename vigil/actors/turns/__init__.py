"""Turn kinds: what a session does when someone writes, a beat falls due or a schedule fires.

One module per kind: `user` (messages answered together), `heartbeat` (a check-in, silent unless
worth it), `schedule` (a reminder or task firing), `compaction` and its `summary` call; and what shapes
a user turn: `edits` (an edited message), `refused_files`, `think` (the thinking level). A new turn kind
is a module here that builds a request and runs it on `vigil.actors.engine.runner.TurnRunner` with the
tools `vigil.actors.tools` assembles for it.

May import the engine, core, timing and tools of the actors and everything beneath the actors; never
the commands or the session actor.
"""
