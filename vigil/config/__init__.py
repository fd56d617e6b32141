"""Settings: the environment contract, read once into one frozen Struct.

`settings` reads the variables (and an optional TOML file) and refuses a bad value in one sentence;
`parsing` holds one parser per kind of value; `webhook` is webhook mode's URL, listen address and
secret token. A new setting is a field in `settings.Settings`, a line in its table of variables and,
if it is a new kind of value, a parser in `parsing`.

May import the values at the bottom (errors, durations, durable writes) and `vigil.mcp.names` (server
names are parsed as the MCP client names them); nothing that needs the settings to run.
"""
