"""The turn engine: how one turn runs, whatever kind it is.

The loop of model calls and tool calls (`runner.TurnRunner`), one call on a worker thread
(`model_call`), the meter of what it used, the process-wide cap on calls in flight (`slots`), the
history window sent to the model (`window`), the throttled display of a streaming reply (`display`)
and the `ToolSet` shape tools are offered in (`toolset`). It knows nothing of sessions or turn kinds.

May import the model, the ports and records, the tools and telemetry, and the values beneath them;
nothing else of the actors.
"""
