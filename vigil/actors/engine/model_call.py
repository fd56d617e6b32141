"""One model call of a turn, handed to a worker thread: what it streamed, what it used, whether it was left behind.

The turn's thread waits on `latch`, which opens when the call ends or the turn is cancelled; a call
still blocked then (a stuck connection) is abandoned: what it streams afterwards is dropped under
`text_gate`, and what it used so far is charged (`abandoned_usage`: the input it reported, else an
estimate of it, and its output estimated from the text and the thinking it streamed: thinking tokens
are output tokens). Split from actors/engine/runner.py, whose runner makes one per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec

from vigil.actors.engine.meter import Meter
from vigil.cancel import CancelToken
from vigil.model.history import estimate_tokens
from vigil.model.prices import output_estimate
from vigil.ports import ModelRequest, ModelResponse, ServerToolSink, ThinkingPhase, ThinkingSink, TokenUsage


class ModelCall:
    """One model call handed to a worker; `latch` opens when it ends or the turn is cancelled."""

    __slots__ = ("abandoned", "cancel", "error", "latch", "meter", "on_server_tool", "on_text", "on_thinking",
                 "opened", "release_lock", "request", "response", "seen", "streamed", "text_gate", "thought")

    def __init__(self, request: ModelRequest, on_text: Callable[[str], None], cancel: CancelToken,
                 meter: Meter, on_server_tool: ServerToolSink | None = None,
                 on_thinking: ThinkingSink | None = None) -> None:
        self.request = request
        self.on_text = on_text
        self.on_server_tool = on_server_tool
        self.on_thinking = on_thinking
        self.thought = 0  # characters of thinking streamed: output tokens too
        self.cancel = cancel
        self.meter = meter
        self.seen: TokenUsage | None = None  # the usage the API reported so far
        self.latch = threading.Lock()
        self.latch.acquire()
        self.release_lock = threading.Lock()
        self.opened = False
        self.text_gate = threading.Lock()
        self.abandoned = False
        self.streamed: list[str] = []
        self.response: ModelResponse | None = None
        self.error: BaseException | None = None

    def open(self) -> None:
        with self.release_lock:
            if not self.opened:
                self.opened = True
                self.latch.release()

    def text(self, delta: str) -> None:
        with self.text_gate:
            if self.abandoned:
                return
            self.streamed.append(delta)
            self.meter.streamed(len(delta))
            self.on_text(delta)

    def thinking(self, phase: ThinkingPhase, piece: str) -> None:
        with self.text_gate:
            if self.abandoned:
                return
            if phase == "text":
                self.thought += len(piece)
                self.meter.streamed(len(piece))
            if self.on_thinking is not None:
                self.on_thinking(phase, piece)

    def server_tool(self, name: str, tool_input: dict[str, Any]) -> None:
        with self.text_gate:
            if not self.abandoned and self.on_server_tool is not None:
                self.on_server_tool(name, tool_input)

    def usage(self, usage: TokenUsage) -> None:
        with self.text_gate:
            if self.abandoned:
                return
            self.seen = usage
            self.meter.started(self.request.model, usage)

    def abandoned_usage(self) -> TokenUsage:
        """What a call left behind used, as far as known: the reported input, else an estimate of it."""
        seen = self.seen
        if seen is None:  # no message_start yet: the request may still be billed, so count its input
            request = self.request
            seen = TokenUsage(input_tokens=estimate_tokens(
                [{"role": "user", "content": [*request.system, *request.tools]}, *request.messages]))
        output = output_estimate(sum(len(piece) for piece in self.streamed) + self.thought)
        return msgspec.structs.replace(seen, output_tokens=max(seen.output_tokens, output))
