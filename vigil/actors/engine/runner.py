"""One turn against the model: streaming, the tool loop, cancellation, the global call cap.

The runner is shared by user turns and heartbeat turns; what differs is passed
in (the request, the tools, the display). Model calls run on a small pool so
that the session's thread can walk away the moment `/stop` is pressed, even if
the HTTP call is stuck before its first byte; the abandoned call still holds
its slot until it really ends, so the cap on calls in flight stays honest.

Money: before every call the runner asks the turn's `may_call` (the budget and
rate limit of whoever pays, see `vigil.policy.budget`); a refusal ends the turn there,
after the tool results of the round before, so the history stays valid. The
turn's `Meter` knows what its calls used so far, the call in flight included
(its input as soon as the API reports it, its output estimated from what has
streamed), so a turn written down while open, or cut short, is charged for what
it consumed, never zero.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from vigil.actors.engine.meter import Meter
from vigil.actors.engine.model_call import ModelCall
from vigil.actors.engine.slots import QuerySlots
from vigil.actors.engine.toolset import ToolSet as ToolSet
from vigil.cancel import CancelToken
from vigil.logs import get_logger
from vigil.model.citations import reply_text
from vigil.model.history import with_cache_point
from vigil.model.thinking import thinking_text
from vigil.ports import (
    ModelError,
    ModelPort,
    ModelRequest,
    ModelResponse,
    ServerToolSink,
    ThinkingPhase,
    ThinkingSink,
    TokenUsage,
    TurnStatus,
)
from vigil.records.schema import Message
from vigil.telemetry.metrics import NULL_METRICS, Metrics
from vigil.tools.outcome import ToolOutcome

KEEPALIVE_S = 4.0  # Telegram's typing indicator lasts about five seconds
FIRST_WAIT_S = 0.25  # a model call still running after this is a turn worth writing down as open
THINKING_LINE = "💭 thinking…"  # the progress line while the model thinks (until its words come)


Refused = Callable[[ModelError], "list[dict[str, Any]] | None"]
"""Asked when a call is refused as a bad request (before any output): the request's messages (not its
turn's exchange) to try the same call again with, e.g. with a file the API could not read turned into a
line (actors/turns/refused_files.py), or None to fail the turn with the error."""

MayCall = Callable[[int, int], "str | None"]
"""Asked before each model call of a turn with (round number from 0, micro-dollars the turn has used so
far): None to go ahead, or the sentence that ends the turn instead (a budget or rate limit)."""


class TurnDisplay(Protocol):
    """Where a turn shows itself while it runs; `keepalive` comes a moment into a slow call, then every few s."""

    def text(self, full: str) -> None: ...

    def progress(self, line: str) -> None: ...

    def keepalive(self) -> None: ...


class SilentDisplay:
    """Shows nothing: a heartbeat's own text is never shown (only what it sends is)."""

    def text(self, full: str) -> None:
        return None

    def progress(self, line: str) -> None:
        return None

    def keepalive(self) -> None:
        return None


class TurnOutcome(msgspec.Struct, frozen=True, kw_only=True):
    messages: tuple[Message, ...]
    reply: str
    status: TurnStatus  # done, stopped or failed: a turn that ran to an end
    note: str = ""
    calls: tuple[tuple[str, TokenUsage], ...] = ()
    error_kind: str = ""
    # The summarized thinking of the turn's calls (`/think show` shows it); never part of `reply`.
    thinking: str = ""


@dataclass
class _Progress:
    """What the turn has said so far, across rounds."""

    rounds: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)

    def joined(self) -> str:
        parts = [*self.rounds, "".join(self.current)]
        return "\n\n".join(p for p in (s.strip() for s in parts) if p)


def tool_result(tool_use_id: str, outcome: ToolOutcome) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id,
                             "content": outcome.result_content()}
    if outcome.is_error:
        block["is_error"] = True
    return block


CANCELLED = ToolOutcome(content="cancelled: the user stopped this turn before the tool ran", is_error=True)
RESTARTED_WHILE_RUNNING = ToolOutcome(
    content=("interrupted: vigil restarted while this tool call was running. It may have taken effect, in part "
             "or in full, so it was not run again; check before calling it again."), is_error=True)
RESTARTED_BEFORE_IT_BEGAN = ToolOutcome(
    content="not run: vigil restarted before this tool call began; call it again if it is still needed.",
    is_error=True)


def tool_uses(message: Message) -> list[dict[str, Any]]:
    return [b for b in message.content if b.get("type") == "tool_use"] if message.role == "assistant" else []


def resume_exchange(messages: tuple[Message, ...], not_begun: Collection[str] = ()) -> tuple[Message, ...]:
    """The stored exchange of a turn cut short by a restart, ready for the model to continue.

    Tool calls whose results were stored are kept as they are (never run again: they may have had
    effects). Tools run one at a time and the exchange is stored before the first and after each, so
    of the calls without a stored result only the first can have begun: it is answered as interrupted,
    the rest as never run. Trailing assistant text (already shown, and kept as the superseded reply) goes:
    the model writes its answer anew. If that first call is in `not_begun` (it waited for the user's
    approval: actors/tools/approval_gate.py), the round is left open, its results so far kept, for the turn to go
    on with.
    """
    out = list(messages)
    while out and out[-1].role == "assistant" and not tool_uses(out[-1]):
        out.pop()
    if not out:
        return ()
    if out[-1].role == "assistant":
        calls, answered = tool_uses(out[-1]), []
    elif len(out) >= 2 and out[-2].role == "assistant":
        calls, answered = tool_uses(out[-2]), list(out.pop().content)
    else:
        return tuple(out)
    stored = {b.get("tool_use_id") for b in answered if b.get("type") == "tool_result"}
    results = list(answered)
    if next((b["id"] for b in calls if b["id"] not in stored), None) in not_begun:
        return tuple(out) + ((Message(role="user", content=tuple(answered)),) if answered else ())
    for block in calls:
        if block["id"] not in stored:
            began = len(results) == len(stored)  # the first call without a result
            results.append(tool_result(block["id"], RESTARTED_WHILE_RUNNING if began else RESTARTED_BEFORE_IT_BEGAN))
    out.append(Message(role="user", content=tuple(results)))
    return tuple(out)


def _retry_of(error: ModelError, on_refused: Refused | None) -> list[dict[str, Any]] | None:
    partial = error.partial
    if on_refused is None or error.kind != "bad_request" or (partial is not None and partial.content):
        return None
    return on_refused(error)


class TurnRunner:
    """Runs turns; one instance per process, used from many session threads."""

    def __init__(self, model: ModelPort, slots: QuerySlots, max_rounds: int, metrics: Metrics = NULL_METRICS) -> None:
        self._model = model
        self._metrics = metrics
        self._slots = slots
        self._max_rounds = max_rounds
        self._calls: queue.SimpleQueue[ModelCall | None] = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._work, name=f"model-call-{i}", daemon=True)
                         for i in range(slots.limit)]
        for worker in self._workers:
            worker.start()
        self._closed = False
        self._log = get_logger(__name__)

    def close(self) -> None:
        self._closed = True
        for _ in self._workers:
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call.response = self._model.stream(call.request, call.text, call.cancel, on_usage=call.usage,
                                                   on_server_tool=call.server_tool, on_thinking=call.thinking)
            except BaseException as exc:
                call.error = exc
            finally:
                self._slots.release()
                call.open()
                self._metrics.model_call(call.request.model, call.response, call.error)  # once the turn goes on
                # An idle worker must not keep its last call (and through it a whole session) alive.
                del call

    def run(self, request: ModelRequest, cancel: CancelToken, display: TurnDisplay,
            tools: ToolSet | None = None,
            on_round: Callable[[tuple[Message, ...], str], None] | None = None,
            max_rounds: int | None = None, resume: tuple[Message, ...] = (),
            on_tool: Callable[[tuple[Message, ...], str], None] | None = None,
            may_call: MayCall | None = None, meter: Meter | None = None,
            on_refused: Refused | None = None) -> TurnOutcome:
        """Call the model (and tools) until the turn ends.

        `on_round` gets the exchange after each round of tool results; `on_tool` gets it before any tool
        of a round runs (ending with the assistant's tool calls) and after each tool but the round's last
        (ending with the results so far): a restart then knows which calls ran. `resume` is the exchange
        of a turn cut short by a restart (ending with tool results): the model continues from it.
        `may_call` is asked before every model call (budget, rate); `meter` learns what each call used.
        `on_refused` may replace the request's messages after a bad-request refusal (see `Refused`): the
        same call is then made again, neither counted as a round nor asked of `may_call` (a refused
        request is not billed).
        """
        rounds = self._max_rounds if max_rounds is None else max_rounds
        meter = meter if meter is not None else Meter()
        base = list(request.messages)
        exchange: list[Message] = list(resume)
        said = _Progress()
        thought: list[str] = []  # the summarized thinking of each call, for `/think show`
        status: TurnStatus
        status, note, error_kind = "done", "", ""
        for round_no in range(rounds + 1):
            refusal = may_call(round_no, meter.usage().cost_micros) if may_call is not None else None
            if refusal is not None:
                # Before the call: the exchange so far ends with the tool results of the last round (or is empty).
                status, note, error_kind = "failed", refusal, "limit"
                break
            if cancel.cancelled:  # /stop while may_call waited for the rate window
                status, note = "stopped", "stopped"
                break
            messages = base + [{"role": m.role, "content": list(m.content)} for m in exchange]
            if exchange:
                messages[-1] = with_cache_point(messages[-1])
            call = msgspec.structs.replace(request, messages=tuple(messages),
                                           tools=tools.specs if tools else ())
            call = tools.per_call(call, cancel) if tools is not None and tools.per_call is not None else call
            said.current = []

            def on_text(delta: str) -> None:
                said.current.append(delta)
                display.text(said.joined())

            def on_server_tool(name: str, tool_input: dict[str, Any]) -> None:
                if tools is not None:  # a web search or fetch running at the service: say so meanwhile
                    display.progress(tools.describe(name, tool_input))

            def on_thinking(phase: ThinkingPhase, piece: str) -> None:
                if phase == "start":  # until the words come (the display clears it when the text changes)
                    display.progress(THINKING_LINE)

            try:
                response, base = self._call_or_retry(call, base, on_refused, cancel, on_text, display, meter,
                                                     on_server_tool, on_thinking)
            except ModelError as exc:
                said.current = []  # the partial below holds what was streamed; don't count it twice
                partial = exc.partial
                if partial is not None:
                    meter.add(partial.model or request.model, partial.usage)
                    thought.append(thinking_text(partial.content))
                    if partial.content:
                        exchange.append(Message(role="assistant", content=partial.content))
                else:
                    meter.end_live()
                status, note, error_kind = "failed", exc.sentence, exc.kind
                said.rounds.append(reply_text(partial.content) if partial else "")
                break
            meter.add(response.model or request.model, response.usage)
            thought.append(thinking_text(response.content))
            if response.content and exchange and exchange[-1].role == "assistant":
                # The continuation of a paused turn: one assistant message, as the API sees it.
                exchange[-1] = Message(role="assistant", content=(*exchange[-1].content, *response.content))
            elif response.content:
                exchange.append(Message(role="assistant", content=response.content))
            said.rounds.append(reply_text(response.content))
            said.current = []
            if response.stop_reason == "cancelled" or cancel.cancelled:
                status, note = "stopped", "stopped"
                break
            if response.stop_reason == "pause_turn" and response.content:
                # The service paused a long turn (its web tools at work): send it back as is to go on.
                if round_no == rounds:
                    note = f"stopped after {rounds} rounds"
                    break
                continue
            uses = [b for b in response.content if b.get("type") == "tool_use"]
            if response.stop_reason != "tool_use" or not uses or tools is None:
                if response.stop_reason == "max_tokens":
                    note = "the reply hit the length limit"
                break
            if round_no == rounds:
                limit = ToolOutcome(content=f"not run: the limit of {rounds} tool rounds per turn "
                                            "was reached", is_error=True)
                exchange.append(Message(role="user", content=tuple(tool_result(b["id"], limit) for b in uses)))
                note = f"stopped after {rounds} tool rounds"
                break
            if on_tool is not None:
                on_tool(tuple(exchange), said.joined())
            results = []
            for block in uses:
                if cancel.cancelled:
                    results.append(tool_result(block["id"], CANCELLED))
                    continue
                display.progress(tools.describe(block["name"], block.get("input") or {}))
                outcome = tools.run(block["name"], dict(block.get("input") or {}), cancel)
                results.append(tool_result(block["id"], outcome))
                if on_tool is not None and len(results) < len(uses):
                    on_tool((*exchange, Message(role="user", content=tuple(results))), said.joined())
            exchange.append(Message(role="user", content=tuple(results)))
            if on_round is not None:
                on_round(tuple(exchange), said.joined())
            if cancel.cancelled:
                status, note = "stopped", "stopped"
                break
        return TurnOutcome(messages=tuple(exchange), reply=said.joined(), status=status, note=note,
                           calls=meter.calls, error_kind=error_kind, thinking="\n\n".join(t for t in thought if t))

    def _call_or_retry(self, call: ModelRequest, base: list[dict[str, Any]], on_refused: Refused | None,
                       cancel: CancelToken, on_text: Callable[[str], None], display: TurnDisplay, meter: Meter,
                       on_server_tool: ServerToolSink | None = None, on_thinking: ThinkingSink | None = None,
                       ) -> tuple[ModelResponse, list[dict[str, Any]]]:
        """One call; after a refusal `on_refused` can mend, the same call again with the mended messages.

        Returns the response and the request's messages it was made with (`base`, or the mended ones,
        which the turn's later rounds keep)."""
        while True:
            try:
                return self._call(call, cancel, on_text, display, meter, on_server_tool, on_thinking), base
            except ModelError as refused:
                retry = _retry_of(refused, on_refused)
                if retry is None:
                    raise
                meter.end_live()
                exchanged = list(call.messages[len(base):])
                base = retry
                call = msgspec.structs.replace(call, messages=(*base, *exchanged))

    def _call(self, request: ModelRequest, cancel: CancelToken, on_text: Callable[[str], None],
              display: TurnDisplay, meter: Meter, on_server_tool: ServerToolSink | None = None,
              on_thinking: ThinkingSink | None = None) -> ModelResponse:
        cancelled = ModelResponse(content=(), stop_reason="cancelled", usage=TokenUsage(), model=request.model)
        if self._closed or not self._slots.acquire(cancel):
            return cancelled
        call = ModelCall(request, on_text, cancel, meter, on_server_tool, on_thinking)
        self._calls.put(call)
        with cancel.on_cancel(call.open):
            wait = FIRST_WAIT_S
            while not call.latch.acquire(timeout=wait):
                display.keepalive()
                wait = KEEPALIVE_S
        with call.text_gate:
            if call.response is None and call.error is None:
                # Cancelled while the call is still blocked: leave it behind with what it streamed.
                call.abandoned = True
                text = "".join(call.streamed)
                content = ({"type": "text", "text": text},) if text.strip() else ()
                return msgspec.structs.replace(cancelled, content=content, usage=call.abandoned_usage())
        if call.error is not None:
            if isinstance(call.error, ModelError):
                raise call.error
            self._log.error("model.unexpected_error", exc_info=call.error)
            raise ModelError("Something went wrong inside vigil while answering; please try again.",
                             "internal") from call.error
        assert call.response is not None
        return call.response
