"""What a failed model call was, told by what happened rather than by which exception class said so.

Why by what happened. The SDK's exceptions for one event change between releases: a stream cut in the
middle of an answer surfaced as the transport's own `httpx2.RemoteProtocolError` in anthropic 2.14 and
as `anthropic.APIConnectionError` ("peer closed connection without sending complete message body") in
2.17, the class 2.14 used only for a connection that never opened. Read by class, the same cut answer
became "I couldn't reach the model service" after an upgrade. So the call records whether any stream
event arrived (`started`), and that decides between the two things a user can tell apart:

- nothing arrived: the service could not be reached (or refused, or timed out before answering);
- something arrived: the answer broke off, whatever the SDK called the break (a transport error, its
  wrapper `APIConnectionError`, an SSE `error` event raised as `APIStatusError` with status 200, a read
  timeout). What was streamed stays in the reply and in the history (`AnthropicModel._partial`).

An exception that is neither the SDK's nor the transport's is a fault in vigil's own code (a callback
that raised), not the network's: it reads as such, and is logged with its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

from vigil.ports import ModelErrorKind
from vigil.text import one_line

_TRANSPORT_MODULES = ("httpx", "httpcore", "h11", "h2", "anyio", "ssl", "socket")

UNREACHABLE = "I couldn't reach the model service (network error); please try again."
BROKE_OFF = "The answer broke off: the connection to the model service was cut mid-reply; please try again."
INTERNAL = "Something went wrong inside vigil while answering; please try again."


def explain(exc: BaseException, started: bool = False) -> tuple[ModelErrorKind, str]:
    """(kind, one plain sentence for the user) for a call that failed after the SDK's retries.

    `started`: whether any event of the response's stream arrived before the failure.
    """
    import anthropic

    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return "auth", ("The model service refused vigil's API key, so I can't answer right now; "
                        "the operator needs to check ANTHROPIC_API_KEY.")
    if isinstance(exc, anthropic.RateLimitError):
        return "rate_limited", "The model service is rate-limiting us right now; please try again in a minute."
    if isinstance(exc, anthropic.NotFoundError):
        return "not_found", "The model service doesn't know this session's model; pick another with /model."
    if isinstance(exc, anthropic.BadRequestError):
        message = getattr(exc, "message", str(exc))
        return "bad_request", f"The model service refused the request ({one_line(str(message), 160)})."
    overloaded = "overloaded" in str(exc).lower()
    if started:
        return _broke_off(exc, overloaded)
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code == 529 or overloaded:
            return "overloaded", "The model service is overloaded right now; please try again shortly."
        return "server_error", (f"The model service had an error (HTTP {exc.status_code}); "
                                "please try again shortly.")
    if isinstance(exc, anthropic.APITimeoutError) or _timed_out(exc):
        return "timeout", "The model service took too long to answer; please try again."
    if isinstance(exc, anthropic.APIConnectionError) or is_transport(exc):
        return "unreachable", UNREACHABLE
    return "internal", INTERNAL


def _broke_off(exc: BaseException, overloaded: bool) -> tuple[ModelErrorKind, str]:
    """A response had begun to arrive: whatever the cause, the user saw an answer stop."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):  # an SSE `error` event inside the 200 response
        if overloaded:
            return "overloaded", ("The model service became overloaded and the answer broke off; "
                                  "please try again shortly.")
        return "server_error", "The model service had an error and the answer broke off; please try again shortly."
    if isinstance(exc, anthropic.APITimeoutError) or _timed_out(exc):
        return "timeout", ("The model service stopped sending mid-reply, so the answer broke off; "
                           "please try again.")
    if isinstance(exc, anthropic.APIConnectionError) or is_transport(exc):
        return "dropped", BROKE_OFF
    return "internal", INTERNAL


def is_transport(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is the network's: an OSError or an error of
    the HTTP stack under the SDK (httpx or httpx2, httpcore, h11...), whatever its release calls it."""
    return any(isinstance(link, OSError) or _of_transport(link) for link in _chain(exc))


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(link, TimeoutError) or (_of_transport(link) and "Timeout" in type(link).__name__)
               for link in _chain(exc))


def _of_transport(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in _TRANSPORT_MODULES or root.rstrip("0123456789") in _TRANSPORT_MODULES:
            return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
