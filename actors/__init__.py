"""Session actors: the Supervisor, one SessionActor per chat, the heartbeat timer."""
