"""Files in requests: stored turns' attachments become image and document blocks, counted right.

Pure parts (history.py, attached.py, the window) over a real media store on disk; every request built
is checked by the Messages API stand-in's validator (`check_request`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.fakes import check_request
from tests.media_samples import jpeg, pdf
from vigil.actors.engine.window import HistoryWindow
from vigil.media.attachments import ingest
from vigil.media.files import MediaStore
from vigil.model.attached import REF_TYPE, RequestLimits, has_refs, materialize
from vigil.model.history import estimate_tokens, join, normalize, turn_messages, with_cache_point
from vigil.ports import ModelRequest
from vigil.records.schema import Attachment, Input, Message, Turn


@pytest.fixture
def media(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


def turn(seq: int, *inputs: Input, reply: str = "seen") -> Turn:
    return Turn(seq=seq, started_at=1.0, status="done", inputs=inputs,
                messages=(Message(role="assistant", content=({"type": "text", "text": reply},)),))


def said(text: str, *attachments: Attachment, name: str = "Ann", user_id: int = 7) -> Input:
    return Input(text=text, at=1.0, user_name=name, user_id=user_id, attachments=attachments)


def request_of(messages: list[dict[str, Any]]) -> ModelRequest:
    return ModelRequest(model="claude-sonnet-4-5", max_tokens=1000, system=(), messages=tuple(messages))


def history(turns: list[Turn], media: MediaStore | None, current: str = "and now?",
            group: bool = False) -> list[dict[str, Any]]:
    parts = [normalize(turn_messages(t, group)) for t in turns]
    parts.append([{"role": "user", "content": [{"type": "text", "text": current}]}])
    return materialize(join(parts), media)


def blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for m in messages for b in m["content"]]


# ------------------------------------------------------------------------------------------- blocks


def test_a_photo_reaches_the_model_as_an_image_block_before_its_caption(media: MediaStore) -> None:
    photo = jpeg(800, 600)
    image = ingest(media, photo)
    stored = turn(0, said("what is this?", image))
    messages = turn_messages(stored)
    assert [b["type"] for b in messages[0]["content"]] == [REF_TYPE, "text"]

    sent = history([stored], media)
    check_request(request_of(sent))
    first = sent[0]["content"]
    assert first[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                    "data": base64.b64encode(photo).decode()}}
    assert first[1] == {"type": "text", "text": "what is this?"}
    assert not has_refs(sent)


def test_documents_text_and_plain_files(media: MediaStore, tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / "c").mkdir(parents=True)
    report = ingest(media, pdf(2), name="report.pdf", root=root, cwd=root / "c")
    notes = ingest(media, b"line one\nline two\n", name="notes.txt", root=root, cwd=root / "c")
    blob = ingest(media, bytes(range(256)), name="data.bin", root=root, cwd=root / "c")
    sent = history([turn(0, said("read these", report, notes, blob))], media)
    check_request(request_of(sent))
    content = sent[0]["content"]
    assert content[0]["type"] == "document"
    assert content[0]["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(content[0]["source"]["data"]) == pdf(2)
    assert content[0]["title"] == "report.pdf"
    # A text file is a document with a text source: its contents stay marked as the file's.
    assert content[1] == {"type": "document", "title": "notes.txt",
                          "source": {"type": "text", "media_type": "text/plain", "data": "line one\nline two\n"}}
    assert content[2]["type"] == "text"
    uploads = root / "c" / "uploads"
    assert content[2]["text"] == (f"read these\n[file saved at {uploads}/report.pdf]"
                                  f"\n[file saved at {uploads}/notes.txt]\n[file saved at {uploads}/data.bin]")
    assert len(content) == 3  # the plain file is only named


def test_a_file_deleted_by_hand_becomes_a_note_not_a_failed_request(media: MediaStore, tmp_path: Path) -> None:
    image = ingest(media, jpeg())
    document = ingest(media, pdf(1), name="gone.pdf")
    media.path(image.digest).unlink()
    media.path(document.digest).unlink()
    fresh = MediaStore(media.root)  # nothing cached: the disk is all there is
    sent = history([turn(0, said("look", image, document))], fresh)
    check_request(request_of(sent))
    texts = [b["text"] for b in blocks(sent) if b["type"] == "text"]
    assert "[image no longer available]" in texts
    assert "[document gone.pdf no longer available]" in texts


def test_an_input_without_text_is_only_its_image_and_groups_name_the_sender(media: MediaStore) -> None:
    image = ingest(media, jpeg())
    sent = history([turn(0, said("", image), said("and this one?", ingest(media, jpeg(seed=2)), name="Bo"))],
                   media, group=True)
    check_request(request_of(sent))
    kinds = [b["type"] for b in sent[0]["content"]]
    assert kinds == ["image", "text", "image", "text"]
    assert sent[0]["content"][1]["text"] == "[Ann] "
    assert sent[0]["content"][3]["text"] == "[Bo] and this one?"

    alone = history([turn(0, said("", image))], media)
    check_request(request_of(alone))
    assert [b["type"] for b in alone[0]["content"]] == ["image"]


def test_the_cache_point_survives_on_an_image_that_ends_a_message(media: MediaStore) -> None:
    image = ingest(media, jpeg())
    user = {"role": "user", "content": [{"type": "text", "text": "see"}, *turn_messages(turn(0, said("", image)))[0]
                                        ["content"]]}
    marked = with_cache_point(user)
    sent = materialize([marked], media)
    check_request(request_of(sent))
    assert sent[0]["content"][-1]["type"] == "image"
    assert sent[0]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in user["content"][-1]  # the window's copy is untouched


def test_a_request_carries_the_newest_files_within_the_apis_limits(media: MediaStore) -> None:
    images = [ingest(media, jpeg(seed=i)) for i in range(25)]
    turns = [turn(i, said(f"photo {i}", image)) for i, image in enumerate(images)]
    sent = history(turns, media)
    check_request(request_of(sent))
    carried = [b for b in blocks(sent) if b["type"] == "image"]
    assert len(carried) == 20
    assert base64.b64decode(carried[-1]["source"]["data"]) == media.read(images[-1].digest)
    assert base64.b64decode(carried[0]["source"]["data"]) == media.read(images[5].digest)
    notes = [b["text"] for b in blocks(sent) if b["type"] == "text" and "left out" in b["text"]]
    assert len(notes) == 5

    three = join([normalize(turn_messages(t)) for t in turns[:3]])
    few = materialize([*three, {"role": "user", "content": [{"type": "text", "text": "?"}]}], media,
                      RequestLimits(images=20, bytes=2 * images[0].size))
    assert len([b for b in blocks(few) if b["type"] == "image"]) == 2


def test_a_file_left_out_of_the_message_being_answered_is_not_called_one_sent_earlier(media: MediaStore) -> None:
    """Files of the current message beyond a request's limits are the user's own, just sent: the line says
    why they are left out and what to do, not "sent earlier"; older ones keep the "sent earlier" line."""
    older = ingest(media, jpeg(seed=99))
    now = [ingest(media, jpeg(seed=i)) for i in range(3)]
    current = turn_messages(turn(1, said("compare these", *now)))[0]
    sent = materialize([*normalize(turn_messages(turn(0, said("an old one", older)))), current], media,
                       RequestLimits(images=2))
    check_request(request_of(sent))
    old_notes = [b["text"] for b in sent[0]["content"] if b["type"] == "text" and "left out" in b["text"]]
    new_notes = [b["text"] for b in sent[-1]["content"] if b["type"] == "text" and "left out" in b["text"]]
    assert len([b for b in sent[-1]["content"] if b["type"] == "image"]) == 2
    assert [n for n in old_notes if "sent earlier" in n] == old_notes and len(old_notes) == 1
    assert len(new_notes) == 1 and "sent earlier" not in new_notes[0]
    assert "at most 2 images" in new_notes[0] and "send it again on its own" in new_notes[0]


def test_a_file_stored_with_a_relative_path_still_decodes_and_says_what_it_is_relative_to(
        media: MediaStore) -> None:
    """Attachments stored before paths were absolute keep their relative path; the line says it is relative
    to the working directory of the time, since the chat may have /cd'd away since."""
    old = msgspec.json.decode(b'{"type":"attachment","kind":"file","digest":"ab","media_type":"application/zip",'
                              b'"name":"x.zip","path":"uploads/x.zip"}', type=Attachment)
    assert old.path == "uploads/x.zip"
    sent = history([turn(0, said("keep it", old))], media)
    check_request(request_of(sent))
    assert sent[0]["content"][0]["text"] == ("keep it\n[file saved at uploads/x.zip, relative to the working "
                                             "directory the chat had when it arrived]")


def test_pdf_pages_are_bounded_per_request(media: MediaStore) -> None:
    documents = [ingest(media, pdf(60), name=f"{i}.pdf") for i in range(3)]
    sent = history([turn(i, said("read", d)) for i, d in enumerate(documents)], media)
    check_request(request_of(sent))
    assert len([b for b in blocks(sent) if b["type"] == "document"]) == 1  # 60 + 60 > 100 pages


def test_a_heartbeat_names_files_without_carrying_them(media: MediaStore) -> None:
    image = ingest(media, jpeg())
    sent = history([turn(0, said("look", image))], None)
    check_request(request_of(sent))
    assert sent[0]["content"][0] == {"type": "text", "text": "[image sent earlier: not shown here]"}


# ------------------------------------------------------------------------------------------- counting


def test_a_file_counts_by_its_tokens_not_its_base64(media: MediaStore) -> None:
    photo = jpeg(1600, 1200)
    image = ingest(media, photo)
    stored = turn_messages(turn(0, said("what is this?", image)))
    text_only = turn_messages(turn(0, said("what is this?")))
    assert estimate_tokens(stored) == estimate_tokens(text_only) + image.tokens
    sent = materialize(stored, media)
    # The block the API gets is priced like its placeholder would be at most: never by its base64.
    assert estimate_tokens(sent) <= estimate_tokens(text_only) + 1600
    assert len(sent[0]["content"][0]["source"]["data"]) / 3.5 > 20_000  # what counting its text would say


def test_the_window_keeps_photos_within_the_budget(media: MediaStore) -> None:
    window = HistoryWindow(generation=1, start=0, group=False)
    images = [ingest(media, jpeg(1280, 960, seed=i)) for i in range(30)]
    for seq, image in enumerate(images):
        window.add(turn(seq, said(f"photo {seq}", image)))
    per_turn = images[0].tokens
    assert per_turn > 1000
    assert window.tokens < 30 * (per_turn + 50)  # counted by tokens, not megabytes of base64
    budget = 10 * per_turn
    assert window.slide(budget)
    assert window.tokens <= budget
    kept = window.messages()
    sent = materialize([*kept, {"role": "user", "content": [{"type": "text", "text": "?"}]}], media)
    check_request(request_of(sent))
    assert estimate_tokens(sent) <= budget + 100
    assert 0 < len([b for b in blocks(sent) if b["type"] == "image"]) <= 10


def test_old_images_are_encoded_once_per_file_not_per_request(media: MediaStore) -> None:
    image = ingest(media, jpeg(1280, 960))
    first = materialize(turn_messages(turn(0, said("a", image))), media)
    second = materialize(turn_messages(turn(0, said("a", image))), media)
    encoded = first[0]["content"][0]["source"]["data"]
    assert second[0]["content"][0]["source"]["data"] is encoded
    # Every later request reuses that one string (the same object, not an equal copy): no re-encoding.
    again = [materialize(turn_messages(turn(0, said("a", image))), media) for _ in range(200)]
    assert all(sent[0]["content"][0]["source"]["data"] is encoded for sent in again)


def test_the_window_knows_whether_it_holds_files_so_text_chats_skip_reading_them(media: MediaStore) -> None:
    """A request reads files in only when the window (or the turn) holds some: the common text chat pays
    nothing for the scan, and one photo slid out of the window stops costing it."""
    window = HistoryWindow(generation=1, start=0, group=False)
    window.add(turn(0, said("a photo", ingest(media, jpeg(640, 480)))))
    assert window.has_files
    for seq in range(1, 40):
        window.add(turn(seq, said("words " * 200)))
    assert window.has_files
    assert window.slide(window.tokens // 3)
    assert not window.has_files and not has_refs(window.messages())
    window.add(turn(40, said("another", ingest(media, jpeg(320, 240)))))
    assert window.has_files
