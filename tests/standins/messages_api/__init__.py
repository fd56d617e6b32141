"""A loopback stand-in for the Anthropic Messages API, as strict as the real one.

vigil's end-to-end tests start ``vigil`` as a subprocess with ``ANTHROPIC_BASE_URL`` pointing at
:class:`MessagesAPI`, so the real ``anthropic`` SDK talks to it over real HTTP. The server therefore
has to look exactly like the API on the wire (status codes, error JSON, SSE framing, headers), and it
refuses every malformed request the real API would refuse -- more strictly in places (roles must
alternate) -- so a bug in how vigil builds requests fails a test instead of failing in production.

What it answers is decided, in this order, by:

1. rules added with :meth:`MessagesAPI.add_rule` (a predicate over the request body and a
   :data:`Responder`), checked in insertion order;
2. vigil's summarisation call (compaction: its system prompt begins ``You are compacting a
   conversation``, see ``content.is_summary_request``) is answered ``summary: `` and the users' lines of
   the transcript (with the earlier summary in brackets first), its directives not read; a heartbeat
   turn (the request offers a ``send_message`` tool) is answered ``nothing to say`` (silence) -- its
   directives are not read either;
3. directives in the text of the current turn's user message (``[[reply=...]]``, ``[[len=N]]``,
   ``[[delay=S]]``, ``[[slow=S]]``, ``[[error=STATUS times=K]]``, ``[[hang]]``, ``[[drop=N]]``,
   ``[[stream_error=overloaded]]``, ``[[tool=NAME {json}]]``, and the API's own web tools:
   ``[[search=QUERY]]``, ``[[fetch=URL]]``, ``[[pause]]``, ``[[search_hang]]``, see ``server_tools``; the
   tool search tool: ``[[tool_search=QUERY]]``, with ``[[search_hang]]`` a search that never ends, see
   ``tool_search``), so
   tests that only control what the user types can still steer the model. The current turn's user
   message is the latest one with a text block: user messages made only of tool_result blocks
   continue the turn;
4. the default: ``echo: <the current turn's user text>`` (directives included, verbatim), or
   ``tool results: [...]`` when the request ends with tool results nobody scripted an answer for.

Server tool blocks (``server_tool_use``, its result, citations) it served must come back byte for byte,
paired, and complete but at the very end of a request (``server_tools``).

With thinking on (``thinking`` enabled or adaptive, or a model made to think by default with
:meth:`MessagesAPI.think_by_default`) every answer starts with a signed ``thinking`` block
(``[[redacted_thinking]]`` adds a ``redacted_thinking`` one, ``[[think_drop=N]]`` cuts the stream while
thinking); a continuation must bring them back unchanged and in place (``thinking``).

Images and documents are held to the API's limits (see ``media``): image media types and base64 that
must match the bytes' real format, 5 MB of base64 per image, 8000 px a side (2000 px beyond 20 images),
100 images; PDFs that are PDFs with at most 100 pages, text documents in ``text/plain``; no document in
an assistant message; a request body over 32 MB is 413 ``request_too_large``. ``RecordedRequest.media()``,
``.images()`` and ``.documents()`` give a test the decoded bytes of what reached the "model".

Standard library only: ``http.server.ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread.

Things about the SDK (anthropic 2.12 to 2.17, on httpx2) that shaped this file:

* the SDK authenticates with ``Authorization: Bearer <api_key>``, not ``x-api-key``; both are accepted;
* it retries 408, 409, 429 and every status >= 500, honouring ``retry-after-ms`` first and then
  ``retry-after``, but only when the value is > 0: ``retry-after: 0`` falls back to its exponential
  backoff (0.5 s, 1 s, ...). Directive errors therefore also send ``retry-after-ms: 10``;
* an SSE ``error`` event arrives on a 200 response, so the SDK raises a plain ``APIStatusError``
  (not ``OverloadedError``) from the stream iterator, and never retries it;
* a stream cut mid-body surfaces from the iterator as ``APIConnectionError`` caused by
  ``httpx2.RemoteProtocolError`` in 2.17 (the raw ``RemoteProtocolError`` in 2.14), and is not retried
  either way: vigil tells it by whether events had arrived, not by the class. That only works because
  the stream uses chunked transfer encoding: a close-delimited body would make a dropped connection
  look like a normal end. A non-streaming request cut mid-body is an ``APIConnectionError`` and *is*
  retried;
* a hang ends in ``APITimeoutError``, which is also retried: with the default ``max_retries=2`` a
  0.3 s timeout takes ~2 s (three attempts plus backoff) before the caller sees it.

The package, by job (a new responder goes in ``responders`` and ``script``; a new check of requests in
``validator`` or ``conversation``; a new endpoint in ``server``):

* ``standin``: `MessagesAPI`, the face; ``state``: what it remembers; ``responders``: what a test can
  ask for; ``content``: reading a request's messages, `RecordedRequest`;
* ``validator``, ``conversation``, ``checks``, ``errors``: refusing what the API refuses, in its words;
  ``media``: image and document blocks (refused, read back decoded, billed by the API's estimate);
* ``script``, ``directives``, ``filler``: deciding the answer; ``reply``, ``usage``: the message and
  its token counts with the prompt cache; ``sse``: streaming it; ``thinking``: thinking blocks, signed,
  streamed and checked;
* ``server``: the routes; ``connection``: one HTTP connection (JSON, chunks, cuts, hang-ups).
"""

from __future__ import annotations

from tests.standins.messages_api.content import RecordedRequest, is_summary_request
from tests.standins.messages_api.filler import filler_text
from tests.standins.messages_api.media import MediaBlock
from tests.standins.messages_api.responders import (
    DropStream,
    ErrorReply,
    Hang,
    Responder,
    StreamError,
    TextReply,
    ToolCall,
    ToolUseReply,
    WebReply,
)
from tests.standins.messages_api.standin import MessagesAPI
from tests.standins.messages_api.validator import Validator, validate_request

# tests/fakes.py looks the validator up by this name, to hold the scripted model to the stand-in's rules.
_Validator = Validator

__all__ = [
    "DropStream",
    "ErrorReply",
    "Hang",
    "MediaBlock",
    "MessagesAPI",
    "RecordedRequest",
    "Responder",
    "StreamError",
    "TextReply",
    "ToolCall",
    "ToolUseReply",
    "WebReply",
    "filler_text",
    "is_summary_request",
    "validate_request",
]
