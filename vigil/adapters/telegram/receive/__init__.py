"""Telegram in: updates taken in, made durable, then handed on, in order within a chat.

`polling` (vigil's own getUpdates loop) and `webhook` both feed `receiver`, which confirms an update to
Telegram only once its effect is durable; `order` keeps a chat's updates in order while chats run side
by side; `albums` gathers a media group; `intake` readies photos, documents and voice; `keys` says
which session and reply target a message belongs to; `pointers` what it replies to or forwards.

May import the runtime, the intake and everything beneath them; nothing of the handlers above it.
"""
