"""/schedules: the chat's reminders and recurring tasks, each with a cancel button; /schedules cancel ID.

Who may cancel (by the button, the command or Claude's tool): the person who asked for the schedule,
an admin of either kind (vigil's, or the group's own), or, in a private chat, whoever is in it (there
is nobody else). In a group, a member's reminder is theirs to cancel: a button everyone in the group
sees must not let anyone remove it. The rule is vigil/policy/roles.py's; `cancel_verdict` applies it.

A button's callback data is `sched:cancel:<id>` (19 bytes, within Telegram's 64); the adapter turns
a press into `/schedules cancel <id>` from whoever pressed it, so both go through the same check here.
"""

from __future__ import annotations

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.actors.timing import schedules, unreachable
from vigil.policy.roles import cancel_verdict
from vigil.ports import Button
from vigil.records.schema import Schedule

CANCEL_PREFIX = "sched:cancel:"
USAGE = "Usage: /schedules, or /schedules cancel ID"


def cancel_button(schedule: Schedule) -> Button:
    return Button(f"✖ Cancel {schedule.id}", f"{CANCEL_PREFIX}{schedule.id}")


def cmd_schedules(session: Session, message: SessionCommand) -> None:
    session.ensure_header(message.target, message.chat_title, message.chat_type)
    assert session.header is not None
    words = message.args.split()
    verb = words[0].lower() if words else "list"
    if verb == "list":
        ordered = sorted(session.header.schedules, key=lambda s: s.next_at)
        text = "⏰ " + schedules.listing(session)
        if paused := unreachable.status_line(session):
            text += "\n" + paused
        if ordered:
            text += "\nClaude sets them when you ask (\"remind me at 9 to …\", \"every Monday …\")."
        else:
            text += " Ask Claude to remind you of something, once or on a schedule."
        session.reply(message.target, text, tuple((cancel_button(s),) for s in ordered))
        return
    if verb != "cancel" or len(words) != 2:
        session.reply(message.target, USAGE)
        return
    found = schedules.find(session, words[1])
    if found is None:
        session.reply(message.target, f"⛔ There is no schedule {words[1][:20]!r} here (any more). "
                                      "/schedules lists them.")
        return
    verdict = cancel_verdict(session.deps.roles, session.header, found, message.sender.user_id)
    if not verdict.allowed:
        session.reply(message.target, verdict.reason)
        return
    try:
        gone = schedules.cancel(session, found.id)
    except schedules.ScheduleError as exc:
        session.reply(message.target, f"⚠️ {exc}")
        return
    session.reply(message.target, f"🗑 Cancelled {gone.id}: {gone.text}")


COMMANDS = {"schedules": cmd_schedules}
