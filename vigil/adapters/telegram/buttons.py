"""Inline button presses: each answered exactly once, each allowed by the rule of what it stands for.

Telegram wants every `callback_query` answered, once: the client spins until it is, and a second
`answerCallbackQuery` for the same query is refused ("query is too old and response timeout expired
or query ID is invalid"). So each kind of button is a function that decides and returns a `Pressed`
(the answer, and what to do after it), and `Buttons.press` alone answers it, then does the rest.

What a button may do is what its command may (vigil/policy/roles.py): a `/resume` button is anyone's, the
forget prompt's Yes is the asker's (or an admin's) and needs what `/forget` needs, the cleanup
prompt's Delete is its asker's only, a Cancel belongs to the prompt's asker (or an admin), a
schedule's cancel button to the schedule's owner (or an admin), an approval to the person whose
message asked for the turn (or an admin). Checks that may ask Telegram who the group's admins are run
in a worker thread: the loop never waits for the network.

Approval buttons (Allow, Allow for this turn, Deny) are decided at once, in memory (vigil/tools/approvals.py):
the turn waiting for them is blocked on its session's thread and must not queue behind it; the prompt
is then edited to say who decided what, or, pressed too late, that it no longer waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import CallbackQuery, Message
from telegram.error import BadRequest

from vigil.actors.commands.schedules import CANCEL_PREFIX as SCHEDULE_CANCEL
from vigil.actors.core.protocol import SessionCommand
from vigil.adapters.telegram.send.outbox import TelegramOutbox, markup_for
from vigil.commands import cancel_asker
from vigil.control.caller import Caller
from vigil.control.dispatch import Control
from vigil.policy.roles import Need, Verdict, cancel_verdict
from vigil.ports import Reply
from vigil.records.conversations import resume_args
from vigil.runtime import Runtime
from vigil.tools.approvals import GONE, parse_button
from vigil.tools.approvals import PREFIX as APPROVAL_PREFIX

UNKNOWN = "I don't know that button any more."


@dataclass(frozen=True)
class Pressed:
    """How a press is answered (a toast, or an alert), and what happens after the answer."""

    answer: str = ""
    alert: bool = False
    then: Callable[[], Awaitable[None]] | None = None


def refused(verdict: Verdict) -> Pressed:
    return Pressed(verdict.reason.removeprefix("⛔ "), alert=True)


class Buttons:
    """The presses of one adapter's buttons, over its runtime."""

    def __init__(self, runtime: Runtime, control: Control, outbox: TelegramOutbox) -> None:
        self.runtime = runtime
        self.control = control
        self.outbox = outbox
        self.roles = runtime.roles

    async def press(self, query: CallbackQuery, message: Message, caller: Caller) -> None:
        pressed = await self.decide(query.data or "", query, message, caller)
        await query.answer(pressed.answer or None, show_alert=pressed.alert)  # the one answer
        if pressed.then is not None:
            await pressed.then()

    async def decide(self, data: str, query: CallbackQuery, message: Message, caller: Caller) -> Pressed:
        if data.startswith(APPROVAL_PREFIX):
            return await self.approval(data, query, message, caller)
        if data.split(":", 1)[0] == "cancel":
            return await self.cancel(data, query, caller)
        if data.startswith("forget:"):
            return await self.forget(data, query, caller)
        if (resume := resume_args(data)) is not None:  # the session checks the conversation still exists
            return Pressed("Switching conversation…", then=self.submit(caller, "resume", resume))
        if data.startswith(SCHEDULE_CANCEL):
            return await self.cancel_schedule(data.removeprefix(SCHEDULE_CANCEL), caller)
        kind, _, value = data.removeprefix("sessions:").partition(":")
        if not data.startswith("sessions:"):
            return Pressed(UNKNOWN)
        if kind == "cleanup-yes":
            return await self.cleanup_yes(value, query, caller)
        if not value.isdigit():
            return Pressed(UNKNOWN)
        if kind == "page":
            reply = await asyncio.to_thread(self.control.sessions, caller, int(value))
            return Pressed(then=lambda: self.show(query, caller, reply))
        if kind == "cleanup":
            verdict = await self.command(caller, "sessions", "cleanup")
            if not verdict.allowed:
                return refused(verdict)
            reply = await asyncio.to_thread(self.control.cleanups.prompt, caller, f"{int(value)}s")
            return Pressed(then=lambda: self.send(caller, reply))
        return Pressed(UNKNOWN)

    # ------------------------------------------------------------------ kinds

    async def approval(self, data: str, query: CallbackQuery, message: Message, caller: Caller) -> Pressed:
        parsed = parse_button(data)
        if parsed is None:
            return Pressed(UNKNOWN)
        token, choice = parsed
        approvals = self.runtime.deps.approvals
        asker = approvals.asker(token)
        admin = False
        if asker is not None and asker != caller.user_id:  # someone else's prompt: only an admin of either kind
            admin = (await self.may(caller, "admin", "answer this", owner=asker)).allowed
        user = query.from_user
        press = approvals.press(token, choice, user.id, user.full_name, admin, caller.key)
        if not press.decided and press.answer != GONE:
            return Pressed(press.answer, alert=True)  # not theirs to answer: the prompt stays as it is
        verdict = press.verdict or GONE

        async def show() -> None:
            with contextlib.suppress(BadRequest):  # already edited (a double tap), or too old to edit
                await query.edit_message_text(f"{message.text or ''}\n\n{verdict}".strip(), reply_markup=None)

        return Pressed(press.answer, then=show)

    async def cancel(self, data: str, query: CallbackQuery, caller: Caller) -> Pressed:
        try:
            asker = cancel_asker(data)
        except ValueError:
            return Pressed(UNKNOWN)
        verdict = await self.may(caller, "admin", "cancel this prompt", owner=asker if asker is not None else 0,
                                 owner_name="the person who asked for it")
        if not verdict.allowed:
            return refused(verdict)
        return Pressed("Cancelled.", then=lambda: self.unbutton(query))

    async def forget(self, data: str, query: CallbackQuery, caller: Caller) -> Pressed:
        asker, _, key = data.removeprefix("forget:").partition(":")
        if not asker.isdigit():  # a button from before it named its asker: the prompt is asked again
            return Pressed("That button is out of date: type /forget again.", alert=True)
        if key != caller.key:
            return Pressed("That button belongs to another chat.", alert=True)
        verdict = await self.may(caller, "admin", "confirm this", owner=int(asker),
                                 owner_name="the person who asked to forget this chat")
        if verdict.allowed:
            verdict = await self.command(caller, "forget", "confirm")
        if not verdict.allowed:
            return refused(verdict)

        async def forget() -> None:
            await self.unbutton(query)
            await self.submit(caller, "forget", "confirm")()

        return Pressed("Forgetting this chat's session…", then=forget)

    async def cancel_schedule(self, schedule_id: str, caller: Caller) -> Pressed:
        header = await asyncio.to_thread(self.control.header, caller.key)
        schedule = next((s for s in header.schedules if s.id == schedule_id), None) if header is not None else None
        if header is not None and schedule is not None:
            verdict = await asyncio.to_thread(cancel_verdict, self.roles, header, schedule, caller.user_id)
            if not verdict.allowed:
                return refused(verdict)
        # The session decides for good (the list may have changed since), and says what became of it.
        return Pressed("Cancelling…", then=self.submit(caller, "schedules", f"cancel {schedule_id}"))

    async def cleanup_yes(self, token: str, query: CallbackQuery, caller: Caller) -> Pressed:
        if mine := self.control.cleanups.offers.refusal(token, caller.user_id, caller.key):
            return Pressed(mine, alert=True)  # another's prompt, or an expired one: nothing is deleted
        verdict = await self.command(caller, "sessions", "cleanup")  # the asker may have lost the right since
        if not verdict.allowed:
            return refused(verdict)
        # The prompt's own list, for its asker only (an old age-only button finds no offer: expired).
        reply, refusal = await asyncio.to_thread(self.control.cleanups.confirm, caller, token)
        if reply is None:
            return Pressed(refusal, alert=True)
        return Pressed(then=lambda: self.show(query, caller, reply))

    # ------------------------------------------------------------------ helpers

    async def may(self, caller: Caller, need: Need, what: str, owner: int | None = None,
                  owner_name: str = "") -> Verdict:
        return await asyncio.to_thread(self.roles.check, caller.place, caller.user_id, need, what, owner=owner,
                                       owner_name=owner_name)

    async def command(self, caller: Caller, name: str, args: str) -> Verdict:
        return await asyncio.to_thread(self.roles.command, caller.place, caller.user_id, name, args)

    def submit(self, caller: Caller, name: str, args: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.runtime.submit(SessionCommand(key=caller.key, target=caller.target, sender=caller.sender, name=name,
                                               args=args, chat_title=caller.chat_title, chat_type=caller.chat_type))

        return run

    async def send(self, caller: Caller, reply: Reply) -> None:
        self.outbox.send(caller.key, caller.target, reply)

    async def show(self, query: CallbackQuery, caller: Caller, reply: Reply) -> None:
        """The pressed message becomes `reply` (a new message if it can't be edited)."""
        try:
            await query.edit_message_text(reply.text, reply_markup=markup_for(reply))
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                self.outbox.send(caller.key, caller.target, reply)

    @staticmethod
    async def unbutton(query: CallbackQuery) -> None:
        with contextlib.suppress(BadRequest):
            await query.edit_message_reply_markup(None)
