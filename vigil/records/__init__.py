"""Records: what vigil stores, as versioned msgspec Structs, and the pure logic of their shapes.

`schema` is every persisted record (headers, turns, notes, usage, conversations, inbox entries) and how
an old or newer one is read; `held` is a Telegram update held as it came; `conversations` switches a
chat's current conversation (pure: a header in, a header and a move out); `wake` says when a session
next needs waking. A new stored field goes in `schema`, with a default.

May import only `vigil.errors`: everything else, the ports included, builds on these.
"""
