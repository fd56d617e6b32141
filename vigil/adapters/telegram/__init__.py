"""The Telegram channel, on python-telegram-bot.

`service` is `vigil run` from start-up to a clean SIGTERM; `handlers` turn updates into session
messages (edits included) and `buttons` answer inline button presses, once each; `access` is the gate
in front of the sessions (allowlist, rate, budget, a group's admins). Updates come in through
`receive/`, replies go out through `send/`, Markdown becomes Telegram HTML in `render/`.

May import the runtime, the control commands, the actors' message catalogue and everything beneath;
nothing imports this but the CLI.
"""
