"""A press on an approval prompt's button (Allow, Allow for this turn, Deny): decided at once, on the loop.

The turn that waits is blocked on its session's thread; the press must not queue behind it, so it
is decided in memory (vigil/approvals.py: a lock and an event, nothing that blocks), the
`callback_query` is answered straight away, and the prompt is edited to say who decided what.
A press by someone else than the person whose message started the turn (or an admin) gets an
alert and changes nothing, the buttons stay; a press on a prompt that no longer waits (answered,
timed out, stopped, or from before a restart) says so, and the prompt loses its buttons.
"""

from __future__ import annotations

import contextlib

from telegram import CallbackQuery, Message
from telegram.error import BadRequest

from vigil.approvals import GONE, PendingApprovals, parse_button
from vigil.caller import Caller


async def on_approval_press(query: CallbackQuery, message: Message, caller: Caller,
                            approvals: PendingApprovals) -> None:
    parsed = parse_button(query.data or "")
    if parsed is None:
        await query.answer("I don't know that button any more.")
        return
    token, choice = parsed
    user = query.from_user
    press = approvals.press(token, choice, user.id, user.full_name, caller.admin, caller.key)
    if not press.decided and press.answer != GONE:
        await query.answer(press.answer, show_alert=True)  # not theirs to answer: the prompt stays as it is
        return
    await query.answer(press.answer)
    verdict = press.verdict or GONE
    with contextlib.suppress(BadRequest):  # already edited (a double tap), or too old to edit
        await query.edit_message_text(f"{message.text or ''}\n\n{verdict}".strip(), reply_markup=None)
