"""vigil: Claude in Telegram, one actor per conversation.

The folders name the parts, bottom to top (tests/test_layout.py holds the map and keeps the arrows
pointing down): the values every layer speaks are the modules here (`errors`, `values`, `text`, `cancel`,
`durations`, `durable`, `lock`, `logs`, and `commands`, the catalogue of chat commands); `records` is what
is stored and `ports` the contract sessions talk through; `store`, `model`, `media`, `tools`, `mcp`,
`recall`, `config`, `policy` and `telemetry` are the machinery a session uses; `actors` are the sessions
themselves; `intake` and `runtime` take messages in and start the actors; `control` answers commands
beside the mailboxes; `ops` is what an operator runs from a shell; `adapters` are the channels (Telegram,
the console); `bench` measures; `cli` is `vigil`. The README's "How it works" follows one message through.
"""

__version__ = "0.1.0"
