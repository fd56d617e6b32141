"""schedule: Claude sets reminders and recurring tasks in the chat it talks in, lists and cancels them.

The input is one object with an `action`: `create` (with `at`, an ISO 8601 time, and/or `every`, an
RFC 5545 RRULE or a cron expression, and `text`), `list`, or `cancel` (with `id`). Everything that is
wrong (a time in the past, a rule that does not parse or fires too often, a chat at its cap) comes
back as an error result saying what and why, so the model can fix its call or tell the user. The
rules and the store are in actors/timing/schedules.py; the firing in actors/turns/schedule.py.

The person who asked for the turn (vigil/policy/roles.py `asker_of`: in a turn answering several collected
messages, its first sender subject to budgets) owns what it creates and pays for its firings, as it
pays for the turn. Cancelling acts with the rights of everyone the turn answers: a schedule of someone
else is cancelled only if each of them may cancel it (its owner, or an admin), else the tool_result
says who may. The turn is on disk (written open) before any tool runs, so its inputs are read back
from the store here.
"""

from __future__ import annotations

from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.actors.timing import schedules
from vigil.actors.timing.beats import zone_of
from vigil.actors.timing.rules import describe_rule, local_time
from vigil.cancel import CancelToken
from vigil.policy.roles import asker_of, cancel_verdict, senders_of
from vigil.records.schema import Input
from vigil.tools.outcome import ToolOutcome

TOOL_NAME = "schedule"
SPEC: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": (
        "Set, list or cancel reminders and recurring tasks in this chat. When one falls due you get a turn "
        "with its text and your reply is sent to the chat (a reminder arrives even if vigil restarted "
        "meanwhile). action=create with 'text' and 'at' (ISO 8601 with a UTC offset, e.g. "
        "2025-06-01T09:30:00+02:00; without an offset it is read in this chat's time zone) for a one-time "
        "reminder; or with 'every' for a recurring one: an RFC 5545 RRULE (FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;"
        "BYMINUTE=0) or a cron expression (0 9 * * 1), in this chat's time zone, optionally starting at "
        "'at'. action=list shows this chat's schedules and the current time; action=cancel removes the one "
        "with 'id'."),
    "input_schema": {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["create", "list", "cancel"]},
            "at": {"type": "string", "description": "When (create): an ISO 8601 time; the first time of a recurrence."},
            "every": {"type": "string", "description": "A recurrence (create): an RRULE or a cron expression."},
            "text": {"type": "string", "description": "What to remind of, or the task to do (create)."},
            "id": {"type": "string", "description": "The schedule to cancel (cancel)."},
        },
        "required": ["action"],
    },
}


def _inputs(session: Session) -> tuple[Input, ...]:
    """The messages the running turn answers (none if it can't be known)."""
    header = session.header
    if header is None or header.open_turn is None:
        return ()
    try:
        turn = session.deps.store.turn(session.key, header.generation, header.open_turn)
    except Exception:
        turn = None
    return turn.inputs if turn is not None else ()


def _cancel(session: Session, schedule_id: str) -> ToolOutcome:
    assert session.header is not None
    found = schedules.find(session, schedule_id)
    if found is not None:
        people = senders_of(_inputs(session))
        verdict = cancel_verdict(session.deps.roles, session.header, found, *people)
        if not people or not verdict.allowed:
            why = verdict.reason.removeprefix("⛔ ") if people else "nobody's message asked for this turn"
            return ToolOutcome(content=f"cancel refused: {why} It was not cancelled; tell the user who may cancel "
                                       "it (with /schedules cancel, or by asking you themselves).", is_error=True)
    gone = schedules.cancel(session, schedule_id)
    return ToolOutcome(content=f"cancelled {gone.id} ({describe_rule(gone.rule)}: {gone.text})")


def run_schedule(session: Session, tool_input: dict[str, Any]) -> ToolOutcome:
    if session.header is None:
        return ToolOutcome(content="not available: this chat has no session yet", is_error=True)
    action = str(tool_input.get("action", "")).strip().lower()
    try:
        if action == "list":
            return ToolOutcome(content=schedules.listing(session))
        if action == "cancel":
            return _cancel(session, str(tool_input.get("id", "")))
        if action == "create":
            asker = asker_of(_inputs(session), session.deps.allowance.limited)
            owner, name = (asker.user_id, asker.user_name) if asker is not None else (0, "")
            made = schedules.create(session, str(tool_input.get("text", "")), str(tool_input.get("at", "") or ""),
                                    str(tool_input.get("every", "") or ""), owner, name)
            when = local_time(made.next_at, zone_of(made.tz))
            return ToolOutcome(content=f"created {made.id}: {describe_rule(made.rule)}, next at {when} ({made.tz}): "
                                       f"{made.text}")
    except schedules.ScheduleError as exc:
        return ToolOutcome(content=f"{action or 'schedule'} refused: {exc}", is_error=True)
    return ToolOutcome(content=f"unknown action {action[:20]!r}: use create, list or cancel", is_error=True)


def schedule_tools(session: Session) -> ToolSet:
    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return run_schedule(session, tool_input)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        action = str(tool_input.get("action", ""))
        return f"⏰ schedule {action}" if action else "⏰ schedule"

    return ToolSet(specs=(SPEC,), run=run, describe=describe)
