"""End to end: everything a Telegram user sends reaches the turn (issue 12), through `vigil run`.

Real PTB over HTTP against the Bot API stand-in (photos, albums, documents, voice notes served by
getFile and file downloads), the real anthropic SDK against the Messages API stand-in, which records
each request: the tests read the image and document blocks vigil built out of them. Voice runs
against the faster_whisper stand-in (tests/standins/speech), put on the subprocess's PYTHONPATH as the
`voice` extra would be installed; no whisper model can be fetched here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import media_samples
from tests.rig import BOT, Rig
from tests.standins.bot_api import ForwardOrigin, Message
from tests.standins.images import make_jpeg, make_png
from tests.standins.messages_api import RecordedRequest
from tests.standins.speech.faster_whisper import voice_bytes

pytestmark = pytest.mark.e2e

SPEECH = Path(__file__).parent / "standins" / "speech"
RIG_SETTINGS = {"PYTHONPATH": str(SPEECH)}  # the module's shared vigil has the voice extra's stand-in
TOO_BIG = "larger than the 20 MB"
NO_EXTRA = "pip install 'vigil[voice]'"


def blocks(request: RecordedRequest, kind: str, last_only: bool = True) -> list[dict[str, Any]]:
    """The `kind` blocks ("image", "document") of the request's last user message (or of all messages)."""
    messages = request.body["messages"]
    chosen = [messages[-1]] if last_only else messages
    return [b for m in chosen if isinstance(m.get("content"), list) for b in m["content"]
            if isinstance(b, dict) and b.get("type") == kind]


def data_of(block: dict[str, Any]) -> bytes:
    source = block["source"]
    assert source["type"] == "base64", source["type"]
    return base64.b64decode(source["data"])


def uploads_of(rig: Rig, user_id: int) -> Path:
    return rig.tmp / "work" / "users" / str(user_id) / "uploads"


# ------------------------------------------------------------------------------------------- photos


def test_a_photo_with_a_caption_is_one_request_with_exactly_those_bytes(rig: Rig) -> None:
    ann = rig.person("Ann")
    photo = make_jpeg(800, 600, level=90)
    sent = rig.bot.send_photo(ann.id, ann.id, photo, caption="what is this?")
    request = rig.wait_request("what is this?")
    rig.answer(ann.id, sent, "echo:")
    images = blocks(request, "image")
    assert [data_of(b) for b in images] == [photo], "the largest size, byte for byte, once"
    assert images[0]["source"]["media_type"] == "image/jpeg"
    assert request.last_user_text().endswith("what is this?")
    assert len(rig.requests_with("what is this?")) == 1


def test_an_image_sent_as_a_file_is_an_image_and_lands_in_uploads(rig: Rig) -> None:
    bo = rig.person("Bo")
    picture = make_png(300, 200)
    sent = rig.bot.send_document(bo.id, bo.id, picture, "screen shot.png", "image/png", caption="see the png")
    request = rig.wait_request("see the png")
    rig.answer(bo.id, sent, "echo:")
    assert [data_of(b) for b in blocks(request, "image")] == [picture]
    assert (uploads_of(rig, bo.id) / "screen shot.png").read_bytes() == picture


def test_an_album_of_three_is_one_model_call_with_three_images(rig: Rig) -> None:
    cy = rig.person("Cy")
    photos = [make_jpeg(640, 480, level=40 + 60 * i) for i in range(3)]
    parts = rig.bot.send_album(cy.id, cy.id, photos, caption="which one is sharpest?")
    request = rig.wait_request("which one is sharpest?")
    rig.answer(cy.id, parts[-1], "echo:")
    assert [data_of(b) for b in blocks(request, "image")] == photos, "all three, in the album's order"
    turns = [r for r in list(rig.api.requests) if any(data_of(b) in photos for b in blocks(r, "image"))]
    assert len(turns) == 1, "one model call for the album"
    assert len([m for m in rig.replies(cy.id, parts[0]) if m.text.startswith("echo:")]) == 1


def test_in_a_group_an_album_whose_caption_mentions_the_bot_is_taken_whole(rig: Rig) -> None:
    group = rig.group("Design")
    dee = rig.person("Dee")
    photos = [make_png(120, 90, (10 * i, 90, 200)) for i in range(2)]
    rig.bot.send_album(group.id, dee.id, photos, caption="just sharing, no bot here")
    parts = rig.bot.send_album(group.id, dee.id, photos, caption=f"@{BOT} compare these two")
    request = rig.wait_request("compare these two")
    rig.answer(group.id, parts[-1], "echo:")
    assert [data_of(b) for b in blocks(request, "image")] == photos
    assert not [r for r in rig.api.requests if "just sharing" in r.all_text()], "an album not for the bot"


# ------------------------------------------------------------------------------------------- documents


def test_a_pdf_lands_in_uploads_and_reaches_the_model_as_a_document(rig: Rig) -> None:
    eve = rig.person("Eve")
    pdf = media_samples.pdf(pages=2)
    sent = rig.bot.send_document(eve.id, eve.id, pdf, "contract.pdf", "application/pdf", caption="summarize it")
    request = rig.wait_request("summarize it")
    rig.answer(eve.id, sent, "echo:")
    assert (uploads_of(rig, eve.id) / "contract.pdf").read_bytes() == pdf
    documents = blocks(request, "document")
    assert [data_of(b) for b in documents] == [pdf]
    assert documents[0]["source"]["media_type"] == "application/pdf"
    assert "uploads/contract.pdf" in request.all_text(), "the turn says where the file lies"


def test_send_file_of_an_uploaded_pdf_delivers_the_bytes_the_user_sent(rig: Rig) -> None:
    """The issue's round trip: a PDF lands in uploads/, and send_file of it gives the chat the same bytes."""
    ida = rig.person("Ida")
    pdf = media_samples.pdf(pages=3)
    sent = rig.bot.send_document(ida.id, ida.id, pdf, "lease.pdf", "application/pdf", caption="keep this one")
    rig.answer(ida.id, sent, "echo:")
    assert (uploads_of(rig, ida.id) / "lease.pdf").read_bytes() == pdf
    ask = rig.say(ida.id, ida, 'send it back [[tool=send_file {"path": "uploads/lease.pdf", "caption": "here"}]]')
    rig.bot.wait_for(lambda: [d for d in rig.bot.documents if d.chat_id == ida.id] or None, 15, "the upload")
    rig.bot.wait_for(lambda: next(iter(rig.replies(ida.id, ask)), None), 15, "the reply after the tool")
    [document] = [d for d in rig.bot.documents if d.chat_id == ida.id]
    assert document.content == pdf and document.filename == "lease.pdf"


def test_a_text_file_reaches_the_model_as_text_and_a_hostile_name_stays_in_uploads(rig: Rig) -> None:
    fay = rig.person("Fay")
    log = "2026-11-26 ERROR disk quota exceeded on /var/lib/app\n"
    sent = rig.bot.send_document(fay.id, fay.id, log.encode(), "../../../etc/app.log", "text/plain",
                                 caption="why did it fail?")
    request = rig.wait_request("why did it fail?")
    rig.answer(fay.id, sent, "echo:")
    assert "disk quota exceeded" in json.dumps(request.body["messages"][-1])
    saved = list(uploads_of(rig, fay.id).iterdir())
    assert [p.read_bytes() for p in saved] == [log.encode()]
    assert not (rig.tmp / "work" / "etc").exists() and not (rig.tmp / "etc").exists()


def test_a_file_over_20_mb_gets_one_sentence_and_nothing_is_kept(rig: Rig) -> None:
    gus = rig.person("Gus")
    sent = rig.bot.send_document(gus.id, gus.id, b"\0" * (20 * 1024 * 1024 + 1), "huge.bin",
                                 caption="store this hugefile")
    answer = rig.answer(gus.id, sent, TOO_BIG)
    assert len(rig.replies(gus.id, sent)) == 1
    assert not rig.requests_with("hugefile"), "no turn for a file vigil could not take"
    assert not uploads_of(rig, gus.id).exists() or not list(uploads_of(rig, gus.id).iterdir())
    assert answer.text.count(".") <= 2


# ------------------------------------------------------------------------------------------- replies


def test_a_reply_with_a_quote_brings_the_quoted_part_into_the_turn(rig: Rig) -> None:
    hal = rig.person("Hal")
    first = rig.ask(hal.id, hal, "remember: alpha. then beta. then gamma.", "echo:")
    sent = rig.bot.send_text(hal.id, hal.id, "why this step?", reply_to=first, quote="then beta.")
    request = rig.wait_request("why this step?")
    rig.answer(hal.id, sent, "echo:")
    assert request.last_user_text() == "[replying to you, quoting: «then beta.»]\nwhy this step?"


def test_in_a_group_a_reply_to_a_member_that_mentions_the_bot_is_answered(rig: Rig) -> None:
    group = rig.group("Ops")
    ivy, jon = rig.person("Ivy"), rig.person("Jon")
    said = rig.say(group.id, ivy, "the deploy failed at step 3")
    asking = rig.bot.send_text(group.id, jon.id, f"@{BOT} what does she mean?", reply_to=said)
    request = rig.wait_request("what does she mean?")
    rig.answer(group.id, asking, "echo:")
    assert "[replying to Ivy: «the deploy failed at step 3»]" in request.last_user_text()


def test_a_forward_is_marked_with_its_origin(rig: Rig) -> None:
    kit = rig.person("Kit")
    sent = rig.bot.send_text(kit.id, kit.id, "build 118 is green",
                             forward_origin=ForwardOrigin.hidden_user("Release Robot"))
    request = rig.wait_request("build 118 is green")
    rig.answer(kit.id, sent, "echo:")
    assert request.last_user_text() == "[forwarded from Release Robot]\nbuild 118 is green"


# ------------------------------------------------------------------------------------------- voice


def standin_log(rig: Rig) -> list[dict[str, Any]]:
    path = rig.tmp / "data" / "whisper" / "standin.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_voice_note_is_transcribed_shown_and_answered(rig: Rig) -> None:
    lou = rig.person("Lou")
    sent = rig.bot.send_voice(lou.id, lou.id, voice_bytes("Remind me to water the ferns"))
    shown = rig.answer(lou.id, sent, "🎙")
    assert shown.text == "🎙 Remind me to water the ferns"
    request = rig.wait_request("water the ferns")
    assert request.last_user_text() == "Remind me to water the ferns"
    rig.answer(lou.id, sent, "echo:")
    log = standin_log(rig)
    assert [e["event"] for e in log].count("fetched") == 1, "the model is fetched once, into the data dir"
    work = [e for e in log if e["event"] == "transcribing"]
    assert work and not any(e["main_thread"] or e["event_loop"] for e in work), work


def test_a_long_transcription_does_not_hold_up_other_chats(rig: Rig) -> None:
    max_, nia = rig.person("Max"), rig.person("Nia")
    held = rig.bot.send_voice(max_.id, max_.id, voice_bytes("HOLD the long dictation"))
    rig.bot.wait_for(lambda: any(e.get("words", "").startswith("HOLD") for e in standin_log(rig)), 10,
                     "the transcription to start")
    rig.ask(nia.id, nia, "meanwhile in another chat", "echo:")
    assert not rig.requests_with("HOLD the long dictation")
    (rig.tmp / "data" / "whisper" / "release").write_text("go")
    rig.answer(max_.id, held, "🎙 HOLD the long dictation")
    rig.wait_request("HOLD the long dictation")


def test_without_the_voice_extra_one_sentence_says_how_to_enable_it(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    ola = rig.person("Ola")
    sent = rig.bot.send_voice(ola.id, ola.id, voice_bytes("hello there"))
    rig.answer(ola.id, sent, NO_EXTRA)
    assert len(rig.replies(ola.id, sent)) == 1
    assert not rig.api.requests


# ------------------------------------------------------------------------------------------- restart


def test_after_a_restart_the_next_request_still_carries_the_image(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    pam = rig.person("Pam")
    photo = make_jpeg(320, 240, level=77)
    sent = rig.bot.send_photo(pam.id, pam.id, photo, caption="keep this picture")
    rig.wait_request("keep this picture")
    rig.answer(pam.id, sent, "echo:")
    rig.stop()
    rig.start()
    later: Message = rig.say(pam.id, pam, "what was in the picture?")
    request = rig.wait_request("what was in the picture?", timeout=20)
    rig.answer(pam.id, later, "echo:")
    assert [data_of(b) for b in blocks(request, "image", last_only=False)] == [photo]
