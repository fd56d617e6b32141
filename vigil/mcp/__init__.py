"""vigil as an MCP client: the operator's MCP servers (VIGIL_MCP_CONFIG) offered to Claude as tools.

- `config`: the `mcpServers` file, read strictly; credentials never shown;
- `names`: `mcp__<server>__<tool>` made to fit the Messages API's tool names, the same way every time;
- `manager`: `McpManager`, thread-safe, one event loop of its own, one process or session per server
  shared by every chat (`connection` is one server's life on that loop; `stream` notices a lost one);
- `tools`: the snapshots other threads read (`McpTool`, `ServerStatus`);
- `results`: a `CallToolResult` made `tool_result` content (`McpOutcome`);
- `deferral`: which tool definitions go in full and which wait behind the tool search tool;
- `extensions`: the servers' manager and the Agent Skills, made once per process for the runtime.

Nothing is imported here, so that `vigil.config.settings` can use `names` without loading the SDK; and
nothing here imports the settings (`extensions` names what it reads in a Protocol), so the arrow runs
one way. May import the media (results carry files), the tools' skills and the values beneath.
"""
