"""Media intake (adapters/telegram/receive/intake.py) with the real PTB Bot over HTTP against the Bot API stand-in.

The paths the end-to-end tests cannot reach from a client's side: getFile's own "file is too big" for a
file whose size the update did not say, a planted `uploads` symlink, a media store that cannot be
written, kinds vigil does not take, recordings too long to transcribe, where a transcription runs, and
that its transcript is shown only after the message was handed to the runtime.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Message, Update

from tests.fakes import HarnessFactory
from tests.ptb import ALICE, with_bot
from tests.standins.bot_api import BotAPI
from tests.standins.images import make_jpeg
from vigil.actors.core.protocol import UserText
from vigil.adapters.telegram.access import Gate
from vigil.adapters.telegram.handlers import TelegramHandlers
from vigil.adapters.telegram.receive.intake import (
    DOWNLOAD_LIMIT,
    MAX_RECORDING_S,
    SAVE_FAILED,
    TOO_BIG,
    TOO_LONG,
    Intake,
    Taken,
)
from vigil.adapters.telegram.send.outbox import TelegramOutbox
from vigil.control.dispatch import Control
from vigil.errors import TranscriptionError
from vigil.media import attachments
from vigil.media.files import MediaStore
from vigil.media.transcribe import NO_EXTRA, NOT_UNDERSTOOD
from vigil.media.uploads import Workplace
from vigil.ports import Reply, WriteFuture
from vigil.records.schema import Attachment, Target
from vigil.runtime import Runtime


def message(bot: Bot, **fields: Any) -> Message:
    data = {"message_id": 5, "date": 1_700_000_000, "chat": {"id": ALICE, "type": "private", "first_name": "Alice"},
            "from": {"id": ALICE, "is_bot": False, "first_name": "Alice"}, **fields}
    parsed = Message.de_json(data, bot)
    assert parsed is not None
    return parsed


def at(directory: Path) -> Callable[[], Workplace]:
    """The chat's place for a test: `directory` is its workspace and its working directory."""
    return lambda: Workplace(directory, directory)


def ingest_into(tmp_path: Path, media_dir: Path | None = None,
                ) -> tuple[Callable[[bytes, str, str, Workplace | None], Attachment], list[str]]:
    media = MediaStore(media_dir or tmp_path / "data" / "media")
    root = tmp_path / "work"
    calls: list[str] = []

    def ingest(data: bytes, name: str, mime: str, place: Workplace | None) -> Attachment:
        calls.append(name)
        return attachments.ingest(media, data, name=name, mime=mime, root=root if place else None,
                                  cwd=place.cwd if place else None)

    return ingest, calls


def test_a_file_getfile_calls_too_big_is_refused_in_one_sentence(bot_api: BotAPI, tmp_path: Path) -> None:
    file_id, unique = bot_api.add_file(b"\0" * (DOWNLOAD_LIMIT + 1), file_name="dump.bin")
    ingest, calls = ingest_into(tmp_path)
    intake = Intake(ingest, None)

    async def body(bot: Bot) -> None:
        # An update may leave file_size out: then only getFile says the file is too big.
        taken = await intake.take(message(bot, document={"file_id": file_id, "file_unique_id": unique,
                                                         "file_name": "dump.bin"}), at(tmp_path))
        assert taken.refusal == TOO_BIG and taken.attachments == ()

    with_bot(bot_api, body)
    assert calls == [], "nothing reached the media store or the chat's folder"
    assert not bot_api.downloads


def test_a_planted_uploads_symlink_refuses_the_file_and_keeps_nothing(bot_api: BotAPI, tmp_path: Path) -> None:
    ingest, _ = ingest_into(tmp_path)
    cwd = tmp_path / "work" / "users" / str(ALICE)
    cwd.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (cwd / "uploads").symlink_to(outside)
    file_id, unique = bot_api.add_file(b"notes\n", file_name="notes.txt", mime_type="text/plain")
    intake = Intake(ingest, None)

    async def body(bot: Bot) -> None:
        taken = await intake.take(message(bot, document={"file_id": file_id, "file_unique_id": unique,
                                                         "file_name": "notes.txt", "file_size": 6}), at(cwd))
        assert taken.attachments == ()
        assert taken.refusal.startswith("I couldn't take that file: ") and taken.refusal.endswith("Nothing was kept.")

    with_bot(bot_api, body)
    assert list(outside.iterdir()) == []


def test_kinds_vigil_does_not_take_get_a_sentence_naming_them(bot_api: BotAPI, tmp_path: Path) -> None:
    intake = Intake(ingest_into(tmp_path)[0], None)

    async def body(bot: Bot) -> None:
        sticker = message(bot, sticker={"file_id": "s", "file_unique_id": "su", "type": "regular", "width": 512,
                                        "height": 512, "is_animated": False, "is_video": False})
        assert "stickers" in (await intake.take(sticker, at(tmp_path))).refusal
        plain = message(bot, text="hi")
        assert (await intake.take(plain, at(tmp_path))).refusal == ""

    with_bot(bot_api, body)


def test_a_media_store_that_cannot_be_written_refuses_in_one_sentence(bot_api: BotAPI, tmp_path: Path) -> None:
    # A real OSError from the media store's own writes (here ENOTDIR: its parent is a file; a full disk
    # or a read-only mount would be ENOSPC or EROFS, from the same calls).
    blocker = tmp_path / "data"
    blocker.write_bytes(b"not a directory")
    ingest, _ = ingest_into(tmp_path, media_dir=blocker / "media")
    intake = Intake(ingest, None)
    photo_id, photo_unique = bot_api.add_file(make_jpeg(64, 48), kind="photo", mime_type="image/jpeg")
    pdf_id, pdf_unique = bot_api.add_file(b"%PDF-1.4\n%%EOF\n", file_name="a.pdf", mime_type="application/pdf")

    async def body(bot: Bot) -> None:
        photo = message(bot, photo=[{"file_id": photo_id, "file_unique_id": photo_unique, "width": 64,
                                     "height": 48}])
        assert await intake.take(photo, at(tmp_path)) == Taken(refusal=SAVE_FAILED)
        pdf = message(bot, document={"file_id": pdf_id, "file_unique_id": pdf_unique, "file_name": "a.pdf",
                                     "mime_type": "application/pdf"})
        assert await intake.take(pdf, at(tmp_path)) == Taken(refusal=SAVE_FAILED)

    with_bot(bot_api, body)
    assert len(bot_api.downloads) == 2, "both were fetched; the store refused them"


def test_an_unexpected_failure_still_gets_a_sentence(bot_api: BotAPI, tmp_path: Path) -> None:
    def broken(data: bytes, name: str, mime: str, directory: Workplace | None) -> Attachment:
        raise RuntimeError("a bug")

    intake = Intake(broken, None)
    photo_id, photo_unique = bot_api.add_file(make_jpeg(8, 8), kind="photo", mime_type="image/jpeg")

    async def body(bot: Bot) -> None:
        photo = message(bot, photo=[{"file_id": photo_id, "file_unique_id": photo_unique, "width": 8, "height": 8}])
        assert (await intake.take(photo, at(tmp_path))).refusal == SAVE_FAILED

    with_bot(bot_api, body)


class Ear:
    """A transcriber that notes where it ran."""

    def __init__(self, words: str) -> None:
        self.words = words
        self.threads: list[tuple[str, bool]] = []

    def transcribe(self, audio: bytes) -> str:
        try:
            asyncio.get_running_loop()
            looping = True
        except RuntimeError:
            looping = False
        self.threads.append((threading.current_thread().name, looping))
        return self.words


def test_transcription_runs_on_a_worker_thread_never_the_loop(bot_api: BotAPI, tmp_path: Path) -> None:
    voice_id, voice_unique = bot_api.add_file(b"OggS voice", kind="voice", mime_type="audio/ogg")
    ear = Ear("  water the ferns ")
    intake = Intake(ingest_into(tmp_path)[0], ear)
    silent = Intake(ingest_into(tmp_path)[0], Ear(""))
    without = Intake(ingest_into(tmp_path)[0], None)
    voice = {"file_id": voice_id, "file_unique_id": voice_unique, "duration": 2, "mime_type": "audio/ogg"}

    async def body(bot: Bot) -> None:
        note = message(bot, voice=voice)
        assert (await intake.take(note, at(tmp_path))).transcript == "water the ferns"
        assert (await silent.take(note, at(tmp_path))).refusal == NOT_UNDERSTOOD
        assert (await without.take(note, at(tmp_path))).refusal == NO_EXTRA

    try:
        with_bot(bot_api, body)
    finally:
        for made in (intake, silent, without):
            made.close()
    ((thread, looping),) = ear.threads
    assert not looping and thread != threading.main_thread().name


def test_a_failing_transcriber_gives_its_sentence(bot_api: BotAPI, tmp_path: Path) -> None:
    voice_id, voice_unique = bot_api.add_file(b"OggS voice", kind="voice", mime_type="audio/ogg")

    class Broken:
        def transcribe(self, audio: bytes) -> str:
            raise TranscriptionError("The speech model is not here.")

    intake = Intake(ingest_into(tmp_path)[0], Broken())

    async def body(bot: Bot) -> None:
        note = message(bot, voice={"file_id": voice_id, "file_unique_id": voice_unique, "duration": 2})
        assert (await intake.take(note, at(tmp_path))).refusal == "The speech model is not here."

    try:
        with_bot(bot_api, body)
    finally:
        intake.close()


def test_a_recording_over_ten_minutes_is_refused_before_it_is_downloaded(bot_api: BotAPI, tmp_path: Path) -> None:
    voice_id, voice_unique = bot_api.add_file(b"OggS voice", kind="voice", mime_type="audio/ogg")
    ear = Ear("hello")
    intake = Intake(ingest_into(tmp_path)[0], ear)

    def voice(seconds: int) -> dict[str, Any]:
        return {"file_id": voice_id, "file_unique_id": voice_unique, "duration": seconds, "mime_type": "audio/ogg"}

    async def body(bot: Bot) -> None:
        for kind in ("voice", "audio"):
            long = message(bot, **{kind: voice(MAX_RECORDING_S + 1)})
            assert await intake.take(long, at(tmp_path)) == Taken(refusal=TOO_LONG)
        note = {"file_id": voice_id, "file_unique_id": voice_unique, "duration": 3600, "length": 240}
        assert (await intake.take(message(bot, video_note=note), at(tmp_path))).refusal == TOO_LONG
        assert not bot_api.downloads and not ear.threads, "nothing fetched, nothing transcribed"
        ten = message(bot, voice=voice(MAX_RECORDING_S))
        assert (await intake.take(ten, at(tmp_path))).transcript == "hello"

    try:
        with_bot(bot_api, body)
    finally:
        intake.close()


class Screen(TelegramOutbox):
    """The chat as its user sees it, in order, into `events` (nothing goes to Telegram)."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        super().__init__(lambda *_: None, lambda *_: None)
        self.events = events

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        self.events.append(("shown", reply.text))


def handlers_on(runtime: Runtime, events: list[tuple[str, str]], intake: Intake) -> TelegramHandlers:
    return TelegramHandlers(runtime, Control(runtime), Screen(events), Gate(runtime.settings, runtime.allowance),
                            intake)


def test_a_transcript_is_shown_only_after_the_message_is_submitted(bot_api: BotAPI, make: HarnessFactory,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   ) -> None:
    runtime = make().runtime
    events: list[tuple[str, str]] = []
    submit = runtime.submit

    def recording_submit(sent: object) -> WriteFuture | None:
        events.append(("submitted", sent.text if isinstance(sent, UserText) else type(sent).__name__))
        return submit(sent)

    monkeypatch.setattr(runtime, "submit", recording_submit)
    intake = Intake(ingest_into(tmp_path)[0], Ear("water the ferns"))
    handlers = handlers_on(runtime, events, intake)
    voice_id, voice_unique = bot_api.add_file(b"OggS voice", kind="voice", mime_type="audio/ogg")

    async def body(bot: Bot) -> None:
        await handlers.take([message(bot, voice={"file_id": voice_id, "file_unique_id": voice_unique,
                                                 "duration": 2})])

    try:
        with_bot(bot_api, body)
    finally:
        intake.close()
    assert events == [("submitted", "water the ferns"), ("shown", "🎙 water the ferns")]


def test_status_does_not_wait_for_an_album_being_downloaded(bot_api: BotAPI, make: HarnessFactory,
                                                            tmp_path: Path) -> None:
    runtime = make().runtime
    events: list[tuple[str, str]] = []
    ingest, _ = ingest_into(tmp_path)
    storing, release = threading.Event(), threading.Event()

    def slow_ingest(data: bytes, name: str, mime: str, directory: Workplace | None) -> Attachment:
        storing.set()
        assert release.wait(30), "the test never let the album go on"
        return ingest(data, name, mime, directory)

    intake = Intake(slow_ingest, None)
    handlers = handlers_on(runtime, events, intake)
    photo_id, photo_unique = bot_api.add_file(make_jpeg(8, 8), kind="photo", mime_type="image/jpeg")
    no_context: Any = None  # on_message reads nothing of PTB's context

    async def body(bot: Bot) -> None:
        album = message(bot, message_id=5, media_group_id="g1",
                        photo=[{"file_id": photo_id, "file_unique_id": photo_unique, "width": 8, "height": 8}])
        status = message(bot, message_id=6, text="/status", entities=[{"type": "bot_command", "offset": 0,
                                                                        "length": 7}])
        await handlers.on_message(Update(1, message=album), no_context)
        assert await asyncio.to_thread(storing.wait, 30), "the album was never handed on"
        try:
            await asyncio.wait_for(handlers.on_message(Update(2, message=status), no_context), 20)
            assert len(events) == 1 and "Model" in events[0][1], events
        finally:
            release.set()
        await handlers.albums.close()

    try:
        with_bot(bot_api, body)
    finally:
        intake.close()
