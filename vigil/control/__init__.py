"""Commands answered at once, beside the session mailboxes: they read or signal, never wait for a turn.

`dispatch` routes them (/status, /sessions, /usage, /export, /stop...); `caller` says who asks from where;
`views` renders sessions and usage for chats and `vigil sessions`; `cleanup` and `offers` are
`/sessions cleanup` and what its button deletes; `search` is `/search`; `reach` is `/mcp` and `/skills`.
A new command that must answer while a turn runs goes here; one that changes a session, in order with
its messages, goes in `vigil/actors/commands/`.

May import the runtime and everything beneath it; the adapters and `vigil.ops` import this, not the reverse.
"""
