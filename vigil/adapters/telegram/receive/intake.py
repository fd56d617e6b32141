"""Media a user sends, made ready for the turn: photos, image files, documents, voice.

A photo reaches the model as an image, a PDF as a document, a text file as text, every document also
lands in the chat's working directory under `uploads/` so the file and shell tools can work on it, and a
voice note becomes the turn's text. This module does the Telegram half: which file of a message to fetch
(the largest size of a photo), the Bot API's 20 MB download limit (checked before `getFile`, and
`getFile`'s own "file is too big"), the length of a recording (checked before the download), the
download itself, and the sentence a user gets instead of a turn when something cannot be taken: whatever
goes wrong, a full disk included, the user hears so in one sentence, never nothing. What a file *is*
(sniffing, downscaling, token estimates) and how it is saved safely is `vigil.media.attachments`'s: this
module only calls it.

Where it runs: downloads are awaited on the PTB loop (network waits, no CPU), inside the chat's own
lane of `PerChatOrder`, so one chat's 20 MB download delays that chat's next update only; hashing,
writing and image work run in a worker thread (`asyncio.to_thread`), transcription in a single
worker of its own (CPU-bound: two at once on a small machine would only each take twice as long).

Durability: the message reaches the durable inbox only when its files are stored, so an update with a
file to fetch (`fetches`) is kept as it came before the download starts, and confirmed to Telegram on
that copy (adapters/telegram/receive/receiver.py): a crash during the download loses nothing, the restart
downloads again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from telegram import Message
from telegram.error import BadRequest, TelegramError

from vigil.logs import get_logger
from vigil.media import attachments
from vigil.media.transcribe import NO_EXTRA, NOT_UNDERSTOOD, WhisperTranscriber, voice_extra_installed
from vigil.media.uploads import UploadError, Workplace
from vigil.ports import Transcriber, TranscriptionError
from vigil.records.schema import Attachment
from vigil.runtime import Runtime
from vigil.tools.workspace import WorkspaceError

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the public Bot API serves files up to 20 MB
# One transcription at a time, and it holds that chat's lane: a small model takes about a tenth of a
# recording's length on two cores, so ten minutes keep everyone else's voice notes within a minute.
MAX_RECORDING_S = 10 * 60

TOO_BIG = ("That file is larger than the 20 MB Telegram lets bots download, so I couldn't take it; "
           "please send a smaller file (or a link to it).")
NOT_TAKEN = "I can't take {what} yet; please send text, photos, files or voice messages."
DOWNLOAD_FAILED = "I couldn't download that file from Telegram; please send it again."
NOT_SAVED = "I couldn't take that file: {reason}. Nothing was kept."
TOO_LONG = ("That recording is longer than 10 minutes, too long for me to transcribe; "
            "please send a shorter one, or split it.")
SAVE_FAILED = "I couldn't save your file on my side, so I didn't take it; please try again later."

# Message kinds vigil does not take, in the words of the refusal.
_UNTAKEN = (("video", "videos"), ("animation", "GIFs"), ("sticker", "stickers"), ("location", "locations"),
            ("venue", "places"), ("contact", "contacts"), ("poll", "polls"), ("dice", "dice"), ("game", "games"),
            ("story", "stories"), ("paid_media", "paid media"))


@dataclass(frozen=True)
class Taken:
    """What one message contributes to a turn, or the sentence the user gets instead."""

    attachments: tuple[Attachment, ...] = ()
    transcript: str = ""  # a voice message's words: the turn's text, shown in the chat first
    refusal: str = ""  # one sentence for the user; nothing was kept


Ingest = Callable[[bytes, str, str, Workplace | None], Attachment]
"""The ingest side (`vigil.media.attachments`): (bytes, file name, mime, the chat's workspace and working directory,
or None) -> an Attachment whose bytes are in the media store; with a place, also saved under its `uploads/`."""


class Intake:
    """Turns the media of a message into a `Taken`; one per adapter."""

    def __init__(self, ingest: Ingest, transcriber: Transcriber | None) -> None:
        self.ingest = ingest
        self.transcriber = transcriber
        # One transcription at a time: CPU-bound, and it must never run on the loop or an actor thread.
        self.speech = ThreadPoolExecutor(1, thread_name_prefix="whisper")
        self.log = get_logger(__name__)

    def close(self) -> None:
        self.speech.shutdown(wait=False, cancel_futures=True)

    async def take(self, message: Message, directory: Callable[[], Workplace]) -> Taken:
        """The media of `message` (none: an empty Taken); `directory` finds the chat's workspace and cwd."""
        try:
            if message.photo:
                largest = max(message.photo, key=lambda size: size.width * size.height)
                data = await download(message, largest.file_id, largest.file_size)
                return Taken(attachments=(await asyncio.to_thread(self.ingest, data, "", "image/jpeg", None),))
            if message.document is not None:
                return await self._document(message, directory)
            voice = message.voice or message.audio or message.video_note
            if voice is not None:
                # The wire's seconds: PTB's `duration` property warns about its coming timedelta type.
                if voice.to_dict().get("duration", 0) > MAX_RECORDING_S:
                    return Taken(refusal=TOO_LONG)
                data = await download(message, voice.file_id, voice.file_size)
                return Taken(transcript=await self._transcribe(data))
        except _TooBig:
            return Taken(refusal=TOO_BIG)
        except TranscriptionError as exc:
            return Taken(refusal=exc.sentence)
        except TelegramError as exc:
            self.log.warning("telegram.download_failed", chat_id=message.chat.id, error=repr(exc))
            return Taken(refusal=DOWNLOAD_FAILED)
        except OSError as exc:  # the media store's disk: full, read-only, permissions
            self.log.error("media.not_saved", chat_id=message.chat.id, error=repr(exc))
            return Taken(refusal=SAVE_FAILED)
        except Exception:  # a bug must not swallow the message without a word to its sender
            self.log.exception("media.intake_failed", chat_id=message.chat.id)
            return Taken(refusal=SAVE_FAILED)
        what = next((words for field, words in _UNTAKEN if getattr(message, field, None)), "")
        return Taken(refusal=NOT_TAKEN.format(what=what)) if what else Taken()

    async def _document(self, message: Message, directory: Callable[[], Workplace]) -> Taken:
        document = message.document
        assert document is not None
        data = await download(message, document.file_id, document.file_size)
        name = document.file_name or "file"
        mime = (document.mime_type or "application/octet-stream").lower()

        def store() -> Taken:
            # Every document lands in uploads/, a picture sent as a file too: it may be the file to work on.
            try:
                return Taken(attachments=(self.ingest(data, name, mime, directory()),))
            except (UploadError, WorkspaceError) as exc:
                self.log.error("upload.not_saved", chat_id=message.chat.id, error=str(exc))
                return Taken(refusal=NOT_SAVED.format(reason=exc))

        return await asyncio.to_thread(store)

    async def _transcribe(self, data: bytes) -> str:
        if self.transcriber is None:
            raise TranscriptionError(NO_EXTRA)
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(self.speech, self.transcriber.transcribe, data)
        if not text.strip():
            raise TranscriptionError(NOT_UNDERSTOOD)
        return text.strip()


def fetches(message: Message) -> bool:
    """Whether taking `message` downloads a file from Telegram first: a photo, a document, a recording."""
    return bool(message.photo or message.document or message.voice or message.audio or message.video_note)


class _TooBig(Exception):
    pass


async def download(message: Message, file_id: str, size: int | None) -> bytes:
    """The bytes of one file of `message`; _TooBig over the Bot API's download limit."""
    if size is not None and size > DOWNLOAD_LIMIT:
        raise _TooBig()
    try:
        file = await message.get_bot().get_file(file_id)
    except BadRequest as exc:
        if "too big" in str(exc).lower():
            raise _TooBig() from None
        raise
    if file.file_size is not None and file.file_size > DOWNLOAD_LIMIT:
        raise _TooBig()
    return bytes(await file.download_as_bytearray())


def default_intake(runtime: Runtime) -> Intake:
    """The intake of `vigil run`: media into the runtime's media store, faster-whisper if installed."""
    settings = runtime.settings
    transcriber = (WhisperTranscriber(settings.whisper_model, settings.data_dir / "whisper")
                   if voice_extra_installed() else None)
    media = runtime.media
    disk = runtime.disk

    def ingest(data: bytes, name: str, mime: str, place: Workplace | None) -> Attachment:
        try:
            # Saved through the chat's own workspace's jail, never the whole root's (vigil/media/uploads.py).
            return attachments.ingest(media, data, name=name, mime=mime, root=place.workspace if place else None,
                                      cwd=place.cwd if place else None)
        finally:
            disk.poke()  # a file took room (or found none): the admins hear of a disk running full soon

    return Intake(ingest, transcriber)
