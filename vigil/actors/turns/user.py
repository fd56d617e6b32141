"""The user turn: messages become pending, then one turn answers everything that waits.

Each user message is appended to the header's `pending` list (not committed: it is safe in the
durable inbox until the turn that answers it is written). A turn is written (final) before its
reply is shown, and before that (open) only if it shows anything, runs a tool, or has taken a
quarter of a second: a fast turn is one durable commit, not two.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from vigil.actors.core.protocol import UserText
from vigil.actors.core.recovery import resend_undelivered
from vigil.actors.core.state import Session, is_group, usage_of
from vigil.actors.engine.display import CheckpointedDisplay
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import TurnOutcome, resume_exchange
from vigil.actors.tools import user_turn_tools
from vigil.actors.tools.approval_gate import TurnGate, not_begun, offered
from vigil.actors.turns import compaction
from vigil.actors.turns.refused_files import RefusedFiles, remember, tell
from vigil.actors.turns.think import asked
from vigil.cancel import CancelToken
from vigil.model.history import input_blocks, join, with_cache_point
from vigil.model.prompt import system_blocks
from vigil.policy.budget import call_guard
from vigil.policy.roles import asker_of
from vigil.policy.tool_mode import effective_mode
from vigil.ports import ModelRequest
from vigil.records import conversations
from vigil.records.schema import Input, Turn

MAX_PARTICIPANTS = 200


def accept(session: Session, message: UserText) -> None:
    """Add a user message to what waits to be answered."""
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    item = Input(text=message.text, at=message.at, user_id=message.sender.user_id,
                 user_name=message.sender.name or message.sender.username, message_id=message.message_id,
                 attachments=message.attachments)
    if message.inbox_id:
        session.unconsumed.append(message.inbox_id)
    participants = header.participants
    if message.sender.user_id not in participants:
        session.new_members.add(message.sender.user_id)
        participants = (*participants, message.sender.user_id)[-MAX_PARTICIPANTS:]
    # Not committed here: it is safe in the inbox until the open turn that answers it (or the final
    # turn, or the header at shutdown) is written and takes it out in the same transaction.
    session.header = msgspec.structs.replace(header, pending=(*header.pending, item), participants=participants,
                                             last_activity=message.at)
    session.dirty = True
    session.publish()


def answer_pending(session: Session) -> None:
    """Run one turn: a turn resumed after a restart, else one answering every pending message."""
    if session.header is None:
        return
    now = session.deps.clock()
    if session.resume_turn is not None:
        old, session.resume_turn = session.resume_turn, None
        # The tool rounds stored are kept: the model continues from them, and no tool runs twice.
        turn = msgspec.structs.replace(
            old, status="open", messages=resume_exchange(old.messages, not_begun(session.header, old)), reply="",
            note="", attempts=old.attempts + 1,
            superseded_reply=old.reply or old.superseded_reply, started_at=now)
        session.header = msgspec.structs.replace(session.header, open_turn=turn.seq)
    elif session.header.pending:
        if session.header.undelivered:
            resend_undelivered(session)
        deleted = session.deleted_elsewhere()
        if session.broken:
            return
        if deleted:
            # Start afresh with the messages that are waiting; nothing deleted may reach the model.
            session.log.info("session.deleted_elsewhere")
            waiting, target = session.header.pending, session.header.target
            title, kind, members = session.header.title, session.header.chat_type, session.header.participants
            session.header = session.committed = None
            session.forget_cached()
            session.ensure_header(target, title, kind)
            assert session.header is not None
            session.header = msgspec.structs.replace(session.header, pending=waiting, participants=members)
            session.new_members.update(members)
        header = session.header = conversations.titled(session.header, session.header.pending)
        turn = Turn(seq=header.next_seq, kind="user", started_at=now, inputs=header.pending, model=header.model)
        session.header = msgspec.structs.replace(
            header, pending=(), open_turn=turn.seq, next_seq=header.next_seq + 1,
            turns_total=header.turns_total + 1, last_turn_at=now)
    else:
        return
    session.current = turn  # written as open only if it shows anything or takes a while (see the docstring)
    run_user_turn(session, turn)


def run_user_turn(session: Session, turn: Turn) -> None:
    assert session.header is not None
    target = session.header.target
    outbox = session.deps.outbox(target)
    if outbox is None:
        session.log.error("session.no_outbox", channel=target.channel)
        return
    cancel = CancelToken()
    session.control.begin("answering", cancel)
    started = time.monotonic()
    stream = outbox.stream(session.key, target, ref=turn.seq)
    outbox.typing(target)
    live = {"turn": turn}
    # Each write of the open turn carries what its calls used so far: a crash is charged on recovery.
    meter = Meter()

    def checkpoint(text: str) -> bool:
        live["turn"] = msgspec.structs.replace(live["turn"], reply=text, usage=meter.usage())
        session.current = None
        return session.commit(live["turn"], wait=True)

    def on_round(messages: tuple[Any, ...], text: str) -> None:
        live["turn"] = msgspec.structs.replace(live["turn"], messages=messages, reply=text, usage=meter.usage())
        session.current = None
        if not session.commit(live["turn"], wait=True) and session.broken:
            cancel.cancel("stopped")  # nothing of this turn can be kept: run no further tools

    def slow() -> None:
        if session.current is not None:
            session.current = None
            # Not waited for: only the final commit must be on disk before the reply.
            session.commit(msgspec.structs.replace(turn, usage=meter.usage()))

    display = CheckpointedDisplay(stream, outbox, target, outbox.update_interval(target), checkpoint, session.key,
                                  slow=slow)
    payer = payer_of(session, turn)
    may_call = call_guard(session.deps.allowance, payer, cancel, first_counted=True, on_wait=display.progress)
    gate = TurnGate(session, user_turn_tools(session), turn)  # the chat's /mode: actors/tools/approval_gate.py
    try:
        compaction.before_turn(session, turn, cancel, display, payer)  # the window fits, what left it summarised
        request, refusals = _request(session, turn)
        resume = gate.finish_round(cancel, display, on_round)
        outcome = session.deps.runner.run(request, cancel, display, gate.tools, on_round,
                                          resume=resume, on_tool=gate.watch(on_round), may_call=may_call, meter=meter,
                                          on_refused=refusals.on_refused if refusals is not None else None)
    finally:
        display.close()
        session.control.end()
        session.turn_ended_at = session.deps.clock()
    if cancel.reason == "shutdown":
        _suspend_for_shutdown(session, live["turn"], outcome, stream)
        return
    session.current = None
    refused = refusals.refused(outcome.status != "failed") if refusals is not None else []
    if refused:
        session.log.warning("turn.files_refused", digests=[a.digest[:12] for a, _ in refused])
        session.header = msgspec.structs.replace(session.header,
                                                 unreadable=remember(session.header.unreadable, refused))
        outcome = msgspec.structs.replace(outcome, note="\n".join(n for n in (tell(refused), outcome.note) if n))
    final = msgspec.structs.replace(
        turn, status=outcome.status, messages=outcome.messages, reply=outcome.reply, note=outcome.note,
        ended_at=session.deps.clock(), model=session.header.model, usage=usage_of(outcome.calls))
    session.header = msgspec.structs.replace(session.header, open_turn=None, usage=session.header.usage + final.usage)
    entries = session.usage_entries(payer, "chat", final.usage)
    saved = session.commit(final, entries, wait=True)
    if session.window is not None and session.window.upto == final.seq:
        session.window.add(final)
    reply, note = _presentable(outcome, saved)
    stream.finish(reply, note, thinking=outcome.thinking if session.header.think_show else "")
    ended = time.monotonic()
    session.deps.metrics.turn(turn.kind, outcome.status, ended - started,
                              min(display.first_shown or ended, ended) - started)
    if session.log_turns:
        session.log.info("turn.done", seq=turn.seq, status=outcome.status,
                         ms=round((time.monotonic() - started) * 1000), input_tokens=final.usage.input_tokens,
                         output_tokens=final.usage.output_tokens, cache_read=final.usage.cache_read_tokens,
                         rounds=len(outcome.calls))


def payer_of(session: Session, turn: Turn) -> int:
    """Who pays for a user turn: the person who asked for it (vigil/policy/roles.py), who also owns what it makes."""
    asker = asker_of(turn.inputs, session.deps.allowance.limited)
    return asker.user_id if asker is not None else 0


def _suspend_for_shutdown(session: Session, turn: Turn, outcome: TurnOutcome, stream: Any) -> None:
    """Shutdown cut the turn: keep it open on disk so the next start answers it again."""
    assert session.header is not None
    kept = msgspec.structs.replace(turn, reply=outcome.reply or turn.reply, usage=usage_of(outcome.calls))
    session.current = None
    session.commit(kept, wait=True)
    stream.finish(outcome.reply, "⏸ vigil is restarting; I'll answer this again as soon as it's back")


def _presentable(outcome: TurnOutcome, saved: bool) -> tuple[str, str]:
    note = outcome.note
    if not saved:
        note = "⚠️ this reply could not be saved (storage error); it may be missing from the history"
    elif outcome.status == "stopped":
        note = "⏹ stopped"
    elif outcome.status == "failed":
        note = f"⚠️ {outcome.note}"
    elif note:
        note = f"⚠️ {note}"
    reply = outcome.reply
    if not reply.strip() and not note:
        note = "(the model sent an empty reply)"
    return reply, note


def build_request(session: Session, turn: Turn) -> ModelRequest:
    """System prompt, the history window (as compaction left it), and this turn's input, its files read in."""
    return _request(session, turn)[0]


def _request(session: Session, turn: Turn) -> tuple[ModelRequest, RefusedFiles | None]:
    """`build_request`, and when it carries files, what mends it if the model service refuses one."""
    assert session.header is not None
    window = compaction.window_for(session, turn.seq)  # moved by compaction.before_turn, not here
    header = session.header
    group = is_group(header)
    history = window.messages()
    if history:
        history[-1] = with_cache_point(history[-1])
    content = [b for b in input_blocks(turn, group) if b["type"] != "text" or b["text"].strip()]
    current = {"role": "user", "content": content or [{"type": "text", "text": "(empty message)"}]}
    tools = offered(session, user_turn_tools(session))
    messages = join([history, [current]])
    refusals = None
    if window.has_files or any(item.attachments for item in turn.inputs):
        refusals = RefusedFiles(messages, session.deps.media, frozenset(header.unreadable))
        messages = refusals.request_messages()
    settings = session.deps.settings
    thinking, max_tokens = asked(header, settings, settings.max_output_tokens, turn.messages)  # actors/turns/think.py
    return ModelRequest(
        model=header.model, max_tokens=max_tokens,
        system=system_blocks(header, session.notes(), [t["name"] for t in tools.specs],
                             mode=effective_mode(header, settings),
                             skills=session.deps.skills.current().prompt() if session.deps.skills else ""),
        messages=tuple(messages), thinking=thinking,
    ), refusals
