"""End to end: a file the Messages API refuses never breaks the chat, through `vigil run`.

The PDF here hides its 150 pages in a compressed object stream: vigil's cheap checks take it as a
short PDF, the Messages API stand-in parses it as the API does and refuses the request (400,
"A maximum of 100 PDF pages may be provided."). The turn must still get an answer that says which file
could not be read, and no later turn (after a restart too) may send the file again.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from tests.media_samples import pdf, pdf_in_object_streams
from tests.rig import Rig
from tests.standins.messages_api import RecordedRequest

pytestmark = pytest.mark.e2e

REFUSED = "A maximum of 100 PDF pages may be provided."


def documents(request: RecordedRequest) -> list[bytes]:
    return [base64.b64decode(b["source"]["data"]) for m in request.body["messages"]
            if isinstance(m.get("content"), list) for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "document" and b["source"].get("type") == "base64"]


def test_a_pdf_the_api_refuses_is_named_to_the_user_and_later_turns_work(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    ann = rig.person("Ann")
    big = pdf_in_object_streams(150)
    sent = rig.bot.send_document(ann.id, ann.id, big, "report.pdf", "application/pdf", caption="summarize report")
    answer = rig.answer(ann.id, sent, "echo:", timeout=20)
    told = rig.answer(ann.id, sent, "I couldn't read report.pdf")
    assert f"I couldn't read report.pdf: {REFUSED}" in told.text
    assert "summarize report" in answer.text
    [error] = rig.api.errors
    assert error["status"] == 400 and REFUSED in error["message"]
    refused, request = rig.requests_with("summarize report")  # the refused call, then the same call mended
    assert documents(refused) == [big] and documents(request) == []
    assert "report.pdf: the model service could not read it" in request.all_text()
    assert "uploads/report.pdf" in request.all_text(), "the file is still in the workspace for the tools"
    assert (rig.tmp / "work" / "users" / str(ann.id) / "uploads" / "report.pdf").read_bytes() == big

    later = rig.say(ann.id, ann, "what else can you do?")
    rig.answer(ann.id, later, "echo: what else can you do?")
    [next_request] = rig.requests_with("what else can you do?")
    assert documents(next_request) == [] and len(rig.api.errors) == 1, "the file is not sent again"
    assert "report.pdf: the model service could not read it" in next_request.all_text()

    rig.stop()
    rig.start()
    good = pdf(2)
    after = rig.bot.send_document(ann.id, ann.id, good, "short.pdf", "application/pdf", caption="and this one?")
    rig.answer(ann.id, after, "echo:", timeout=20)
    [third] = rig.requests_with("and this one?")
    assert documents(third) == [good], "after a restart the refused file stays out, a readable one goes in"
    assert len(rig.api.errors) == 1
    assert "I couldn't read" not in " ".join(m.text for m in rig.replies(ann.id, after))
