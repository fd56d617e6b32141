"""PTB handlers: turn Telegram updates into session messages, and never block the loop.

In a private chat every message is for the bot; in a group only commands,
mentions of the bot and replies to its messages are. The access gate runs
before anything else, so an outsider's words reach neither the store nor the
model. Messages are `tell`s to the Supervisor; commands answered out of band
(/status, /sessions, /usage, ...) run in a worker thread, since they read (and
/sessions cleanup writes) the store.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from telegram import Chat, Message, MessageEntity, Update, User
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from vigil.actors.core.protocol import Sender, TargetMoved, UserText
from vigil.adapters.telegram.access import Gate
from vigil.adapters.telegram.buttons import Buttons
from vigil.adapters.telegram.receive.albums import Albums, lane_of
from vigil.adapters.telegram.receive.intake import Intake, default_intake, fetches
from vigil.adapters.telegram.receive.keys import chat_key, chat_title, chat_type, session_key, target_for, topic_of
from vigil.adapters.telegram.receive.order import OUT_OF_BAND, command_of
from vigil.adapters.telegram.receive.pointers import context_lines
from vigil.adapters.telegram.send.outbox import TelegramOutbox
from vigil.commands import parse_command
from vigil.control.dispatch import Caller, Control
from vigil.errors import StoreError
from vigil.intake.receipt import CURRENT
from vigil.logs import get_logger
from vigil.media.uploads import Workplace
from vigil.policy.roles import ANONYMOUS_ADMIN
from vigil.ports import Reply
from vigil.records.schema import Attachment, Target
from vigil.runtime import Runtime
from vigil.text import clean
from vigil.tools.jail import JailError
from vigil.tools.workspace import WorkspaceError, ensure_directory, own_directory, placed, workspace_of

# What the sender of a message hears while the store cannot save (its disk full): nothing is lost, so no resend.
STORE_DOWN_FILE = ("I couldn't save your file on my side just now (my disk is full, or my store failed); it isn't "
                   "lost: I'll take it in as soon as I can save again, no need to send it again.")
STORE_DOWN = ("I couldn't save your message on my side just now (my disk is full, or my store failed); it isn't "
              "lost: I'll answer it as soon as I can save again, no need to send it again.")


class TelegramHandlers:
    """The bot's update handlers, bound to one Runtime."""

    def __init__(self, runtime: Runtime, control: Control, outbox: TelegramOutbox, gate: Gate,
                 intake: Intake | None = None) -> None:
        self.runtime = runtime
        self.control = control
        self.outbox = outbox
        self.gate = gate
        self.intake = intake or default_intake(runtime)
        self.albums = Albums(self.take, mark=runtime.store.mark_updates)
        self.buttons = Buttons(runtime, control, outbox)
        self.bot_id = 0
        self.bot_username = ""
        self.log = get_logger(__name__)

    def register(self, app: Application) -> None:  # type: ignore[type-arg]
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        app.add_handler(MessageHandler(
            filters.UpdateType.MESSAGE & ~filters.StatusUpdate.ALL & ~filters.VIA_BOT, self.on_message))
        app.add_handler(MessageHandler(
            filters.UpdateType.EDITED_MESSAGE & ~filters.StatusUpdate.ALL & ~filters.VIA_BOT, self.on_edit))
        app.add_handler(CallbackQueryHandler(self.on_callback))
        app.add_error_handler(self.on_error)

    # ------------------------------------------------------------------ where a message belongs

    def key_and_target(self, message: Message) -> tuple[str, Target]:
        thread = topic_of(message)
        canonical = self.runtime.store.canonical(chat_key(message.chat.id))
        return session_key(canonical, thread), target_for(message.chat.id, thread)

    def caller(self, message: Message, user: User) -> Caller:
        key, target = self.key_and_target(message)
        return Caller(key=key, target=target, sender=_sender(user), admin=self.gate.is_admin(user.id),
                      chat_title=chat_title(message.chat, user.full_name), chat_type=chat_type(message.chat))

    def addressed(self, message: Message, is_command: bool) -> bool:
        if message.chat.type == Chat.PRIVATE or is_command:
            return True
        reply = message.reply_to_message
        if reply is not None and reply.from_user is not None and reply.from_user.id == self.bot_id:
            return True
        return self.mentioned(message)

    def mentioned(self, message: Message) -> bool:
        handle = f"@{self.bot_username}".lower()
        for entity, value in (message.parse_entities() | message.parse_caption_entities()).items():
            if entity.type == MessageEntity.MENTION and value.lower() == handle:
                return True
            if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == self.bot_id:
                return True
        return False

    def without_mention(self, text: str) -> str:
        handle = f"@{self.bot_username}"
        stripped = " ".join(part for part in text.split(" ") if part.lower() != handle.lower()).strip()
        return stripped or text

    # ------------------------------------------------------------------ handlers

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        user = update.effective_user
        if message is None or user is None or (user.is_bot and not _anonymous_admin(message)):
            return
        if message.media_group_id:
            receipt = CURRENT.get()  # the album answers for this part's update from now on (vigil/intake/receipt.py)
            self.albums.add(message, receipt.hand_over() if receipt is not None else ())  # handed on with the rest
            return
        if command_of(update) not in OUT_OF_BAND:  # /stop and /status wait for nothing of their chat
            await self.albums.settle(lane_of(message))  # an album just before this message goes first
        await self.take([message])

    async def take(self, messages: list[Message]) -> None:
        """One message, or the parts of an album: a command, or one turn with all their text and media."""
        message = messages[0]
        user = message.from_user
        if user is None:
            return
        raw = message.text if message.text is not None else _caption(messages)
        text = clean(raw) if raw is not None else None
        command = (parse_command(text) if text is not None and len(messages) == 1 and _starts_with_command(message)
                   else None)
        if command is not None and command.addressed_to and command.addressed_to.lower() != self.bot_username.lower():
            return  # "/cmd@otherbot": for another bot in the group
        if not any(self.addressed(part, command is not None) for part in messages):
            return
        group = message.chat.type != Chat.PRIVATE
        if command is not None and command.spec is None and group and not command.addressed_to:
            return  # "/weather" in a group is for some other bot; answer unknown commands only when named
        verdict = self.gate.admit(user.id)
        key, target = self.key_and_target(message)
        if not verdict.allowed:
            self.log.info("telegram.refused", user_id=user.id, chat_id=message.chat.id)
            if verdict.reply:
                self.outbox.send(key, target, Reply(text=verdict.reply))
            return
        if command is not None:
            caller = self.caller(message, user)
            reply = await asyncio.to_thread(self.control.handle, command, caller)
            if reply is not None:
                self.outbox.send(key, target, reply)
            return
        spend = self.gate.spend(user.id)
        if not spend.allowed:
            if spend.reply:
                self.outbox.send(key, target, Reply(text=spend.reply))
            return
        said = self.without_mention(text) if text else ""
        attachments: list[Attachment] = []
        refusals: list[str] = []
        heard: list[str] = []
        for part in messages:
            if part.text is not None:
                continue
            taken = await self.intake.take(part, lambda: self.upload_directory(key, target, chat_type(message.chat)))
            attachments.extend(taken.attachments)
            if taken.refusal and taken.refusal not in refusals:
                refusals.append(taken.refusal)
            if taken.transcript:
                heard.append(taken.transcript)
                said = f"{said}\n\n{taken.transcript}".strip() if said else taken.transcript
        for refusal in refusals:
            self.outbox.send(key, target, Reply(text=refusal))
        if (refusals and not attachments and not heard) or not (said or attachments):
            return  # a caption without its file is no turn: the user sends again, or writes
        pointers = context_lines(message, self.bot_id)
        self.runtime.submit(UserText(
            key=key, target=target, sender=_sender(user), text=f"{pointers}\n{said}" if pointers else said,
            at=time.time(), message_id=message.message_id, chat_title=chat_title(message.chat, user.full_name),
            chat_type=chat_type(message.chat), attachments=tuple(attachments)))
        # Shown after the submit: the words are then on their way to disk (committed in milliseconds, before
        # Telegram has taken this send), so a transcript on screen is of a message vigil holds.
        for transcript in heard:
            self.outbox.send(key, target, Reply(text=f"🎙 {transcript}"))

    async def on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One `edited_message` update, handed to the session as an edit, or dropped.

        An edit passes the same gates as a message (an outsider's is ignored, silently: they were told once
        already; in a group only an edit addressed to the bot counts; the rate and budget apply), then goes
        to the session like a message (`UserText` with `edited=True`: durable inbox first), which decides
        what it means (actors/turns/edits.py): a replacement of a message not answered yet, or a correction of
        one that was.

        Not taken: edits of commands (a command has acted by the time it is edited; the edit would act
        twice or not at all), edits of voice, audio and video notes (their transcript, not their caption,
        is what the session holds), and edits of a message in an album (the session holds the album as one
        message: its first part).
        """
        message = update.edited_message
        user = update.effective_user
        if message is None or user is None or user.is_bot:
            return
        raw = message.text if message.text is not None else message.caption
        if (raw is None or message.media_group_id or _starts_with_command(message, caption=True)
                or any(getattr(message, kind, None) for kind in _TRANSCRIBED)):
            return
        if not self.addressed(message, False):
            return
        if not self.runtime.settings.is_allowed(user.id):
            self.log.info("telegram.edit_refused", user_id=user.id, chat_id=message.chat.id)
            return
        key, target = self.key_and_target(message)
        spend = self.gate.spend(user.id)
        if not spend.allowed:
            if spend.reply:
                self.outbox.send(key, target, Reply(text=spend.reply))
            return
        said = self.without_mention(clean(raw))
        if not said.strip():
            return
        pointers = context_lines(message, self.bot_id)
        self.runtime.submit(UserText(
            key=key, target=target, sender=Sender(user_id=user.id, name=user.full_name, username=user.username or ""),
            text=f"{pointers}\n{said}" if pointers else said, at=time.time(), message_id=message.message_id,
            chat_title=chat_title(message.chat, user.full_name), chat_type=chat_type(message.chat), edited=True))

    def upload_directory(self, key: str, target: Target, kind: str) -> Workplace:
        """The chat's workspace and working directory, where its documents are saved through the workspace's
        jail (from a worker thread: it reads the store)."""
        root = self.runtime.settings.workdir_root
        header = self.runtime.store.header(key)
        if header is None:
            home = ensure_directory(root, own_directory(key, target, kind))
            return Workplace(home, home)
        header = placed(header, root)
        try:  # the workspace as the editor and send_file see it: resolved through the root's jail
            jail = self.runtime.toolbox.jail_for(workspace_of(header))
        except JailError as exc:
            raise WorkspaceError(f"the chat's directory cannot be used ({exc})") from None
        return Workplace(jail.root, Path(header.cwd))

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.migrate_to_chat_id is None:
            return
        old_key = self.runtime.store.canonical(chat_key(message.chat.id))
        new_id = int(message.migrate_to_chat_id)
        await asyncio.to_thread(lambda: self.runtime.store.set_alias(chat_key(new_id), old_key).result())
        self.runtime.submit(TargetMoved(key=old_key, chat_id=new_id))
        self.log.info("telegram.chat_migrated", session=old_key, new_chat_id=new_id)

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        user = query.from_user
        if not self.gate.admit(user.id).allowed:
            await query.answer(f"This bot is private. Your Telegram user id is {user.id}.", show_alert=True)
            return
        message = query.message
        if not isinstance(message, Message):
            await query.answer("That message is too old to act on.")
            return
        await self.buttons.press(query, message, self.caller(message, user))  # answered there, once

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.log.error("telegram.handler_error", error=repr(context.error))
        message = update.effective_message if isinstance(update, Update) else None
        user = message.from_user if message is not None else None
        if (isinstance(context.error, StoreError) and message is not None and user is not None
                and self.runtime.settings.is_allowed(user.id)):
            # The store stopped (a full disk): the update was not confirmed, or its held copy is in the
            # journal, so it comes again once vigil can save; its sender hears why nothing happens meanwhile.
            # The chat's own key, unread: the store that maps a migrated group to its first id cannot be read.
            thread = topic_of(message)
            self.outbox.send(session_key(chat_key(message.chat.id), thread), target_for(message.chat.id, thread),
                             Reply(text=STORE_DOWN_FILE if fetches(message) else STORE_DOWN))


def _caption(messages: list[Message]) -> str | None:
    """An album's caption: clients put it on one part (the first, mostly); any part may carry one."""
    captions = [m.caption for m in messages if m.caption]
    return "\n".join(captions) if captions else None


def _starts_with_command(message: Message, caption: bool = False) -> bool:
    """Telegram marks commands: "/usr/lib is…" starts with a slash but is not one. A caption's marks count
    only when asked (an edit's): a new photo captioned "/status" is a photo, not the command."""
    entities = message.caption_entities if caption and message.text is None else message.entities
    return any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities or ())


def _anonymous_admin(message: Message) -> bool:
    """An admin of the group writing as the group itself (vigil/policy/roles.py counts them as its admin)."""
    sender_chat = message.sender_chat
    user = message.from_user
    return (user is not None and user.id == ANONYMOUS_ADMIN and sender_chat is not None
            and sender_chat.id == message.chat.id)


def _sender(user: User) -> Sender:
    return Sender(user_id=user.id, name=user.full_name, username=user.username or "")


_TRANSCRIBED = ("voice", "audio", "video_note")  # an edit of these changes a caption, not the transcript held
