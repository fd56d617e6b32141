"""Streaming an answer as the API does: server-sent events over a chunked body, text in deltas (spread
over time when a test asks for a slow stream), tool input as partial JSON (a server tool's too), a
server tool's result whole, citations as deltas after their text, and the two ways a stream goes
wrong (a cut without ``message_stop``, an ``error`` event).

The event order and shapes are the ones the anthropic SDK's stream accumulator expects, including the
empty first ``input_json_delta`` and the ping after the first block starts.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tests.standins.messages_api.connection import Disconnected, Handler, wait
from tests.standins.messages_api.script import Plan
from tests.standins.messages_api.thinking import stream_block as stream_thinking


def stream(handler: Handler, stopping: threading.Event, message: dict[str, Any], plan: Plan, request_id: str) -> None:
    handler.start_chunked(200, "text/event-stream; charset=utf-8", request_id)

    def send(event: str, data: dict[str, Any]) -> None:
        if stopping.is_set():
            raise Disconnected
        handler.write_chunk(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    send("message_start", {"type": "message_start", "message": start})

    text_pieces = _split_text(message, plan)
    delta_count = sum(len(pieces) for pieces in text_pieces.values())
    pause = plan.seconds / delta_count if plan.seconds > 0 and delta_count else 0.0
    sent_chars = 0
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            # A text that cites starts with an empty citations list; each citation comes as a delta.
            opening = {"type": "text", "text": "", **({"citations": []} if block.get("citations") else {})}
            send(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
            if index == 0:
                send("ping", {"type": "ping"})
            for piece in text_pieces[index]:
                if plan.drop_after is not None and sent_chars >= plan.drop_after:
                    handler.cut()
                    return
                if plan.stream_error is not None and sent_chars >= plan.stream_error_after:
                    _send_stream_error(send, handler, plan.stream_error)
                    return
                if plan.drop_after is not None:
                    piece = piece[: plan.drop_after - sent_chars]
                elif plan.stream_error is not None:
                    piece = piece[: plan.stream_error_after - sent_chars]
                wait(handler, stopping, pause)
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
                sent_chars += len(piece)
            for citation in block.get("citations") or []:
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "citations_delta", "citation": citation},
                    },
                )
        elif block["type"] == "thinking":
            def slowly(pieces: int, seconds: float = plan.thinking_seconds) -> None:
                wait(handler, stopping, seconds / pieces if seconds else 0.0)

            if not stream_thinking(send, handler, index, block, plan.thinking_drop, slowly):
                return
        elif block["type"] not in ("tool_use", "server_tool_use"):
            # A server tool's result arrives whole in its content_block_start.
            send("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        else:
            start_block = {**block, "input": {}}
            send(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start_block},
            )
            if index == 0:
                send("ping", {"type": "ping"})
            # The API's first input_json_delta is empty; the SDK must cope, so the stand-in does it too.
            raw = json.dumps(block["input"])
            for piece in ["", *(raw[i : i + 16] for i in range(0, len(raw), 16))]:
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        send("content_block_stop", {"type": "content_block_stop", "index": index})
        if block["type"] == "server_tool_use" and (plan.search_hang or (plan.web is not None
                                                                         and plan.web.hang_in_search)):
            wait(handler, stopping, math.inf)  # the search runs on and on: only a hang-up or stop() ends it
    if plan.drop_after is not None:
        handler.cut()
        return
    if plan.stream_error is not None:
        _send_stream_error(send, handler, plan.stream_error)
        return
    if not message["content"]:
        send("ping", {"type": "ping"})
    delta_usage = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "output_tokens": usage["output_tokens"],
        **({"server_tool_use": usage["server_tool_use"]} if "server_tool_use" in usage else {}),
    }
    send(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            "usage": delta_usage,
        },
    )
    send("message_stop", {"type": "message_stop"})
    handler.end_chunked()


def _send_stream_error(
    send: Callable[[str, dict[str, Any]], None], handler: Handler, error: tuple[str, str]
) -> None:
    # The API ends the stream cleanly after an error event; the failure is in the payload.
    send("error", {"type": "error", "error": {"type": error[0], "message": error[1]}})
    handler.end_chunked()


def _split_text(message: dict[str, Any], plan: Plan) -> dict[int, list[str]]:
    """Text deltas per text block: ~32 characters each, or at least ``plan.min_deltas`` of them
    when the stream is slowed down (so "slow" really arrives in many pieces)."""
    pieces: dict[int, list[str]] = {}
    for index, block in enumerate(message["content"]):
        if block["type"] != "text":
            continue
        text = block["text"]
        count = max(1, math.ceil(len(text) / 32))
        if plan.seconds > 0:
            count = max(count, plan.min_deltas)
        if plan.drop_after is not None or plan.stream_error is not None:
            # Several deltas before the cut, so "some text arrived, then it broke" is what is tested.
            count = max(count, math.ceil(len(text) / 10))
        count = min(count, len(text))
        pieces[index] = list(_even_split(text, count))
    return pieces


def _even_split(text: str, count: int) -> Iterator[str]:
    size, extra = divmod(len(text), count)
    at = 0
    for i in range(count):
        end = at + size + (1 if i < extra else 0)
        yield text[at:end]
        at = end
