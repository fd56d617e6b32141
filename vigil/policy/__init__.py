"""Policy: the rules every command, button and tool consults, each decided in one place.

`roles` (who may do what in a private chat and in a group), `budget` (how fast and for how much a user
may make the model work), `tool_mode` (what Claude's tools may do without a person saying yes), `expiry`
(what counts as old, for retention and cleanups). A new rule that more than one command must agree on
goes here, as pure functions over records and settings.

May import the settings, the store (for what was spent), MCP names and the tools' notion of skills.
"""
