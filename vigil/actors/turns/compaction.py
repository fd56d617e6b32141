"""Compaction: turns leaving the history window are summarised, not silently lost; and `/compact`.

The window (actors/engine/window.py) holds the history sent to the model within `VIGIL_HISTORY_TOKENS`,
and moves in steps. Each time it would move, before the user turn's request is built, the turns
about to leave it (and the summary made last time, so nothing is forgotten across compactions) go
to one summarisation call (actors/turns/summary.py) through the turn runner: the same model port, the
same cap on calls in flight, `/stop` ends it, and the user whose turn needed it pays, under their
budget (usage kind "compact"). The summary is a record of its own (`Summary`, keyed by session,
generation and the seq it covers up to), written in the transaction that moves the window's start
past what it covers, so a restart rebuilds the window with it and never summarises again; the
turns themselves stay in the store for /export and /resume. The chat is told once per compaction.

If the call fails (a model error, the budget) the turns leave the window as they did before
compaction existed, and the chat is told that too. Heartbeats never come here: their own small
window is a tail of the history (actors/turns/heartbeat.py). Only a window that moves makes a
call, and it moves to ~60% of the budget with the summary held to a quarter of it, so a
compaction is followed by many turns without one.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session, is_group, usage_of
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import TurnDisplay
from vigil.actors.engine.window import HistoryWindow
from vigil.actors.turns.summary import summary_chars, summary_request
from vigil.actors.turns.think import not_asked
from vigil.cancel import CancelToken
from vigil.policy.budget import call_guard
from vigil.records.schema import Summary, Turn

KEEP_ON_COMMAND = 2  # /compact folds everything but the newest turns: the model keeps the thread
GAP_TURNS_MAX = 200  # turns dropped unsummarised (a failed call) are read back into the next summary, this many
Compacted = Literal["compacted", "dropped", "stopped", "unsaved"]


def window_for(session: Session, upto: int) -> HistoryWindow:
    """The session's window of turns before `upto`: loaded once (with its summary), then kept."""
    header = session.header
    assert header is not None
    group = is_group(header)
    window = session.window
    if window is None or not window.matches(header.generation, header.window_start, upto, group):
        window = HistoryWindow.load(session.deps.store, session.key, header.generation, header.window_start,
                                    upto, group)
        session.window = window
        if window.start != header.window_start:  # a summary stored past it: the header follows
            session.header = msgspec.structs.replace(header, window_start=window.start)
    return window


def before_turn(session: Session, turn: Turn, cancel: CancelToken, display: TurnDisplay, payer: int) -> None:
    """Make the window fit the budget before `turn`'s request: summarise what leaves it, or drop it and say so."""
    window = window_for(session, turn.seq)
    leaving = window.leaving(session.deps.settings.history_tokens)
    if leaving:
        compact(session, window, leaving, cancel, _Quiet(display), payer, turn)


def compact(session: Session, window: HistoryWindow, count: int, cancel: CancelToken, display: TurnDisplay,
            payer: int, turn: Turn | None = None) -> Compacted:
    """Fold the `count` oldest turns of `window` (and its summary) into a new summary, committed with `turn`."""
    header = session.header
    assert header is not None
    deps = session.deps
    upto = window.seq_after(count)
    previous = window.summary
    # Turns an earlier failure dropped unsummarised come back in (bounded); with no summary yet, what an
    # older vigil dropped stays dropped.
    since = max(previous.upto if previous is not None else window.start, window.start - GAP_TURNS_MAX)
    turns = deps.store.turns(session.key, header.generation, since, upto)
    display.progress("🗜 summarising earlier turns…")
    meter = Meter()
    request = msgspec.structs.replace(summary_request(header.model, previous, turns, deps.settings),
                                      thinking=not_asked(header, deps.settings))  # a summary does not think
    outcome = deps.runner.run(request, cancel, display,
                              max_rounds=0, may_call=call_guard(deps.allowance, payer, cancel,
                                                                on_wait=display.progress), meter=meter)
    usage = usage_of(outcome.calls)
    entries = session.usage_entries(payer, "compact", usage)
    header = session.header
    assert header is not None
    if outcome.status == "stopped" or cancel.cancelled:
        # Nothing moves: the next turn tries again. What the call used is charged all the same.
        if usage.calls:
            session.header = msgspec.structs.replace(header, usage=header.usage + usage)
            session.current = None
            session.commit(turn, entries, wait=True)
        return "stopped"
    text = outcome.reply.strip()
    summary = None
    if outcome.status == "done" and text:
        cut = summary_chars(deps.settings)
        summary = Summary(generation=header.generation, upto=upto, start=since,
                          previous=previous.upto if previous is not None else 0, folded=len(turns),
                          text=text if len(text) <= cut else text[:cut] + " […]", made_at=deps.clock(),
                          model=header.model, usage=usage, user_id=payer)
    start = window.start
    window.drop(count)
    if summary is not None:
        window.carry(summary)
    session.header = msgspec.structs.replace(header, window_start=window.start, usage=header.usage + usage)
    session.current = None  # the turn is written (open) now: the summary took a while
    if not session.commit(turn, entries, wait=True, summary=summary):
        # Not stored: carry on as if nothing was folded, so the next turn tries again.
        session.header = msgspec.structs.replace(session.header, window_start=start)
        session.window = None
        session.log.warning("compaction.unsaved", upto=upto)
        return "unsaved"
    if summary is not None:
        session.log.info("compaction.done", upto=upto, folded=len(turns), chars=len(summary.text),
                         input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
        session.send(f"🗜 Compacted {len(turns)} earlier turn{'s' if len(turns) != 1 else ''} into a summary; "
                     "/export still has them all.")
        return "compacted"
    reason = outcome.note or "the model returned an empty summary"
    session.log.warning("compaction.failed", upto=upto, reason=reason)
    session.send(f"⚠️ I couldn't summarise the earlier conversation ({reason.rstrip('.')}); the oldest {count} "
                 f"turn{'s' if count != 1 else ''} left Claude's view. /export has them.")
    return "dropped"


def cmd_compact(session: Session, message: SessionCommand) -> None:
    """/compact: fold everything but the newest turns into the summary now."""
    header = session.header
    if header is None:  # no conversation: nothing to make a session for
        session.reply(message.target, "🗜 Nothing to compact: this chat has no conversation yet.")
        return
    window = window_for(session, header.next_seq)
    count = window.turn_count - KEEP_ON_COMMAND
    if count <= 0:
        session.reply(message.target, f"🗜 Nothing to compact: Claude sees {window.turn_count} turn"
                      f"{'s' if window.turn_count != 1 else ''} of this conversation"
                      f"{' after its summary' if window.summary is not None else ''}, and the newest "
                      f"{KEEP_ON_COMMAND} always stay as they are.")
        return
    cancel = CancelToken()
    session.control.begin("answering", cancel)
    try:
        done = compact(session, window, count, cancel, _Typing(session, message), message.sender.user_id)
    finally:
        session.control.end()
    if done == "stopped":
        session.reply(message.target, "⏹ Compaction stopped; nothing was folded.")
    elif done == "unsaved":
        session.reply(message.target, "⚠️ The summary could not be saved (storage error); nothing was folded.")


class _Quiet:
    """A turn's display while its history is summarised: typing and progress go on, the summary is not shown."""

    def __init__(self, display: TurnDisplay) -> None:
        self._display = display

    def text(self, full: str) -> None:
        return None

    def progress(self, line: str) -> None:
        self._display.progress(line)

    def keepalive(self) -> None:
        self._display.keepalive()


class _Typing:
    """/compact's display: only the typing indicator while the summary is written."""

    def __init__(self, session: Session, message: SessionCommand) -> None:
        self._outbox = session.deps.outbox(message.target)
        self._message = message

    def text(self, full: str) -> None:
        return None

    def progress(self, line: str) -> None:
        return None

    def keepalive(self) -> None:
        if self._outbox is not None:
            self._outbox.typing(self._message.target)


COMMANDS = {"compact": cmd_compact}
