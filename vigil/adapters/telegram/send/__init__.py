"""Telegram out: replies streamed, files uploaded, each delivered once or reported undeliverable.

`outbox` is the `Outbox` port for Telegram (actor threads hand deliveries to PTB's loop); it hands out
`stream`s (a draft in a private chat, edits in a group) and runs `files` uploads, which reach back to
it only through the `lane` Protocol; `thought` renders summarized thinking; `errors` says how a delivery
ends for good.

May import the Telegram renderer (`vigil.adapters.telegram.render`), the actors' display pacing, the
ports and what is beneath them; nothing of receiving, the runtime or the commands.
"""
