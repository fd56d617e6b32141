"""Tests for the Messages API stand-in, driven by the real anthropic SDK over real HTTP.

Every behaviour vigil's end-to-end tests rely on is pinned here: what each directive answers, what
each strictness rule refuses, how the SDK sees retries, drops and mid-stream errors, and the
simulated prompt-cache counts. Timing checks wait on conditions and keep every delay under a second.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anthropic
import httpx2
import pytest

from tests.standins.messages_api import (
    DropStream,
    ErrorReply,
    Hang,
    MessagesAPI,
    RecordedRequest,
    StreamError,
    TextReply,
    ToolCall,
    ToolUseReply,
    filler_text,
)

MODEL = "claude-sonnet-5-5"
TOOL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"tz": {"type": "string"}}}
CLOCK_TOOLS: list[Any] = [
    {"name": "get_time", "description": "current time", "input_schema": TOOL_SCHEMA},
    {"name": "get_date", "description": "current date", "input_schema": TOOL_SCHEMA},
]


def ask(claude: anthropic.Anthropic, text: str, **kwargs: Any) -> anthropic.types.Message:
    kwargs.setdefault("max_tokens", 4096)
    message: anthropic.types.Message = claude.messages.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )
    return message


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# ---- basics -----------------------------------------------------------------------------------------


def test_echo_and_recorded_request(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
    )
    message = raw.parse()
    assert text_of(message) == "echo: hello there"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.model == MODEL
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 5  # ceil(len("echo: hello there") / 4)
    assert raw.headers["request-id"].startswith("req_")
    [recorded] = messages_api.wait_for_requests(1)
    assert recorded.stream is False
    assert recorded.refused is None
    assert recorded.last_user_text() == "hello there"
    assert recorded.headers["authorization"] == "Bearer test-key"
    assert recorded.headers["anthropic-version"]
    assert messages_api.errors == []


def test_streaming_text_event_sequence(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "[[reply=one two three]]"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert text_of(final) == "one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    # ping is swallowed by the SDK; "text" is its TextEvent derived from each text_delta.
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "text",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_raw_sse_wire_format(messages_api: MessagesAPI) -> None:
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    with httpx2.stream("POST", f"{messages_api.base_url}/v1/messages", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["request-id"].startswith("req_")
        wire = response.read().decode()
    names = [line.removeprefix("event: ") for line in wire.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = json.loads(wire.split("data: ", 1)[1].split("\n", 1)[0])
    assert start["message"]["usage"]["output_tokens"] == 1
    assert start["message"]["stop_reason"] is None
    assert set(start["message"]["usage"]) >= {
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    }


# ---- directives -------------------------------------------------------------------------------------


def test_reply_directive_keeps_any_characters(claude: anthropic.Anthropic) -> None:
    weird = 'multi\nline <b>"quoted"</b> [brackets] ] {json: 1} émoji 🎉'
    assert text_of(ask(claude, f"please [[reply={weird}]] thanks")) == weird


def test_len_directive_is_exact_deterministic_and_varied(claude: anthropic.Anthropic) -> None:
    first = text_of(ask(claude, "[[len=9500]]"))
    second = text_of(ask(claude, "again [[len=9500]]"))
    assert len(first) == 9500
    assert first == second == filler_text(9500)
    assert first == first.strip()
    paragraphs = first.split("\n\n")
    assert len(paragraphs) > 5
    line_lengths = {len(line) for line in first.splitlines() if line}
    assert min(line_lengths) < 20 and max(line_lengths) > 1000


def test_len_directive_is_cut_at_max_tokens(claude: anthropic.Anthropic) -> None:
    message = ask(claude, "[[len=9500]]", max_tokens=100)
    assert message.stop_reason == "max_tokens"
    assert len(text_of(message)) == 400


def test_delay_directive_waits_then_answers(claude: anthropic.Anthropic) -> None:
    started = time.monotonic()
    message = ask(claude, "[[delay=0.5]][[reply=late]]")
    assert time.monotonic() - started >= 0.5
    assert text_of(message) == "late"


def test_slow_directive_spreads_at_least_ten_deltas(claude: anthropic.Anthropic) -> None:
    arrivals: list[float] = []
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "[[slow=0.8]] short"}]
    ) as stream:
        started = time.monotonic()
        for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
        final = stream.get_final_message()
    assert text_of(final) == "echo: [[slow=0.8]] short"
    assert len(arrivals) >= 10
    assert arrivals[-1] - arrivals[0] >= 0.6


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
    ],
)
def test_error_directive(
    messages_api: MessagesAPI, claude: anthropic.Anthropic, status: int, error_class: type[Exception], error_type: str
) -> None:
    with pytest.raises(error_class) as caught:
        ask(claude, f"[[error={status}]]")
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.response.headers["request-id"].startswith("req_")
    if status in (429, 529):
        assert error.response.headers["retry-after"] == "0"
    assert messages_api.errors == []  # asked-for errors are not validation refusals


def test_sdk_retries_529_with_times_and_succeeds(messages_api: MessagesAPI) -> None:
    sdk = anthropic.Anthropic(api_key="test-key", base_url=messages_api.base_url, max_retries=2)
    started = time.monotonic()
    message = ask(sdk, "[[error=529 times=1]] retry me")
    assert time.monotonic() - started < 1  # retry-after-ms makes the SDK's retry immediate
    assert text_of(message) == "echo: [[error=529 times=1]] retry me"
    first, second = messages_api.wait_for_requests(2)
    assert first.body == second.body
    assert second.headers["x-stainless-retry-count"] == "1"
    # The directive is spent for this text: a new request with it succeeds at once.
    assert text_of(ask(sdk, "[[error=529 times=1]] retry me")).startswith("echo:")
    assert len(messages_api.requests) == 3
    sdk.close()


def test_error_without_times_fails_every_retry(messages_api: MessagesAPI) -> None:
    sdk = anthropic.Anthropic(api_key="test-key", base_url=messages_api.base_url, max_retries=2)
    with pytest.raises(anthropic.OverloadedError):
        ask(sdk, "[[error=529]]")
    assert len(messages_api.wait_for_requests(3)) == 3
    sdk.close()


def test_hang_times_out_the_client(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        ask(claude, "[[hang]]", timeout=0.5)
    assert time.monotonic() - started < 2


@pytest.mark.e2e
def test_hang_is_released_by_stop() -> None:
    server = MessagesAPI().start()
    sdk = anthropic.Anthropic(api_key="test-key", base_url=server.base_url, max_retries=0)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            ask(sdk, "[[hang]]", timeout=30)
        except BaseException as e:
            outcome.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert time.monotonic() - started < 3
    assert isinstance(outcome[0], anthropic.APIConnectionError)
    sdk.close()


def cut_mid_body(raised: BaseException) -> None:
    """The stand-in cut a chunked body mid-stream, as the SDK in the lock reports it: anthropic 2.17 wraps
    the transport's `RemoteProtocolError` in `APIConnectionError` (2.14 let it escape raw; vigil reads
    both the same way, vigil.model.failures)."""
    assert isinstance(raised, anthropic.APIConnectionError)
    assert isinstance(raised.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(raised.__cause__)


def test_drop_directive_cuts_the_stream_after_40_characters(claude: anthropic.Anthropic) -> None:
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIConnectionError) as caught,
        claude.messages.stream(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "[[drop=40]] tell me"}]
        ) as stream,
    ):
        received.extend(stream.text_stream)
    cut_mid_body(caught.value)
    assert len(received) > 1
    assert len("".join(received)) == 40


def test_drop_on_a_non_streaming_request_is_a_connection_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        ask(claude, "[[drop=10]]")


def test_stream_error_directive_surfaces_as_api_status_error(claude: anthropic.Anthropic) -> None:
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": "[[stream_error=overloaded]] go"}],
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert received
    # The error event travels on a 200 response: the SDK's class is picked by status, not error type.
    assert caught.value.status_code == 200
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_stream_error_on_a_non_streaming_request_is_a_529(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError):
        ask(claude, "[[stream_error=overloaded]]")


def test_tool_directives_run_round_by_round(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    text = 'what time? [[tool=get_time {"tz": "UTC"}]] [[tool=get_date {"tz": "a]]b"}]]'
    history: list[Any] = [{"role": "user", "content": text}]
    first = claude.messages.create(model=MODEL, max_tokens=500, tools=CLOCK_TOOLS, messages=history)
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use" and call.name == "get_time" and call.input == {"tz": "UTC"}
    assert call.id.startswith("toolu_")
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12:00"}]},
    ]
    second = claude.messages.create(model=MODEL, max_tokens=500, tools=CLOCK_TOOLS, messages=history)
    [call2] = second.content
    assert call2.type == "tool_use" and call2.name == "get_date" and call2.input == {"tz": "a]]b"}
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in second.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call2.id,
                    "content": [{"type": "text", "text": "no calendar"}],
                    "is_error": True,
                }
            ],
        },
    ]
    third = claude.messages.create(model=MODEL, max_tokens=500, tools=CLOCK_TOOLS, messages=history)
    assert third.stop_reason == "end_turn"
    assert text_of(third) == 'tool results: [{"content": "no calendar", "is_error": true}]'
    recorded = messages_api.wait_for_requests(3)[-1]
    assert recorded.last_user_text() == text
    assert "12:00" in recorded.all_text() and "no calendar" in recorded.all_text()
    assert messages_api.errors == []


def test_tool_use_streams_input_json(claude: anthropic.Anthropic) -> None:
    payload = {"tz": "Europe/Paris", "nested": {"list": [1, 2, 3], "text": "x" * 50}}
    tools: list[Any] = [{"name": "get_time", "input_schema": {"type": "object"}}]
    with claude.messages.stream(
        model=MODEL,
        max_tokens=500,
        tools=tools,
        messages=[{"role": "user", "content": f"[[tool=get_time {json.dumps(payload)}]]"}],
    ) as stream:
        json_events = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert len(json_events) > 2
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == payload


def test_tool_not_offered_is_answered_in_text(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=CLOCK_TOOLS,
        messages=[{"role": "user", "content": '[[tool=bash {"command": "ls"}]]'}],
    )
    assert message.stop_reason == "end_turn"
    assert text_of(message) == "tool bash not offered"


def test_heartbeat_default_is_silence_and_ignores_directives(messages_api: MessagesAPI,
                                                             claude: anthropic.Anthropic) -> None:
    tools: list[Any] = [{"name": "send_message", "input_schema": {"type": "object"}}]
    for text in ("heartbeat", "heartbeat [[reply=loud]] [[error=529]]"):
        message = claude.messages.create(
            model=MODEL, max_tokens=100, tools=tools, messages=[{"role": "user", "content": text}]
        )
        assert text_of(message) == "nothing to say"
        assert message.stop_reason == "end_turn"
    # A rule makes the heartbeat speak; the follow-up with the tool result is silent again.
    messages_api.add_rule(lambda b: True, ToolUseReply([ToolCall("send_message", {"text": "ping"})]), times=1)
    history: list[Any] = [{"role": "user", "content": "heartbeat"}]
    spoke = claude.messages.create(model=MODEL, max_tokens=100, tools=tools, messages=history)
    [call] = spoke.content
    assert call.type == "tool_use" and call.input == {"text": "ping"}
    history += [
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sent"}]},
    ]
    after = claude.messages.create(model=MODEL, max_tokens=100, tools=tools, messages=history)
    assert text_of(after) == "nothing to say"


def test_bad_directive_is_reported_in_text(claude: anthropic.Anthropic) -> None:
    assert text_of(ask(claude, "[[len=lots]]")).startswith("bad directive:")


def test_stop_sequence_ends_the_reply(claude: anthropic.Anthropic) -> None:
    message = ask(claude, "[[reply=one STOP two]]", stop_sequences=["STOP"])
    assert text_of(message) == "one "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"


# ---- rules ------------------------------------------------------------------------------------------


def test_rules_come_first_expire_and_clear(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    messages_api.add_rule(lambda b: "ruled" in json.dumps(b), TextReply("from rule"), times=1)
    messages_api.add_rule(lambda b: b["tools"][0]["name"] == "x", TextReply("never"))  # raises: no match
    messages_api.add_rule(lambda b: "callable" in json.dumps(b), lambda b: TextReply(f"{len(b['messages'])} messages"))
    assert text_of(ask(claude, "ruled [[reply=directive]]")) == "from rule"
    assert text_of(ask(claude, "ruled [[reply=directive]]")) == "directive"
    assert text_of(ask(claude, "callable")) == "1 messages"
    messages_api.clear_rules()
    assert text_of(ask(claude, "callable")) == "echo: callable"


def test_rule_tool_use_with_several_calls_and_text(claude: anthropic.Anthropic, messages_api: MessagesAPI) -> None:
    messages_api.add_rule(
        lambda b: True,
        ToolUseReply(
            [ToolCall("get_time", {"tz": "UTC"}), ToolCall("get_date", {}, id="toolu_fixed")],
            text="Let me check.",
        ),
        times=1,
    )
    message = claude.messages.create(
        model=MODEL, max_tokens=100, tools=CLOCK_TOOLS, messages=[{"role": "user", "content": "when?"}]
    )
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[2].type == "tool_use" and message.content[2].id == "toolu_fixed"
    assert message.stop_reason == "tool_use"


def test_rule_error_hang_drop_and_stream_error(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    messages_api.add_rule(lambda b: b["messages"][0]["content"] == "e",
                          ErrorReply(503, message="down", should_retry=False))
    messages_api.add_rule(lambda b: b["messages"][0]["content"] == "h", Hang())
    messages_api.add_rule(lambda b: b["messages"][0]["content"] == "d", DropStream("abcdefghij" * 5, after_chars=15))
    messages_api.add_rule(lambda b: b["messages"][0]["content"] == "s", StreamError("partial text here", after_chars=7))
    messages_api.add_rule(lambda b: b["messages"][0]["content"] == "w", TextReply("waited", delay=0.3))
    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        ask(claude, "e")
    assert caught.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(anthropic.APITimeoutError):
        ask(claude, "h", timeout=0.3)
    got: list[str] = []
    with (
        pytest.raises(anthropic.APIConnectionError) as cut,
        claude.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "d"}]) as s,
    ):
        got.extend(s.text_stream)
    cut_mid_body(cut.value)
    assert "".join(got) == "abcdefghijabcde"
    got.clear()
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "s"}]) as s,
    ):
        got.extend(s.text_stream)
    assert "".join(got) == "partial"
    started = time.monotonic()
    assert text_of(ask(claude, "w")) == "waited"
    assert time.monotonic() - started >= 0.3


# ---- strictness -------------------------------------------------------------------------------------

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "noon"}
USER: Any = {"role": "user", "content": "hi"}


def _msgs(*messages: Any) -> dict[str, Any]:
    return {"messages": list(messages)}


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("extra field", {"extra_body": {"temperature": 0.5}}, "temperature: Extra inputs are not permitted"),
    ("negative max_tokens", {"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
    (
        "max_tokens not int",
        {"extra_body": {"max_tokens": "9"}},
        "max_tokens: Input should be a valid integer",
    ),
    ("no messages", _msgs(), "messages: at least one message is required"),
    (
        "assistant first",
        _msgs({"role": "assistant", "content": "hi"}, USER),
        'first message must use the "user" role',
    ),
    ("two users", _msgs(USER, USER), 'found multiple "user" roles in a row'),
    (
        "system role",
        _msgs({"role": "system", "content": "x"}),
        "messages.0.role: Input should be 'user' or 'assistant'",
    ),
    (
        "empty string",
        _msgs({"role": "user", "content": ""}),
        "messages.0: all messages must have non-empty content",
    ),
    (
        "empty list",
        _msgs({"role": "user", "content": []}),
        "messages.0: all messages must have non-empty content",
    ),
    (
        "whitespace text",
        _msgs({"role": "user", "content": [{"type": "text", "text": " \n"}]}),
        "messages: text content blocks must contain non-whitespace text",
    ),
    (
        "empty text block",
        _msgs({"role": "user", "content": [{"type": "text", "text": ""}]}),
        "messages: text content blocks must be non-empty",
    ),
    (
        "prefill trailing whitespace",
        _msgs(USER, {"role": "assistant", "content": "Sure "}),
        "final assistant content cannot end with trailing whitespace",
    ),
    (
        "extra key in message",
        _msgs({"role": "user", "content": "hi", "chat_id": 5}),
        "messages.0.chat_id: Extra inputs are not permitted",
    ),
    (
        "extra key in text block",
        _msgs({"role": "user", "content": [{"type": "text", "text": "hi", "parsed_output": None}]}),
        "messages.0.content.0.parsed_output: Extra inputs are not permitted",
    ),
    (
        "unknown block type",
        _msgs({"role": "user", "content": [{"type": "txt", "text": "hi"}]}),
        "Input tag 'txt' found using 'type' does not match",
    ),
    (
        "tool_use without tool_result",
        {"tools": CLOCK_TOOLS, **_msgs(USER, {"role": "assistant", "content": [TOOL_USE]}, USER)},
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
    ),
    (
        "tool_result not first",
        {
            "tools": CLOCK_TOOLS,
            **_msgs(
                USER,
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": [{"type": "text", "text": "and"}, TOOL_RESULT]},
            ),
        },
        "messages.2: `tool_result` blocks must come first",
    ),
    (
        "tool_result with unknown id",
        {
            "tools": CLOCK_TOOLS,
            **_msgs(
                USER,
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": [TOOL_RESULT, {**TOOL_RESULT, "tool_use_id": "toolu_2"}]},
            ),
        },
        "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2",
    ),
    (
        "duplicate tool_use ids",
        {
            "tools": CLOCK_TOOLS,
            **_msgs(
                USER,
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": [TOOL_RESULT, {"type": "text", "text": "more"}]},
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": [TOOL_RESULT]},
            ),
        },
        "messages.3.content.0: `tool_use` ids must be unique: toolu_1",
    ),
    (
        "tool blocks without tools",
        _msgs(USER, {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": [TOOL_RESULT]}),
        "Requests which include `tool_use` or `tool_result` blocks must define tools.",
    ),
    (
        "system empty block",
        {"system": [{"type": "text", "text": ""}]},
        "system: text content blocks must contain",
    ),
    (
        "system not text",
        {"system": [{"type": "image", "source": {}}]},
        "system.0.type: Input should be 'text'",
    ),
    ("system number", {"system": 5}, "system: Input should be a valid string or a list of text blocks"),
    (
        "duplicate tool names",
        {"tools": [CLOCK_TOOLS[0], CLOCK_TOOLS[0]]},
        "tools: Tool names must be unique.",
    ),
    ("tool without schema", {"tools": [{"name": "t"}]}, "tools.0.custom.input_schema: Field required"),
    (
        "tool bad name",
        {"tools": [{"name": "a b", "input_schema": TOOL_SCHEMA}]},
        "tools.0.custom.name: String",
    ),
    (
        "bash with wrong name",
        {"tools": [{"type": "bash_20250124", "name": "shell"}]},
        "tools.0.bash_20250124.name: Input should be 'bash'",
    ),
    (
        "text editor extra key",
        {"tools": [{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "mode": "x"}]},
        "tools.0.text_editor_20250728.mode: Extra inputs are not permitted",
    ),
    (
        "five cache breakpoints",
        {
            "system": [{"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}} for i in range(5)],
        },
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    ),
    (
        "cache_control type",
        {"system": [{"type": "text", "text": "s", "cache_control": {"type": "persistent"}}]},
        "system.0.cache_control.type: Input should be 'ephemeral'",
    ),
    (
        "metadata extra key",
        {"metadata": {"user_id": "u", "chat": "c"}},
        "metadata.chat: Extra inputs are not permitted",
    ),
    (
        "tool_choice unknown tool",
        {"tools": CLOCK_TOOLS, "tool_choice": {"type": "tool", "name": "nope"}},
        "tool_choice.tool.name: Tool 'nope' not found in provided tools",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_validation_refuses(
    messages_api: MessagesAPI, claude: anthropic.Anthropic, overrides: dict[str, Any], expected: str
) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": [USER], **overrides}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(**kwargs)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert expected in caught.value.body["error"]["message"]
    [error] = messages_api.errors
    assert error["status"] == 400 and expected in error["message"]
    assert isinstance(error["body"], dict)
    [recorded] = messages_api.requests
    assert recorded.refused is not None and expected in recorded.refused


def test_valid_requests_with_every_feature_are_accepted(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    tools: list[Any] = [
        *CLOCK_TOOLS,
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 10000},
        {"type": "bash_20250124", "name": "bash", "cache_control": {"type": "ephemeral"}},
    ]
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "checking", "citations": None}, TOOL_USE]},
        {
            "role": "user",
            "content": [
                TOOL_RESULT,
                {"type": "text", "text": "and?", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "assistant", "content": "The answer is"},
    ]
    claude.messages.create(
        model="claude-anything-new",
        max_tokens=100,
        tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        metadata={"user_id": "u1"},
        stop_sequences=["\n\nHuman:"],
        thinking={"type": "disabled"},
        service_tier="auto",
        cache_control={"type": "ephemeral"},
        messages=messages,
    )
    ask(claude, "pre-warm", max_tokens=0)
    assert messages_api.errors == []


def test_unknown_model_is_not_found(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="gpt-9", max_tokens=10, messages=[USER])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "not_found_error", "message": "model: gpt-9"}
    assert messages_api.errors[0]["status"] == 404


def test_auth_and_version_headers(messages_api: MessagesAPI) -> None:
    bad = anthropic.Anthropic(api_key="wrong", base_url=messages_api.base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        ask(bad, "hi")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert messages_api.requests == []  # refused before it counts as a request
    assert messages_api.errors[-1]["status"] == 401
    bad.close()
    body = {"model": MODEL, "max_tokens": 10, "messages": [USER]}
    ok = httpx2.post(
        f"{messages_api.base_url}/v1/messages",
        json=body,
        headers={"x-api-key": "test-key", "anthropic-version": "2023-06-01"},
    )
    assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "echo: hi"
    no_version = httpx2.post(f"{messages_api.base_url}/v1/messages", json=body, headers={"x-api-key": "test-key"})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["message"] == "anthropic-version: header is required"
    not_json = httpx2.post(
        f"{messages_api.base_url}/v1/messages",
        content=b"{nope",
        headers={"x-api-key": "test-key", "anthropic-version": "2023-06-01"},
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"


# ---- caching ----------------------------------------------------------------------------------------


def test_prompt_cache_counts(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    system: list[Any] = [{"type": "text", "text": "You are vigil. " * 200, "cache_control": {"type": "ephemeral"}}]
    first_turn: list[Any] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first " * 50, "cache_control": {"type": "ephemeral"}}],
        }
    ]

    def usage(messages: list[Any]) -> anthropic.types.Usage:
        return claude.messages.create(model=MODEL, max_tokens=200, system=system, messages=messages).usage

    cold = usage(first_turn)
    assert cold.cache_read_input_tokens == 0
    assert cold.cache_creation_input_tokens and cold.cache_creation_input_tokens > 750
    assert cold.cache_creation is not None
    assert cold.cache_creation.ephemeral_5m_input_tokens == cold.cache_creation_input_tokens
    warm = usage(first_turn)
    assert warm.cache_read_input_tokens == cold.cache_creation_input_tokens
    assert warm.cache_creation_input_tokens == 0
    assert warm.input_tokens == cold.input_tokens
    # The next turn moves the message breakpoint: the old prefix is read, the new part written.
    later: list[Any] = [
        {"role": "user", "content": "first " * 50},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    grown = usage(later)
    assert grown.cache_read_input_tokens == cold.cache_creation_input_tokens
    assert grown.cache_creation_input_tokens and 0 < grown.cache_creation_input_tokens < 40
    # A different system prompt shares nothing.
    system[0] = {**system[0], "text": "You are someone else. " * 200}
    other = usage(first_turn)
    assert other.cache_read_input_tokens == 0
    messages_api.clear_cache()
    system[0] = {**system[0], "text": "You are vigil. " * 200}
    assert usage(first_turn).cache_read_input_tokens == 0


def test_prompt_cache_respects_minimum(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    messages_api.min_cache_tokens = 1024
    system: list[Any] = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        used = claude.messages.create(model=MODEL, max_tokens=20, system=system, messages=[USER]).usage
        assert used.cache_read_input_tokens == 0 and used.cache_creation_input_tokens == 0


# ---- waiting, helpers, models -----------------------------------------------------------------------


def test_wait_for_requests_waits_and_times_out(messages_api: MessagesAPI) -> None:
    sdk = anthropic.Anthropic(api_key="test-key", base_url=messages_api.base_url, max_retries=0)
    threads = [threading.Thread(target=ask, args=(sdk, f"[[delay=0.2]] n{i}")) for i in range(3)]
    for t in threads:
        t.start()
    recorded = messages_api.wait_for_requests(3, timeout=5)
    assert sorted(r.last_user_text() for r in recorded) == [f"[[delay=0.2]] n{i}" for i in range(3)]
    for t in threads:
        t.join()
    with pytest.raises(AssertionError, match="expected 4 requests"):
        messages_api.wait_for_requests(4, timeout=0.1)
    sdk.close()


def test_recorded_request_helpers() -> None:
    body = {
        "system": [{"type": "text", "text": "SYS"}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "INPUT"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "RESULT"}]},
        ],
    }
    recorded = RecordedRequest(body=body, headers={}, stream=False)
    assert recorded.last_user_text() == "line one\nline two"
    everything = recorded.all_text()
    for word in ("SYS", "line one", "INPUT", "RESULT"):
        assert word in everything


def test_models_endpoints(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    models = claude.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids and all(i.startswith("claude-") for i in ids)
    assert claude.models.retrieve(MODEL).display_name == "Claude Sonnet 5.5"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("gpt-9")


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x" * 400}])
    assert counted.input_tokens >= 100
