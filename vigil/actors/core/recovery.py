"""Taking up what a previous run left: the stored header, an open turn, replies not delivered.

A turn is written open as soon as it shows anything, runs a tool, or has taken a quarter of a
second; a restart (or `kill -9`) answers an open user turn again instead of losing it, going on
from the tool rounds it stored (no tool call runs twice), at most RESTART_ATTEMPTS times. What a
cut turn had used is charged here, once. A final reply the channel could not deliver after its
retries is remembered in the header and sent again before the next turn or after a restart.
"""

from __future__ import annotations

import msgspec

from vigil.actors.core.protocol import DeliveryFailed
from vigil.actors.core.state import Session
from vigil.policy.roles import asker_of
from vigil.ports import Reply, UsageKind
from vigil.records.schema import Turn, UnreadableRecord, Usage
from vigil.store.store import CorruptRecord, UsageEntry
from vigil.tools.workspace import settle

RESTART_ATTEMPTS = 2


def load(session: Session) -> None:
    """Read the stored header and take up what it left open; raises CorruptRecord if it can't be read."""
    try:
        header = session.deps.store.header(session.key)
    except UnreadableRecord as exc:
        raise CorruptRecord(session.key, exc.reason) from None
    if header is None:
        return
    session.committed = header
    # Placed as it is written next (a pre-workspace header gains its workspace): see vigil/tools/workspace.py.
    session.header = header = settle(header, session.deps.settings.workdir_root)
    if header.open_turn is not None:
        recover_open_turn(session, header.open_turn)
    if session.header.undelivered:
        resend_undelivered(session)


def recover_open_turn(session: Session, seq: int) -> None:
    """A turn was in progress when the process died (or shut down mid-turn)."""
    assert session.header is not None
    turn = session.deps.store.turn(session.key, session.header.generation, seq)
    if turn is None or turn.final:
        session.header = msgspec.structs.replace(session.header, open_turn=None)
        session.commit(wait=True)
        return
    if turn.kind == "user" and turn.attempts < RESTART_ATTEMPTS:
        session.log.info("session.resuming_turn", seq=seq, attempts=turn.attempts)
        session.resume_turn = charge_cut_turn(session, turn, keep_open=True)
        return
    note = "interrupted by a restart"
    final = msgspec.structs.replace(turn, status="interrupted", note=note, ended_at=session.deps.clock())
    session.header = msgspec.structs.replace(session.header, open_turn=None)
    charge_cut_turn(session, final, keep_open=False)
    if turn.kind == "user":
        session.send("⚠️ I couldn't finish answering your last message after vigil restarted; please ask again.")


def charge_cut_turn(session: Session, turn: Turn, keep_open: bool) -> Turn:
    """Charge what a turn cut by a crash (or a shutdown) had used when last written down, and write it.

    Usage is charged when a turn ends; a turn that never ended is charged here, once: a turn that
    stays open (to be answered again) is written back with its usage cleared in the same
    transaction, so a second crash cannot charge it twice.
    """
    assert session.header is not None
    used = turn.usage
    if keep_open and not used.calls:
        return turn
    entries: tuple[UsageEntry, ...] = ()
    if used.calls:
        kind: UsageKind
        if turn.kind == "heartbeat":
            payer, kind = session.header.heartbeat.owner, "heartbeat"
            session.header = msgspec.structs.replace(session.header,
                                                     heartbeat_usage=session.header.heartbeat_usage + used)
        else:
            asker = asker_of(turn.inputs, session.deps.allowance.limited)
            payer, kind = (asker.user_id if asker is not None else 0), "chat"
            session.header = msgspec.structs.replace(session.header, usage=session.header.usage + used)
        entries = session.usage_entries(payer, kind, used)
        session.log.info("session.charged_cut_turn", seq=turn.seq, calls=used.calls, input_tokens=used.input_tokens,
                         output_tokens=used.output_tokens, cost_micros=used.cost_micros)
    written = msgspec.structs.replace(turn, usage=Usage()) if keep_open else turn
    session.commit(written, entries, wait=True)
    return written


def resend_undelivered(session: Session) -> None:
    """Send again the final replies that may not have reached the chat."""
    assert session.header is not None
    header = session.header
    outbox = session.deps.outbox(header.target)
    if outbox is None:
        return
    for seq in header.undelivered:
        turn = session.deps.store.turn(session.key, header.generation, seq)
        if turn is not None and (turn.reply.strip() or turn.note):
            text = f"{turn.reply}\n\n_{turn.note}_" if turn.note and turn.reply.strip() else turn.reply or turn.note
            outbox.send(session.key, header.target, Reply(text=text, markdown=True), ref=seq)
    session.log.info("session.resent_undelivered", replies=len(header.undelivered))
    session.header = msgspec.structs.replace(header, undelivered=())
    session.commit(wait=True)


def remember_undelivered(session: Session, message: DeliveryFailed) -> None:
    """Retries ran out (an outage): keep the reply, to send it again before the next turn or after a restart."""
    session.log.warning("session.delivery_failed", permanent=message.permanent, reason=message.reason,
                        seq=message.seq)
    header = session.header
    if message.permanent or message.seq is None or header is None or message.seq in header.undelivered:
        return
    session.header = msgspec.structs.replace(header, undelivered=(*header.undelivered, message.seq)[-50:])
    session.commit(wait=True)
