"""Session commands: what the chat's commands do inside its session, in order with its messages.

One module per part that owns commands (conversations, heartbeats, schedules, the mode, MCP servers,
pins, the session's directory, model and notes), each contributing `COMMANDS` to the table in
`table.py`. A new session command is a function in the module of its part and one entry in that
part's `COMMANDS`; a command answered at once, beside the mailbox, goes in `vigil/control/` instead.

May import the turns, tools, timing and core of the actors, and everything beneath the actors; never
`vigil.actors.session` (which dispatches to the table) nor the runtime or adapters.
"""
