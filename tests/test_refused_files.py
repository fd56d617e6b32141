"""Files the model service refuses, through the real actors over a real store (actors/turns/refused_files.py).

The scripted model refuses requests as the Messages API does (a bad_request `ModelError` whose detail is
the API's message, naming the refused block or not); every request it answers is checked by the
stand-in's validator. The end-to-end case (a PDF the stand-in itself refuses) is in
tests/test_refused_files_e2e.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes import CHANNEL, Custom, Harness, HarnessFactory, chat_id_of, check_request, key_of, response
from tests.media_samples import jpeg
from vigil.actors.core.protocol import Sender, UserText
from vigil.actors.turns.refused_files import MAX_REMEMBERED, reason_of, remember
from vigil.cancel import CancelToken
from vigil.errors import ModelError
from vigil.media.attachments import ingest
from vigil.ports import ModelRequest, ModelResponse
from vigil.records.schema import Attachment, Target

BAD = "Could not process image"
TextSink = Callable[[str], None]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[HarnessFactory]:
    with HarnessFactory(tmp_path) as factory:
        yield factory


def send(h: Harness, key: str, text: str, *attachments: Attachment) -> None:
    h.runtime.submit(UserText(key=key, target=Target(channel=CHANNEL, chat_id=chat_id_of(key)),
                              sender=Sender(user_id=7, name="Tess"), text=text, at=time.time(),
                              chat_type="private", attachments=attachments))


def images(request: ModelRequest) -> list[bytes]:
    return [base64.b64decode(b["source"]["data"]) for m in request.messages for b in m["content"]
            if b.get("type") == "image"]


def picky(bad: bytes, name_the_block: bool = True, refuse_always: bool = False) -> Custom:
    """Refuses a request that carries `bad` as an image, as the API does; else echoes the last text."""

    def answer(request: ModelRequest, on_text: TextSink, cancel: CancelToken) -> ModelResponse:
        for m, message in enumerate(request.messages):
            for b, block in enumerate(message["content"]):
                if block.get("type") == "image" and base64.b64decode(block["source"]["data"]) == bad:
                    detail = f"messages.{m}.content.{b}.image.source.base64: {BAD}" if name_the_block else BAD
                    raise ModelError(f"The model service refused the request ({detail}).", "bad_request",
                                     detail=detail)
        if refuse_always:
            raise ModelError("The model service refused the request (Invalid request).", "bad_request",
                             detail="Invalid request")
        check_request(request)
        text = next(b["text"] for b in reversed(request.messages[-1]["content"]) if b.get("type") == "text")
        on_text(f"ok: {text}")
        return response(f"ok: {text}", model=request.model)

    return Custom(answer)


def test_the_refused_image_alone_becomes_a_line_and_stays_one(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    good, bad = jpeg(seed=1), jpeg(seed=2)
    script = picky(bad)
    h.model.choose = lambda request: script
    send(h, key, "compare", ingest(h.runtime.media, good), ingest(h.runtime.media, bad))
    [(reply, note)] = h.outbox.wait_finished(key, 1)
    assert reply == "ok: compare"
    assert note == f"⚠️ I couldn't read the photo: {BAD}"
    first, mended = h.model.requests
    assert images(first) == [good, bad] and images(mended) == [good], "the readable photo still goes"
    assert "[image: the model service could not read it, so it is left out]" in str(mended.messages)

    h.restart()
    before = h.model.calls
    h.say(key, "and now?")
    assert h.outbox.wait_finished(key, 2)[-1] == ("ok: and now?", "")
    assert h.model.calls == before + 1, "after a restart the refused photo is sent as a line from the start"
    assert images(h.model.requests[-1]) == [good]


def test_a_refusal_naming_no_block_retries_once_with_every_file_as_a_line(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    bad = jpeg(seed=3)
    script = picky(bad, name_the_block=False)
    h.model.choose = lambda request: script
    send(h, key, "what is it?", ingest(h.runtime.media, bad, name="scan.jpg"))
    [(reply, note)] = h.outbox.wait_finished(key, 1)
    assert (reply, note) == ("ok: what is it?", f"⚠️ I couldn't read scan.jpg: {BAD}")
    assert h.model.calls == 2
    h.say(key, "next")
    assert h.outbox.wait_finished(key, 2)[-1] == ("ok: next", "")
    assert h.model.calls == 3 and images(h.model.requests[-1]) == []


def test_a_refusal_that_is_not_about_the_files_blames_none_of_them(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    photo = jpeg(seed=4)
    failing = picky(b"", name_the_block=False, refuse_always=True)
    h.model.choose = lambda request: failing
    send(h, key, "look", ingest(h.runtime.media, photo))
    [(_, note)] = h.outbox.wait_finished(key, 1)
    assert note == "⚠️ The model service refused the request (Invalid request)."
    assert h.model.calls == 2, "one retry without the files, not more"
    working = picky(b"")
    h.model.choose = lambda request: working
    h.say(key, "again")
    assert h.outbox.wait_finished(key, 2)[-1] == ("ok: again", "")
    assert images(h.model.requests[-1]) == [photo], "the photo was not blamed: it is still carried"


def test_the_api_path_is_cut_from_the_reason_and_the_list_stays_bounded() -> None:
    assert reason_of("messages.3.content.0.document.source.base64.data: The PDF specified was not valid.") == \
        "The PDF specified was not valid."
    assert reason_of("Invalid request") == "Invalid request"
    photo = Attachment(kind="image", digest="d" * 64, media_type="image/jpeg")
    many = tuple(f"{i:064x}" for i in range(MAX_REMEMBERED))
    kept = remember(many, [(photo, "x"), (photo, "x")])
    assert len(kept) == MAX_REMEMBERED and kept[-1] == photo.digest and many[0] not in kept
    assert remember(kept, [(photo, "x")]) == kept
