"""The permission gate of a turn: its tool set, wrapped so that risky calls run only as the chat's mode allows.

`TurnGate` wraps a turn's `ToolSet` (the runner's loop is untouched): in `auto` everything runs; in
`readonly` bash is not offered and file changes (and MCP tools not marked read-only) are refused; in `ask`
a risky call (vigil/policy/tool_mode.py: a command, a file change, an MCP tool that may change something)
of a user's turn posts a prompt with Allow / Allow for this turn / Deny and waits for a press
(vigil/tools/approvals.py), the timeout (`VIGIL_APPROVAL_TIMEOUT`), `/stop` or `/new`; anything but Allow
returns a `tool_result` saying it was declined, and the turn goes on. A turn nobody is there to
answer (a heartbeat, any turn that is not a user's) never waits: its risky calls are refused.

Waiting blocks only this session's thread, as a model call or a bash command does: `/stop` and
`/status` reach the session out of band (its cancel token, its status snapshot), the press is
decided in memory by the adapter, other chats go on, and no model-call slot is held meanwhile.

Durability, so that a restart neither loses a question nor runs a command twice: each decision is
an `Approval` in the session header, keyed by the call's `tool_use_id` (which the gate learns from
the exchange the runner hands `on_tool` before each call), written durably at each step:
"asked" before the prompt is posted, "allowed" before the tool runs, "denied". After a restart
(actors/core/recovery.py, `resume_exchange`) a call "asked" or "denied" certainly did not begin: its
round is left open and `finish_round` runs it again through the gate: a fresh prompt (or the stored
denial). A call "allowed" without a stored result may have run: it is answered as interrupted and
never run again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import (
    CANCELLED,
    RESTARTED_WHILE_RUNNING,
    ToolSet,
    TurnDisplay,
    tool_result,
    tool_uses,
)
from vigil.actors.tools.approval_prompt import prompt_reply
from vigil.actors.tools.mcp import chat_tool, is_mcp
from vigil.cancel import CancelToken
from vigil.durations import format_duration
from vigil.mcp.tools import McpTool
from vigil.policy.roles import asker_of
from vigil.policy.tool_mode import BASH, Risk, effective_mode, offers_bash, risk_of
from vigil.records.schema import Approval, Message, SessionHeader, ToolMode, Turn
from vigil.tools.approvals import Decision
from vigil.tools.outcome import ToolOutcome

OnTool = Callable[[tuple[Message, ...], str], None]

READONLY = {
    "command": ToolOutcome("refused: this chat is in read-only mode (/mode readonly): shell commands are not run. "
                           "The user can change that with /mode.", is_error=True),
    "change": ToolOutcome("refused: this chat is in read-only mode (/mode readonly): files can be viewed, not "
                          "changed. The user can change that with /mode.", is_error=True),
    "mcp": ToolOutcome("refused: this chat is in read-only mode (/mode readonly): only MCP tools that their server "
                       "marks read-only are run. The user can change that with /mode.", is_error=True),
}
UNATTENDED = ToolOutcome(
    "refused: this turn was not started by a user's message (a heartbeat or a scheduled task), and in ask mode shell "
    "commands, file changes and MCP tools that may change something need a person's approval, which nobody is here "
    "to give. It was not run.", is_error=True)
NOT_RECORDED = ToolOutcome("not run: vigil could not record the approval (a storage error); ask again later.",
                           is_error=True)
RESTARTING = ToolOutcome("not run: vigil restarted while this waited for the user's approval; call it again if it "
                         "is still needed.", is_error=True)


def declined(decision: Decision, timeout_s: float) -> ToolOutcome:
    why = {"timeout": f"nobody approved it within {format_duration(timeout_s)}",
           "stopped": "the user stopped the turn instead of approving it",
           "/new": "the user started a new conversation instead of approving it"}.get(
        decision.reason, f"{decision.by_name or 'the user'} declined it")
    return ToolOutcome(f"declined: {why}, so it was not run. Don't retry it unasked: ask the user what they want "
                       "instead.", is_error=True)


def open_round(exchange: tuple[Message, ...]) -> tuple[tuple[Message, ...], list[dict[str, Any]], list[dict[str, Any]]]:
    """(the exchange up to the last round's calls, their results so far, the calls still without a result)."""
    if exchange and exchange[-1].role == "assistant":
        return exchange, [], tool_uses(exchange[-1])
    if len(exchange) >= 2 and exchange[-2].role == "assistant":
        results = [b for b in exchange[-1].content if b.get("type") == "tool_result"]
        done = {b.get("tool_use_id") for b in results}
        return exchange[:-1], list(exchange[-1].content), [b for b in tool_uses(exchange[-2]) if b["id"] not in done]
    return exchange, [], []


def not_begun(header: SessionHeader, turn: Turn) -> frozenset[str]:
    """The calls of `turn` known not to have begun: asked (a prompt was open) or denied, never allowed."""
    return frozenset(a.tool_use_id for a in header.approvals
                     if (a.generation, a.seq) == (header.generation, turn.seq) and a.scope == "call"
                     and a.state in ("asked", "denied") and a.tool_use_id)


def offered(session: Session, tools: ToolSet) -> ToolSet:
    """The tool set as the chat's mode offers it (read-only: no bash)."""
    assert session.header is not None
    if offers_bash(effective_mode(session.header, session.deps.settings)):
        return tools
    return dataclasses.replace(tools, specs=tuple(s for s in tools.specs if s.get("name") != BASH))


class TurnGate:
    """One turn's gate; `tools` is what the runner gets. Used from the session's thread only."""

    def __init__(self, session: Session, tools: ToolSet, turn: Turn | None = None) -> None:
        assert session.header is not None
        self.session = session
        self.turn = turn
        self.mode: ToolMode = effective_mode(session.header, session.deps.settings)
        self.attended = turn is not None and turn.kind == "user"  # someone is there to press a button
        self.exchange: tuple[Message, ...] = turn.messages if turn is not None else ()
        self._inner = tools
        self.tools = dataclasses.replace(offered(session, tools), run=self._run)

    def watch(self, on_tool: OnTool) -> OnTool:
        """`on_tool` for the runner: the gate learns the exchange (and so the next call's id) first."""

        def watched(messages: tuple[Message, ...], text: str) -> None:
            self.exchange = messages
            on_tool(messages, text)

        return watched

    def finish_round(self, cancel: CancelToken, display: TurnDisplay, on_tool: OnTool) -> tuple[Message, ...]:
        """A resumed turn's round left open by a restart (see `not_begun`): its calls run now, asked again."""
        assert self.turn is not None
        head, results, calls = open_round(self.turn.messages)
        if not calls:
            return self.turn.messages
        for block in calls:
            if cancel.cancelled:
                results.append(tool_result(block["id"], CANCELLED))
                continue
            self.exchange = (*head, Message(role="user", content=tuple(results))) if results else head
            tool_input = dict(block.get("input") or {})
            display.progress(self.tools.describe(block["name"], tool_input))
            results.append(tool_result(block["id"], self.tools.run(block["name"], tool_input, cancel)))
            on_tool((*head, Message(role="user", content=tuple(results))), "")
        return (*head, Message(role="user", content=tuple(results)))

    # ------------------------------------------------------------------ the gate

    def _run(self, name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        mcp = chat_tool(self.session, name) if is_mcp(name) else None
        if is_mcp(name) and mcp is None:  # nothing to run, so nothing to approve (and nothing runs unapproved)
            return ToolOutcome(f"{name} is not a tool of any MCP server that is on in this chat", is_error=True)
        risk: Risk = risk_of(name, tool_input, read_only=mcp is not None and mcp.read_only)
        if risk == "safe" or self.mode == "auto":
            return self._inner.run(name, tool_input, cancel)
        if self.mode == "readonly":
            return READONLY[risk]
        if not self.attended:
            return UNATTENDED
        call_id = self._call_id(name, tool_input)
        stored = self._stored(call_id)
        if stored is not None and stored.state == "denied":
            return declined(Decision("deny"), self._timeout)
        if stored is not None and stored.state == "allowed":
            return RESTARTED_WHILE_RUNNING  # it may have run: never twice
        if not self._allowed_for_turn():
            # Written before the prompt shows: a restart then knows this call waited and did not begin.
            if call_id and not self._record(Approval(generation=0, seq=0, tool_use_id=call_id, state="asked")):
                return NOT_RECORDED
            decision = self._ask(name, tool_input, call_id, cancel, mcp)
            if decision.reason == "shutdown":
                return RESTARTING
            if decision.choice == "deny":
                self._record(Approval(generation=0, seq=0, tool_use_id=call_id, state="denied", by=decision.by))
                return declined(decision, self._timeout)
            records = [Approval(generation=0, seq=0, tool_use_id=call_id, state="allowed", by=decision.by)]
            if decision.choice == "turn":
                records.append(Approval(generation=0, seq=0, state="allowed", scope="turn", by=decision.by))
            if not self._record(*records):
                return NOT_RECORDED  # unrecorded, a restart could not tell it ran: it must not run
        return self._inner.run(name, tool_input, cancel)

    @property
    def _timeout(self) -> float:
        return self.session.deps.settings.approval_timeout_s

    def _ask(self, name: str, tool_input: dict[str, Any], call_id: str, cancel: CancelToken,
             mcp: McpTool | None = None) -> Decision:
        session = self.session
        assert session.header is not None and self.turn is not None
        starter = asker_of(self.turn.inputs, session.deps.allowance.limited)  # who asked answers (or an admin)
        asker, asker_name = (starter.user_id, starter.user_name) if starter is not None else (0, "")
        approvals = session.deps.approvals
        pending = approvals.open(session.key, asker, asker_name)
        target = session.header.target
        outbox = session.deps.outbox(target)
        if outbox is not None:
            outbox.send(session.key, target, prompt_reply(name, tool_input, asker_name, self._timeout, pending.token,
                                                          mcp=mcp))
        session.log.info("approval.asked", tool=name, tool_use_id=call_id)
        decision = pending.wait(cancel, self._timeout)
        if cancel.cancelled:  # /stop means Deny, also against a tap in the same instant
            decision = approvals.settle(pending, Decision("deny", reason="shutdown" if cancel.reason == "shutdown"
                                                          else "stopped"), force=True)
        else:
            decision = approvals.settle(pending, decision or Decision("deny", reason="timeout"))
        session.log.info("approval.decided", tool=name, tool_use_id=call_id, choice=decision.choice, by=decision.by,
                         reason=decision.reason)
        return decision

    def _call_id(self, name: str, tool_input: dict[str, Any]) -> str:
        """The id of the call about to run: the first of the last round without a result."""
        _, _, calls = open_round(self.exchange)
        if calls and calls[0].get("name") == name and dict(calls[0].get("input") or {}) == tool_input:
            return str(calls[0]["id"])
        return ""  # not known: nothing is recorded, and a restart answers the call as interrupted

    def _here(self, approval: Approval) -> bool:
        header = self.session.header
        assert header is not None and self.turn is not None
        return (approval.generation, approval.seq) == (header.generation, self.turn.seq)

    def _stored(self, call_id: str) -> Approval | None:
        header = self.session.header
        if not call_id or header is None or self.turn is None:
            return None
        return next((a for a in header.approvals if self._here(a) and a.scope == "call"
                     and a.tool_use_id == call_id), None)

    def _allowed_for_turn(self) -> bool:
        header = self.session.header
        return header is not None and any(self._here(a) and a.scope == "turn" and a.state == "allowed"
                                          for a in header.approvals)

    def _record(self, *records: Approval) -> bool:
        """Write decisions of this turn durably (the header keeps only this turn's); False if the store refused."""
        session = self.session
        header = session.header
        assert header is not None and self.turn is not None
        placed = [msgspec.structs.replace(r, generation=header.generation, seq=self.turn.seq) for r in records]
        if not any(r.tool_use_id for r in placed if r.scope == "call"):
            placed = [r for r in placed if r.scope == "turn"]
        replaced = {(r.scope, r.tool_use_id) for r in placed}
        kept = tuple(a for a in header.approvals if self._here(a) and (a.scope, a.tool_use_id) not in replaced)
        session.header = msgspec.structs.replace(header, approvals=(*kept, *placed))
        return session.commit(wait=True)


def gate_for(session: Session, tools: ToolSet, turn: Turn | None = None) -> ToolSet:
    """`tools` gated for a turn nobody may be asked about (`turn` None or not a user's): ask means refuse."""
    return TurnGate(session, tools, turn).tools
