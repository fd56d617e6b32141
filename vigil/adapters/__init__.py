"""Channel adapters: they turn channel messages into actor messages and deliver replies.

`telegram/` is the service's channel; `console` is `vigil chat`, the same actors and store on a
terminal. A new channel is a folder (or module) here that submits `vigil.actors.core.protocol`
messages to the runtime and implements the `Outbox` port of `vigil.ports`.

The top of the house with the CLI: may import anything beneath; nothing but `vigil.cli` imports it.
"""
