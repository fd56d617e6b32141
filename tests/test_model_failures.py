"""How a failed model call reads, for the shapes every anthropic release in range raises.

The end-to-end tests (tests/test_console_e2e.py) cut real streams through the SDK in the lock; these
build the exceptions of the other releases in range by hand, so both shapes are checked on every run:
2.14 let the transport's `httpx2.RemoteProtocolError` escape a cut stream, 2.17 wraps it in
`APIConnectionError`, the class a refused connection also gets.
"""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from vigil.model.failures import BROKE_OFF, INTERNAL, UNREACHABLE, explain, is_transport

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")


def wrapped(cause: BaseException) -> anthropic.APIConnectionError:
    """What anthropic 2.17 raises from a stream iterator whose transport failed."""
    try:
        raise anthropic.APIConnectionError(message=f"Connection failed: {cause}", request=REQUEST) from cause
    except anthropic.APIConnectionError as exc:
        return exc


CUT = httpx2.RemoteProtocolError("peer closed connection without sending complete message body "
                                 "(incomplete chunked read)")
REFUSED = httpx2.ConnectError("[Errno 111] Connection refused")


def sse_error(kind: str) -> anthropic.APIStatusError:
    """An SSE `error` event inside a 200 response, as the SDK raises it from the iterator."""
    body = {"type": "error", "error": {"type": kind, "message": kind.replace("_error", "")}}
    return anthropic.APIStatusError(str(body), response=httpx2.Response(200, request=REQUEST), body=body)


@pytest.mark.parametrize("raised", [CUT, wrapped(CUT)], ids=["2.14 raw transport error", "2.17 wrapped"])
def test_a_stream_cut_after_events_arrived_broke_off_on_every_release(raised: BaseException) -> None:
    assert explain(raised, started=True) == ("dropped", BROKE_OFF)


@pytest.mark.parametrize("raised", [REFUSED, wrapped(REFUSED), ConnectionRefusedError(111, "refused")],
                         ids=["transport", "2.17 wrapped", "os"])
def test_a_connection_that_never_opened_is_unreachable(raised: BaseException) -> None:
    assert explain(raised, started=False) == ("unreachable", UNREACHABLE)


def test_the_same_exception_reads_by_what_happened() -> None:
    """One class, two events: whether any stream event had arrived decides."""
    assert explain(wrapped(CUT), started=False)[0] == "unreachable"
    assert explain(wrapped(CUT), started=True)[0] == "dropped"


def test_an_error_event_inside_the_stream_says_the_answer_broke_off_and_why() -> None:
    kind, sentence = explain(sse_error("overloaded_error"), started=True)
    assert kind == "overloaded"
    assert "overloaded" in sentence and "broke off" in sentence
    kind, sentence = explain(sse_error("api_error"), started=True)
    assert kind == "server_error" and "broke off" in sentence


def test_a_read_timeout_mid_stream_broke_off_and_before_it_took_too_long() -> None:
    timeout = httpx2.ReadTimeout("timed out")
    assert explain(timeout, started=True)[0] == "timeout"
    assert "broke off" in explain(timeout, started=True)[1]
    assert explain(anthropic.APITimeoutError(request=REQUEST), started=False) == (
        "timeout", "The model service took too long to answer; please try again.")


def test_status_errors_before_the_stream_keep_their_meaning() -> None:
    overloaded = anthropic.APIStatusError("overloaded", response=httpx2.Response(529, request=REQUEST), body=None)
    assert explain(overloaded)[0] == "overloaded"
    failed = anthropic.InternalServerError("boom", response=httpx2.Response(500, request=REQUEST), body=None)
    assert explain(failed) == ("server_error", "The model service had an error (HTTP 500); please try again shortly.")
    denied = anthropic.AuthenticationError("no", response=httpx2.Response(401, request=REQUEST), body=None)
    assert explain(denied, started=True)[0] == "auth"


def test_a_fault_in_vigils_own_code_is_not_blamed_on_the_network() -> None:
    assert not is_transport(ValueError("a callback raised"))
    assert explain(ValueError("a callback raised"), started=True) == ("internal", INTERNAL)
    assert explain(KeyError("x"), started=False) == ("internal", INTERNAL)
