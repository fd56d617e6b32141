"""Voice messages to text on this machine, with faster-whisper (the optional `voice` extra).

People dictate while walking; a voice note is the turn's text once it is transcribed. The audio never
leaves the machine: faster-whisper (CTranslate2, int8 on the CPU) runs here. The model named by
`VIGIL_WHISPER_MODEL` is fetched once, on the first voice message, into `<data dir>/whisper/` (the
service's own state: no cache in a home directory the service user does not have), and kept loaded
from then on. faster-whisper decodes Telegram's OGG/Opus, MP3/M4A and MP4 video notes itself (PyAV).

`transcribe` blocks for seconds: the adapter runs it in a worker thread of its own, one at a time
(two at once on a small machine's cores would each take twice as long), so text messages of every
chat go on meanwhile. Without the extra, or when the model cannot be had, it raises
`TranscriptionError` with one sentence for the user.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from pathlib import Path
from typing import Any

from vigil.errors import TranscriptionError
from vigil.logs import get_logger

NO_EXTRA = ("I can't listen to voice messages here: the voice extra is not installed "
            "(pip install 'vigil[voice]', then restart vigil). Please write your message as text.")
NOT_UNDERSTOOD = "I couldn't make out any words in that recording."


def voice_extra_installed() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None


class WhisperTranscriber:
    """`vigil.ports.Transcriber` on faster-whisper; the model is loaded on first use, once."""

    def __init__(self, model: str, root: Path) -> None:
        self.model_name = model
        self.root = root
        self._model: Any = None
        self._lock = threading.Lock()
        self.log = get_logger(__name__)

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise TranscriptionError(NO_EXTRA) from None
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self._model = WhisperModel(self.model_name, device="cpu", compute_type="int8",
                                           download_root=str(self.root))
            except Exception as exc:  # a missing network, a bad name: the library raises many kinds
                self.log.error("whisper.unavailable", model=self.model_name, error=repr(exc))
                raise TranscriptionError(
                    f"I can't listen to voice messages right now: the speech model {self.model_name!r} could "
                    "not be loaded (the operator's log says why). Please write your message as text.") from None
            self.log.info("whisper.loaded", model=self.model_name, root=str(self.root))
            return self._model

    def transcribe(self, audio: bytes) -> str:
        model = self._loaded()
        try:
            segments, _info = model.transcribe(io.BytesIO(audio), vad_filter=True)
            # Segments come lazily: decoding and recognition happen while they are read.
            return " ".join(text for segment in segments if (text := str(segment.text).strip()))
        except Exception as exc:
            self.log.warning("whisper.failed", error=repr(exc), bytes=len(audio))
            raise TranscriptionError(NOT_UNDERSTOOD) from None
