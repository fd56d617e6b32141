"""End to end through `vigil run`: Claude's files back to the chat (send_file) and long drafted replies.

The Messages stand-in scripts the tool call (`[[tool=send_file {...}]]` in the user's words); the Bot API
stand-in keeps the exact bytes every upload delivered, and every draft with its arrival time.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig import TELEGRAM_LIMIT, Rig, close_rig, make_rig, squash, undelivered, utf16_units
from tests.standins.bot_api import User
from tests.standins.images import make_png
from tests.standins.messages_api import filler_text

pytestmark = pytest.mark.e2e
MB = 1024 * 1024


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    made = make_rig(tmp_path_factory.mktemp("files"), VIGIL_MAX_UPLOAD_MB="2")
    try:
        made.start()
        yield made
        assert made.alive(), made.running().err.text[-3000:]
        assert not made.api.errors, made.api.errors
    finally:
        close_rig(made)


def chat_dir(rig: Rig, user_id: int) -> Path:
    """A private chat's own directory (no admin): where its files are, and as far as it may reach."""
    path = Path(rig.env["VIGIL_WORKDIR_ROOT"]).resolve() / "users" / str(user_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def send_file(rig: Rig, user: User, marker: str, **tool_input: Any) -> dict[str, Any]:
    """Asks for the file in `user`'s private chat; the tool_result vigil gave the model, once the turn ended."""
    sent = rig.say(user.id, user, f"{marker} [[tool=send_file {json.dumps(tool_input)}]]")
    rig.bot.wait_for(lambda: len(rig.requests_with(marker)) >= 2 or None, 15, "the model's second call")
    rig.bot.wait_for(lambda: next(iter(rig.replies(user.id, sent)), None), 15, "the reply after the tool")
    request = rig.requests_with(marker)[-1]
    results = [b for m in request.body["messages"] if m["role"] == "user" and isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert results, request.body["messages"]
    last: dict[str, Any] = results[-1]  # this turn's (earlier turns' results are history)
    return last


def text_of(result: dict[str, Any]) -> str:
    content = result["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def test_a_file_of_the_chat_arrives_with_exactly_its_bytes(rig: Rig) -> None:
    uma = rig.person("Uma")
    data = b"%PDF-1.4\n" + os.urandom(700_000)
    (chat_dir(rig, uma.id) / "out").mkdir()
    (chat_dir(rig, uma.id) / "out" / "report.pdf").write_bytes(data)
    result = send_file(rig, uma, "send the report", path="out/report.pdf", caption="The **final** report")
    assert not result.get("is_error"), result
    assert "sent as a document" in text_of(result)
    [document] = [d for d in rig.bot.documents if d.chat_id == uma.id]
    assert document.content == data, "the bytes the chat received are the file's"
    assert document.filename == "report.pdf"
    assert document.caption == "The final report" and document.parse_mode == "HTML"
    assert not undelivered(rig, uma.id)


def test_an_image_goes_as_a_photo_when_asked_and_a_refusal_is_one_sentence(rig: Rig) -> None:
    ivy = rig.person("Ivy")
    (chat_dir(rig, ivy.id) / "chart.png").write_bytes(png := make_png(320, 200))
    (chat_dir(rig, ivy.id) / "strip.png").write_bytes(make_png(2000, 20))  # sides 100:1, no photo
    result = send_file(rig, ivy, "show the chart", path="chart.png", as_photo=True)
    assert not result.get("is_error"), result
    [photo] = [p for p in rig.bot.photos if p.chat_id == ivy.id]
    assert photo.content == png

    result = send_file(rig, ivy, "show the strip", path="strip.png", as_photo=True)
    assert result.get("is_error") and text_of(result).startswith("not sent: Telegram refused the photo"), result
    assert "photo_invalid_dimensions" in text_of(result).lower()
    assert len([p for p in rig.bot.photos if p.chat_id == ivy.id]) == 1


def test_too_large_or_outside_is_refused_and_nothing_is_sent(rig: Rig) -> None:
    olga = rig.person("Olga")
    home = chat_dir(rig, olga.id)
    (home / "big.bin").write_bytes(b"\0" * (2 * MB + 1))
    (home / "leak").symlink_to("/etc/hostname")
    uploads_before = len(rig.bot.uploads)
    cases = [({"path": "big.bin"}, "over the limit of 2.0 MB"),
             ({"path": "/etc/hostname"}, "escapes the working root"),
             ({"path": "../../../../etc/hostname"}, "escapes the working root"),
             ({"path": "leak"}, "escapes the working root"),
             ({"path": "/proc/self/environ"}, "escapes the working root")]
    for index, (tool_input, needle) in enumerate(cases):
        result = send_file(rig, olga, f"refused case {index}", **tool_input)
        assert result.get("is_error"), result
        assert text_of(result).startswith("not sent: ") and needle in text_of(result), result
    assert len(rig.bot.uploads) == uploads_before, "a refused file reached Telegram"
    assert not [c for c in rig.bot.calls if c.method in ("sendDocument", "sendPhoto") and c.params.get(
        "chat_id") in (olga.id, str(olga.id))]


def test_a_drafted_reply_longer_than_a_message_is_sent_in_parts_as_it_grows(rig: Rig) -> None:
    lena = rig.person("Lena")
    story = filler_text(9000)
    sent = rig.say(lena.id, lena, "[[len=9000]][[slow=6]] a very long story")
    rig.bot.wait_for(lambda: squash("".join(m.text for m in rig.replies(lena.id, sent))) == squash(story), 25,
                     "the whole long story, in parts")
    parts = rig.replies(lena.id, sent)
    assert len(parts) >= 3 and all(utf16_units(m.text) <= TELEGRAM_LIMIT for m in parts)
    drafts = [d for d in rig.bot.drafts(lena.id) if d.text]
    assert all(utf16_units(d.text) <= TELEGRAM_LIMIT for d in drafts)
    sends = [c for c in rig.bot.calls if c.method == "sendMessage" and c.ok and c.params.get("chat_id") in (
        lena.id, str(lena.id)) and c.result["message_id"] > sent.message_id]
    assert len(sends) == len(parts)
    # The reply's beginning was sent for good while it was still being drafted, not all at the end.
    assert sends[0].time < drafts[-1].time, "the first part waited for the end of the reply"
    assert len({d.draft_id for d in drafts}) >= 2, "each part after a cut is a draft of its own"
    assert all(m.edits == 0 for m in parts)
    assert not undelivered(rig, lena.id)


def test_a_refused_draft_falls_back_to_editing_and_the_reply_arrives_whole(rig: Rig) -> None:
    finn = rig.person("Finn")
    story = filler_text(700)
    rig.bot.fail(times=1, status=400, method="sendMessageDraft")
    sent = rig.say(finn.id, finn, "[[len=700]][[slow=4]] a story whose draft is refused")
    rig.bot.wait_for(lambda: any(squash(m.text) == squash(story) for m in rig.replies(finn.id, sent)),
                     20, "the whole story")
    [shown] = rig.replies(finn.id, sent)
    assert shown.edits >= 1, "after the refused draft the reply was previewed by editing one message"
    assert [c for c in rig.bot.failed_calls("sendMessageDraft") if c.params.get("chat_id") in (finn.id, str(finn.id))]
    assert not [d for d in rig.bot.drafts(finn.id)], "no draft after the one refused"
    edits = [c for c in rig.bot.calls if c.method == "editMessageText" and c.ok
             and c.params.get("message_id") in (shown.message_id, str(shown.message_id))]
    # The previews' edits (the last edit is the final reply's, which waits for nothing).
    gaps = [b.time - a.time for a, b in itertools.pairwise(edits[:-1])]
    assert all(gap >= 0.9 for gap in gaps), f"edits of a private chat keep about a second apart: {gaps}"
    assert not undelivered(rig, finn.id)
