"""Test doubles for vigil's ports, and a harness that runs a real Runtime on a temporary LMDB store.

- `ScriptedModel` implements `ModelPort`: it records every `ModelRequest`, counts calls in flight,
  and answers each call with the next script of its queue (or a chooser's pick, or an echo):
  `Say` (text streamed in a few deltas), `Block` (wait for an Event, or the cancel token),
  `Fail` (ModelError), `Crash` (RuntimeError), `UseTools` (tool_use blocks) or `Custom`.
- `RecordingOutbox` implements `Outbox` for the channel "test": sends, streamed replies (drafts
  apart, with `drafts=True`) and files are recorded in order per key, and tests wait on its
  Condition (`wait_for`) instead of sleeping.
- `HarnessFactory` builds `Harness`es (Settings + Runtime + model + outbox on tmp_path) and tears
  every runtime down at the end; test modules wrap it in a three-line fixture.

Every wait here is on a Condition/Event with a timeout, or polls a predicate every 10 ms.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from vigil.actors.core.protocol import Drain, Sender, SessionCommand, UserText
from vigil.actors.session import SessionActor
from vigil.cancel import CancelToken
from vigil.config.settings import Settings, load_settings
from vigil.ports import (
    FileDelivery,
    ModelError,
    ModelErrorKind,
    ModelRequest,
    ModelResponse,
    OutgoingFile,
    Reply,
    ServerToolSink,
    TokenUsage,
    UsageSink,
)
from vigil.records.schema import Target, Turn
from vigil.runtime import Runtime

CHANNEL = "test"
WAIT_S = 5.0

TextSink = Callable[[str], None]
INPUT_TOKENS = 12  # every scripted call's input usage


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S, interval: float = 0.01) -> bool:
    """Check `predicate` every `interval` seconds until it holds or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        pause.wait(interval)


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Say:
    """Stream `text` through on_text in `deltas` pieces, then end the turn."""

    text: str
    deltas: int = 3
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class Block:
    """Block until `release` is set (then say `text`); with `honour_cancel`, also until the cancel.

    `partial` is streamed before blocking. A Block that does not honour cancel simulates an HTTP call
    stuck before its first byte: only `release` (or `ScriptedModel.close`) ends it.
    """

    release: threading.Event
    text: str = "released"
    honour_cancel: bool = True
    partial: str = ""


@dataclass(frozen=True)
class Fail:
    """Raise ModelError(sentence, kind), with `partial` text as the partial response if given."""

    sentence: str = "The model is overloaded right now; please try again in a minute."
    kind: ModelErrorKind = "overloaded"
    partial: str = ""


@dataclass(frozen=True)
class Crash:
    """Raise an arbitrary RuntimeError (a bug in the model adapter)."""

    message: str = "model adapter exploded"


@dataclass(frozen=True)
class UseTools:
    """Answer stop_reason tool_use with one tool_use block per (name, input), after optional text."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    text: str = ""


@dataclass(frozen=True)
class Custom:
    """Anything else: `fn(request, on_text, cancel)` answers (or raises) itself."""

    fn: Callable[[ModelRequest, TextSink, CancelToken], ModelResponse]


Script = Say | Block | Fail | Crash | UseTools | Custom
Chooser = Callable[[ModelRequest], Script]


def request_texts(request: ModelRequest) -> list[str]:
    """Every text block of the request's messages (not the system prompt), in order."""
    out: list[str] = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
            continue
        for block in content:
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                result = block.get("content")
                out.append(result if isinstance(result, str) else repr(result))
    return out


def all_text(request: ModelRequest) -> str:
    return "\n".join(request_texts(request))


def last_user_text(request: ModelRequest) -> str:
    """The text blocks of the latest user message that has any (tool_result-only messages skipped)."""
    for message in reversed(request.messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        texts = [str(b.get("text", "")) for b in content if b.get("type") == "text"]
        if texts:
            return "\n".join(texts)
    return ""


def echo(request: ModelRequest) -> Script:
    """The default: answer `echo: <the current user text>`."""
    return Say(f"echo: {last_user_text(request)}")


def response(text: str = "", stop_reason: str = "end_turn", model: str = "",
             blocks: Iterable[dict[str, Any]] = ()) -> ModelResponse:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.extend(blocks)
    return ModelResponse(content=tuple(content), stop_reason=stop_reason,
                         usage=TokenUsage(input_tokens=INPUT_TOKENS, output_tokens=max(1, len(text) // 4)),
                         model=model)


class ScriptedModel:
    """A ModelPort whose every call follows a script; thread-safe, records everything."""

    def __init__(self, scripts: Iterable[Script] = (), choose: Chooser = echo) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Script] = deque(scripts)
        self.choose = choose
        self.requests: list[ModelRequest] = []
        self.calls = 0
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = threading.Event()
        self._ids = itertools.count(1)

    # -------------------------------------------------------------------- scripting and waiting

    def push(self, *scripts: Script) -> None:
        with self._cond:
            self._queue.extend(scripts)

    def wait_for(self, predicate: Callable[[ScriptedModel], bool], timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Release every blocked call (teardown)."""
        self.closed.set()

    # -------------------------------------------------------------------- the port

    def stream(self, request: ModelRequest, on_text: TextSink, cancel: CancelToken,
               on_usage: UsageSink | None = None, on_server_tool: ServerToolSink | None = None,
               on_thinking: object = None) -> ModelResponse:
        if on_usage is not None:  # as the API's message_start: the input is known before any output
            on_usage(TokenUsage(input_tokens=INPUT_TOKENS, output_tokens=1))
        with self._cond:
            self.requests.append(request)
            self.calls += 1
            script = self._queue.popleft() if self._queue else self.choose(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        try:
            return self._perform(script, request, on_text, cancel)
        finally:
            with self._cond:
                self.in_flight -= 1
                self.completed += 1
                self._cond.notify_all()

    def _perform(self, script: Script, request: ModelRequest, on_text: TextSink,
                 cancel: CancelToken) -> ModelResponse:
        if isinstance(script, Say):
            self._speak(script.text, script.deltas, on_text)
            return response(script.text, script.stop_reason, request.model)
        if isinstance(script, Block):
            if script.partial:
                on_text(script.partial)
            if self._hold(script.release, cancel, script.honour_cancel):
                if script.text:
                    on_text(script.text)
                return response(script.partial + script.text, "end_turn", request.model)
            return response(script.partial, "cancelled", request.model)
        if isinstance(script, Fail):
            if script.partial:
                on_text(script.partial)
            partial = response(script.partial, "error", request.model) if script.partial else None
            raise ModelError(script.sentence, script.kind, partial)
        if isinstance(script, Crash):
            raise RuntimeError(script.message)
        if isinstance(script, UseTools):
            if script.text:
                on_text(script.text)
            blocks = [{"type": "tool_use", "id": f"toolu_{next(self._ids):04d}", "name": name, "input": dict(args)}
                      for name, args in script.calls]
            return response(script.text, "tool_use", request.model, blocks)
        return script.fn(request, on_text, cancel)

    @staticmethod
    def _speak(text: str, deltas: int, on_text: TextSink) -> None:
        size = max(1, -(-len(text) // max(1, deltas)))
        for start in range(0, len(text), size):
            on_text(text[start:start + size])

    def _hold(self, release: threading.Event, cancel: CancelToken, honour_cancel: bool) -> bool:
        """True once released; False when cancelled (if honoured) or the model is closed."""
        while not release.wait(0.01):
            if self.closed.is_set() or (honour_cancel and cancel.cancelled):
                return False
        return True


# --------------------------------------------------------------------------------------------- outbox


class StreamRecord(msgspec.Struct, kw_only=True):
    """One streamed reply: its events in order, each (kind, text, note)."""

    key: str
    events: list[tuple[str, str, str]] = msgspec.field(default_factory=list)

    @property
    def final(self) -> tuple[str, str] | None:
        for kind, text, note in self.events:
            if kind == "finish":
                return text, note
        return None


class RecordingStream:
    """The ReplyStream handed out by RecordingOutbox."""

    def __init__(self, outbox: RecordingOutbox, record: StreamRecord) -> None:
        self._outbox = outbox
        self.record = record

    def update(self, text: str, durable: bool = True) -> None:
        hook = self._outbox.update_hook
        if hook is not None:
            hook(self.record.key, text)
        # A text shown without being durable is a draft: recorded as such, so a test can tell them apart.
        self._outbox._add(self.record, ("update" if durable else "draft", text, ""))

    def needs_checkpoint(self, text: str) -> bool:
        """Like Telegram: edits always; with `drafts`, only a text longer than `draft_limit` (a cut)."""
        outbox = self._outbox
        return not outbox.drafts or len(text) > outbox.draft_limit

    def progress(self, line: str) -> None:
        self._outbox._add(self.record, ("progress", line, ""))

    def finish(self, text: str, note: str = "", thinking: str = "") -> None:
        hook = self._outbox.finish_hook
        if hook is not None:
            hook(self.record.key, text, note)
        if thinking:  # shown above the answer (`/think show`): recorded before it
            self._outbox._add(self.record, ("thinking", thinking, ""))
        self._outbox._add(self.record, ("finish", text, note))


class RecordingOutbox:
    """An Outbox for the channel "test" that records everything, in order, per key.

    `stream_hook(key)` runs at the start of `stream()` and may raise (a broken channel);
    `update_hook(key, text)` and `finish_hook(key, text, note)` run in the caller's thread (the actor's,
    or a model-call thread for previews) just before the event is recorded.
    """

    channel = CHANNEL

    def __init__(self, interval: float = 1.0, drafts: bool = False, draft_limit: int = 4096) -> None:
        self.interval = interval
        self.drafts = drafts
        self.draft_limit = draft_limit
        self.files: list[tuple[str, OutgoingFile]] = []
        self.file_outcome: FileDelivery | None = None  # what send_file answers (None: delivered)
        self.cond = threading.Condition()
        self.sends: list[tuple[str, Reply]] = []
        self.streams: list[StreamRecord] = []
        self.typings = 0
        self.stream_hook: Callable[[str], None] | None = None
        self.update_hook: Callable[[str, str], None] | None = None
        self.finish_hook: Callable[[str, str, str], None] | None = None

    # -------------------------------------------------------------------- the port

    def update_interval(self, target: Target) -> float:
        return self.interval

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        assert target.channel == CHANNEL
        with self.cond:
            self.sends.append((key, reply))
            self.cond.notify_all()

    def stream(self, key: str, target: Target, ref: int | None = None) -> RecordingStream:
        assert target.channel == CHANNEL
        hook = self.stream_hook
        if hook is not None:
            hook(key)
        record = StreamRecord(key=key)
        with self.cond:
            self.streams.append(record)
            self.cond.notify_all()
        return RecordingStream(self, record)

    def typing(self, target: Target) -> None:
        with self.cond:
            self.typings += 1

    def send_file(self, key: str, target: Target, file: OutgoingFile, cancel: CancelToken) -> FileDelivery:
        assert target.channel == CHANNEL
        outcome = self.file_outcome or FileDelivery(delivered=True, detail=f"sent: {file.filename}")
        if outcome.delivered:
            with self.cond:
                self.files.append((key, file))
                self.cond.notify_all()
        return outcome

    def _add(self, record: StreamRecord, event: tuple[str, str, str]) -> None:
        with self.cond:
            record.events.append(event)
            self.cond.notify_all()

    # -------------------------------------------------------------------- reading

    def finished(self, key: str) -> list[tuple[str, str]]:
        """(text, note) of every finished reply of `key`, oldest first."""
        with self.cond:
            return [r.final for r in self.streams if r.key == key and r.final is not None]

    def all_finished(self) -> list[tuple[str, str, str]]:
        with self.cond:
            return [(r.key, *r.final) for r in self.streams if r.final is not None]

    def sent(self, key: str) -> list[str]:
        with self.cond:
            return [reply.text for k, reply in self.sends if k == key]

    def sent_replies(self, key: str) -> list[Reply]:
        with self.cond:
            return [reply for k, reply in self.sends if k == key]

    def streams_of(self, key: str) -> list[StreamRecord]:
        with self.cond:
            return [r for r in self.streams if r.key == key]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_finished(self, key: str, count: int, timeout: float = WAIT_S) -> list[tuple[str, str]]:
        """Wait for `count` finished replies of `key`; fails the test if they do not come."""
        if not self.wait_for(lambda: len(self.finished(key)) >= count, timeout):
            raise AssertionError(f"{key}: {len(self.finished(key))} of {count} replies finished "
                                 f"within {timeout}s: {self.finished(key)}")
        return self.finished(key)

    def wait_sent(self, key: str, count: int, timeout: float = WAIT_S) -> list[str]:
        if not self.wait_for(lambda: len(self.sent(key)) >= count, timeout):
            raise AssertionError(f"{key}: {len(self.sent(key))} of {count} messages sent: {self.sent(key)}")
        return self.sent(key)


# -------------------------------------------------------------------------------------- request checks


def check_messages(messages: Iterable[dict[str, Any]]) -> None:
    """Assert a Messages API message list is valid: user first and last, roles alternating, no empty
    text, every tool_use answered by a tool_result at the start of the next message, none orphaned."""
    items = list(messages)
    assert items, "no messages"
    assert items[0]["role"] == "user", f"first message is {items[0]['role']}"
    pending: list[str] = []
    for index, message in enumerate(items):
        role = message["role"]
        assert role in ("user", "assistant"), role
        if index:
            assert role != items[index - 1]["role"], f"two {role} messages in a row at {index}"
        content = message["content"]
        assert content, f"empty content at {index}"
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        for block in blocks:
            if block.get("type") == "text":
                assert str(block.get("text", "")).strip(), f"empty text block at {index}"
        if role == "user":
            results = [str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"]
            leading = [str(b.get("tool_use_id")) for b in blocks[:len(pending)] if b.get("type") == "tool_result"]
            assert sorted(leading) == sorted(pending), f"tool_use {pending} not answered first at {index}"
            assert sorted(results) == sorted(pending), f"orphan tool_result at {index}: {results} vs {pending}"
            pending = []
        else:
            assert not pending
            pending = [b["id"] for b in blocks if b.get("type") == "tool_use"]
    assert not pending, "the last tool_use is unanswered"


def _stand_in_validator() -> Callable[[dict[str, Any]], None] | None:
    """The Messages API stand-in's own validator (as strict as the real API), if it is there."""
    try:
        from tests.standins import messages_api
    except ImportError:
        return None
    validator = getattr(messages_api, "_Validator", None)
    if validator is None:
        return None

    def validate(body: dict[str, Any]) -> None:
        try:
            validator(body, {"anthropic-version": "2023-06-01"}).run()
        except Exception as exc:
            raise AssertionError(f"the Messages API stand-in refuses this request: {exc!r}") from exc

    return validate


_VALIDATE = _stand_in_validator()


def check_request(request: ModelRequest) -> None:
    """Assert the request is one the Messages API accepts (our checks, then the stand-in's if present)."""
    check_messages(request.messages)
    assert request.messages[-1]["role"] == "user", "a request must end with a user message"
    if _VALIDATE is not None:
        body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "stream": True,
                                "system": list(request.system), "messages": list(request.messages)}
        if request.tools:
            body["tools"] = list(request.tools)
        _VALIDATE(msgspec.json.decode(msgspec.json.encode(body)))


# ------------------------------------------------------------------------------------------- harness


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on tmp_path (data dir, work root, HOME), with `overrides` applied to the Struct."""
    data = tmp_path / "data"
    work = tmp_path / "work"
    home = tmp_path / "home"
    for path in (data, work, home):
        path.mkdir(parents=True, exist_ok=True)
    settings = load_settings({
        "HOME": str(home),
        "VIGIL_DATA_DIR": str(data),
        "VIGIL_WORKDIR_ROOT": str(work),
        "VIGIL_ALLOWED_USERS": "*",
        "VIGIL_TOOL_MODE": "auto",  # tools run unasked unless a test asks for approvals (test_approve_*)
    })
    return msgspec.structs.replace(settings, **overrides)


def key_of(chat_id: int) -> str:
    return f"{CHANNEL}:{chat_id}"


def chat_id_of(key: str) -> int:
    return int(key.split(":", 1)[1])


@dataclass
class Harness:
    """One data dir with its settings, model and outbox, and the runtimes started on it."""

    settings: Settings
    model: ScriptedModel
    outbox: RecordingOutbox
    actor_class: type[SessionActor] = SessionActor
    runtimes: list[Runtime] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)

    @property
    def runtime(self) -> Runtime:
        return self.runtimes[-1]

    def start(self, model: ScriptedModel | None = None) -> Runtime:
        """Start a Runtime on the data dir (the previous one must be shut down)."""
        if model is not None:
            self.model = model
        runtime = Runtime(self.settings, {CHANNEL: self.outbox}, self.model, actor_class=self.actor_class)
        self.runtimes.append(runtime)
        runtime.start()
        return runtime

    def shutdown(self, grace_s: float = 0.0) -> None:
        runtime = self.runtime
        if id(runtime) not in self.stopped:
            self.stopped.add(id(runtime))
            runtime.shutdown(grace_s=grace_s)

    def restart(self, model: ScriptedModel | None = None) -> Runtime:
        self.shutdown()
        return self.start(model)

    # -------------------------------------------------------------------- talking to it

    def say(self, key: str, text: str, user_id: int = 7) -> UserText:
        message = UserText(key=key, target=Target(channel=CHANNEL, chat_id=chat_id_of(key)),
                           sender=Sender(user_id=user_id, name="Tess"), text=text, at=time.time(),
                           chat_type="private")
        self.runtime.submit(message)
        return message

    def command(self, key: str, name: str, args: str = "", user_id: int = 7) -> None:
        self.runtime.submit(SessionCommand(key=key, target=Target(channel=CHANNEL, chat_id=chat_id_of(key)),
                                           sender=Sender(user_id=user_id, name="Tess"), name=name, args=args,
                                           chat_type="private"))

    def drain(self, key: str, timeout: float = WAIT_S) -> bool:
        """Whether the session answered everything it holds within `timeout`."""
        done = threading.Event()
        self.runtime.submit(Drain(key=key, done=done))
        return done.wait(timeout)

    def settle(self) -> None:
        """Return once the Supervisor has handled everything submitted before (it is FIFO)."""
        assert self.runtime.supervisor is not None
        self.runtime.supervisor.proxy().spawned.get(timeout=WAIT_S)

    def supervisor_value(self, name: str) -> Any:
        assert self.runtime.supervisor is not None
        return getattr(self.runtime.supervisor.proxy(), name).get(timeout=WAIT_S)

    # -------------------------------------------------------------------- reading the store

    def turns(self, key: str) -> list[Turn]:
        store = self.runtime.store
        header = store.header(key)
        assert header is not None, f"{key} has no header"
        return store.turns(key, header.generation)


class HarnessFactory:
    """Makes Harnesses on tmp_path and, on exit, shuts every runtime down and frees blocked model calls."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.harnesses: list[Harness] = []

    def __call__(self, model: ScriptedModel | None = None, outbox: RecordingOutbox | None = None,
                 actor_class: type[SessionActor] = SessionActor, start: bool = True,
                 **overrides: Any) -> Harness:
        root = self.tmp_path / f"h{len(self.harnesses)}"
        harness = Harness(settings=make_settings(root, **overrides), model=model or ScriptedModel(),
                          outbox=outbox or RecordingOutbox(), actor_class=actor_class)
        self.harnesses.append(harness)
        if start:
            harness.start()
        return harness

    def __enter__(self) -> HarnessFactory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        models = {id(h.model): h.model for h in self.harnesses}
        for harness in self.harnesses:
            models.update({id(r.model): r.model for r in harness.runtimes if isinstance(r.model, ScriptedModel)})
        try:
            for harness in self.harnesses:
                for runtime in harness.runtimes:
                    if id(runtime) not in harness.stopped:
                        harness.stopped.add(id(runtime))
                        runtime.shutdown(grace_s=0.0)
        finally:
            for model in models.values():
                model.close()
