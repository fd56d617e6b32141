"""Claude's send_file tool through a real session: the jail, the upload limits, photos, the outcome."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import Harness, HarnessFactory, RecordingOutbox, Say, ScriptedModel, UseTools, check_request, key_of
from vigil.adapters.console import ConsoleOutbox
from vigil.cancel import CancelToken
from vigil.ports import FileDelivery, OutgoingFile
from vigil.records.schema import Target

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)
CHAT = 1


@pytest.fixture
def make(tmp_path: Path) -> Iterator[HarnessFactory]:
    with HarnessFactory(tmp_path) as factory:
        yield factory


def workspace(h: Harness) -> Path:
    """A private chat's own directory (user 7 is no admin)."""
    path = h.settings.workdir_root / "users" / str(CHAT)
    path.mkdir(parents=True, exist_ok=True)
    return path


def send(make: HarnessFactory, tool_input: dict[str, Any] | Callable[[Harness], dict[str, Any]],
         prepare: Callable[[Path], object] | None = None, outbox: RecordingOutbox | None = None,
         **settings: Any) -> tuple[Harness, dict[str, Any]]:
    """One turn in which the model calls send_file with `tool_input` (or what it makes of the harness);
    the harness and the tool_result."""
    model = ScriptedModel()
    h = make(model=model, outbox=outbox, **settings)
    given = tool_input(h) if callable(tool_input) else tool_input
    model.push(UseTools((("send_file", given),), text="Here it comes."), Say("Done."))
    if prepare is not None:
        prepare(workspace(h))
    key = key_of(CHAT)
    h.say(key, "send me the file")
    h.outbox.wait_finished(key, 1)
    for request in model.requests:
        check_request(request)
    assert "send_file" in [t["name"] for t in model.requests[0].tools]
    [turn] = h.turns(key)
    result = turn.messages[1].content[0]
    assert result["type"] == "tool_result"
    return h, result


def test_a_file_of_the_workspace_arrives_with_its_bytes_name_and_caption(make: HarnessFactory) -> None:
    data = os.urandom(300_000)

    def prepare(ws: Path) -> None:
        (ws / "out").mkdir()
        (ws / "out" / "report.pdf").write_bytes(data)

    h, result = send(make, {"path": "out/report.pdf", "caption": "The *report*"}, prepare)
    assert not result.get("is_error"), result
    assert "report.pdf" in result["content"]
    [(key, file)] = h.outbox.files
    assert key == key_of(CHAT)
    assert (file.filename, file.content, file.caption, file.as_photo) == ("report.pdf", data, "The *report*", False)
    assert file.path == str((workspace(h) / "out" / "report.pdf").resolve())
    [stream] = h.outbox.streams_of(key_of(CHAT))
    assert ("progress", "send out/report.pdf", "") in stream.events


def test_an_image_goes_as_a_photo_only_when_asked(make: HarnessFactory) -> None:
    h, result = send(make, {"path": "chart.png", "as_photo": True},
                     lambda ws: (ws / "chart.png").write_bytes(PNG))
    assert not result.get("is_error"), result
    [(_, file)] = h.outbox.files
    assert file.as_photo and file.content == PNG

    h, result = send(make, {"path": "chart.png"}, lambda ws: (ws / "chart.png").write_bytes(PNG))
    [(_, file)] = h.outbox.files
    assert not file.as_photo, "an image the model did not ask to show goes as the exact file"


def test_a_file_that_is_no_image_is_not_sent_as_a_photo(make: HarnessFactory) -> None:
    h, result = send(make, {"path": "notes.png", "as_photo": True},
                     lambda ws: (ws / "notes.png").write_text("not an image at all"))
    assert result.get("is_error") and "not a PNG, JPEG or WebP image" in result["content"], result
    assert h.outbox.files == []


@pytest.mark.parametrize(("path", "needle"), [
    ("../../../outside/secret.txt", "escapes the working root"),
    ("OUTSIDE", "escapes the working root"),
    ("link-out/secret.txt", "escapes the working root"),
    ("secret-link", "escapes the working root"),
    ("/proc/self/environ", "escapes the working root"),
    ("DATA", "escapes the working root"),
    ("../2/theirs.txt", "escapes the working root"),
    ("missing.txt", "No such file"),
    ("subdir", "is a directory"),
    ("empty.txt", "is empty"),
])
def test_paths_outside_the_chats_directory_and_unusable_files_are_refused(
        make: HarnessFactory, tmp_path: Path, path: str, needle: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the password")

    def prepare(ws: Path) -> None:
        (ws / "link-out").symlink_to(outside)
        (ws / "secret-link").symlink_to(outside / "secret.txt")
        (ws / "subdir").mkdir()
        (ws / "empty.txt").write_bytes(b"")
        other = ws.parent / "2"  # another user's chat directory, beside this one
        other.mkdir()
        (other / "theirs.txt").write_text("not yours")

    def tool_input(h: Harness) -> dict[str, Any]:
        return {"path": {"OUTSIDE": str(outside / "secret.txt"),
                         "DATA": str(h.settings.data_dir / "data.mdb")}.get(path, path)}

    h2, result = send(make, tool_input, prepare)
    assert result.get("is_error"), result
    assert result["content"].startswith("not sent: ")
    assert needle in result["content"], result
    assert h2.outbox.files == []
    assert "the password" not in str(result)


def test_the_upload_limit_is_checked_before_anything_is_sent(make: HarnessFactory) -> None:
    mb = 1024 * 1024

    def prepare(ws: Path) -> None:
        with open(ws / "big.bin", "wb") as f:
            f.truncate(mb + 1)  # sparse: its size is what is checked, before a byte is read
        with open(ws / "fits.bin", "wb") as f:
            f.write(b"x" * mb)
        with open(ws / "photo.jpg", "wb") as f:
            f.write(b"\xff\xd8\xff\xe0")
            f.truncate(10 * mb + 1)

    h, result = send(make, {"path": "big.bin"}, prepare, max_upload_mb=1)
    assert result.get("is_error") and "over the limit of 1.0 MB" in result["content"], result
    assert h.outbox.files == []

    h, result = send(make, {"path": "fits.bin"}, prepare, max_upload_mb=1)
    assert not result.get("is_error"), result
    assert len(h.outbox.files[0][1].content) == mb

    h, result = send(make, {"path": "photo.jpg", "as_photo": True}, prepare)
    assert result.get("is_error") and "over the limit of 10.0 MB" in result["content"], result
    assert h.outbox.files == []


def test_a_caption_over_telegrams_limit_is_refused(make: HarnessFactory) -> None:
    h, result = send(make, {"path": "a.txt", "caption": "x" * 1025}, lambda ws: (ws / "a.txt").write_text("a"))
    assert result.get("is_error") and "over Telegram's 1024" in result["content"], result
    assert h.outbox.files == []


def test_bad_input_is_a_clear_error(make: HarnessFactory) -> None:
    for tool_input, needle in (({}, "`path` must name a file"), ({"path": "a.txt", "caption": 3}, "`caption`"),
                               ({"path": "a.txt", "as_photo": "yes"}, "`as_photo`")):
        h, result = send(make, tool_input, lambda ws: (ws / "a.txt").write_text("a"))
        assert result.get("is_error") and needle in result["content"], result
        assert h.outbox.files == []


def test_what_the_channel_says_comes_back_as_the_tool_result(make: HarnessFactory) -> None:
    outbox = RecordingOutbox()
    outbox.file_outcome = FileDelivery(delivered=False, detail="not sent: Telegram refused the file (too big)")
    _, result = send(make, {"path": "a.txt"}, lambda ws: (ws / "a.txt").write_text("a"), outbox=outbox)
    assert result.get("is_error") and result["content"] == "not sent: Telegram refused the file (too big)"


def test_the_console_names_the_file_and_its_size() -> None:
    out = io.StringIO()
    console = ConsoleOutbox(out=out, err=io.StringIO())
    file = OutgoingFile(path="/work/users/1/out/report.pdf", filename="report.pdf", content=b"x" * 2048,
                        caption="the report")
    delivery = console.send_file("console:me", Target(channel="console"), file, CancelToken())
    assert delivery.delivered
    assert out.getvalue() == "📎 /work/users/1/out/report.pdf (2.0 KB) the report\n"
