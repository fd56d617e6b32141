"""A stand-in for the `faster_whisper` package (the `voice` extra), for `vigil run` subprocesses in tests.

No whisper model can be fetched here (no network beyond package registries), so end-to-end tests put
this directory first on the subprocess's PYTHONPATH: vigil then finds "faster_whisper" exactly as with
the extra installed, and nothing in vigil knows it is a test. It keeps the real API's shape
(`WhisperModel(model_size_or_path, device=..., compute_type=..., download_root=...)`,
`.transcribe(audio) -> (lazy segments, info)`) and is as strict as the real one where vigil could go
wrong: an unknown model name is refused, audio must be a binary file-like object or a path, bytes that
are no Ogg/MP3/MP4 container fail to decode.

What it "hears": audio made by `voice_bytes(text)` (an Ogg page header followed by `SAY:` and the words).
Words containing `HOLD` keep the transcription waiting until a file named `release` appears in the
download root: a test can show other chats going on meanwhile. Each load and each transcription is
appended to `<download_root>/standin.log` as a JSON line (thread name, whether an asyncio loop runs in
that thread), so a test can check it ran once, in the data dir, on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MODELS = ("tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium", "large-v1",
          "large-v2", "large-v3", "large", "distil-large-v3", "large-v3-turbo", "turbo")
MAGIC = (b"OggS", b"ID3", b"\xff\xfb", b"\x00\x00\x00")  # Ogg, MP3 (tag or frame), MP4 box size
HOLD_TIMEOUT_S = 30.0


def voice_bytes(text: str) -> bytes:
    """Audio the stand-in "hears" as `text`."""
    return b"OggS\x00\x02" + b"\x00" * 20 + b"SAY:" + text.encode()


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Any] | None
    temperature: float | None


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float
    duration_after_vad: float
    all_language_probs: list[Any] | None
    transcription_options: Any
    vad_options: Any


def _log(root: Path, event: str, **fields: Any) -> None:
    try:
        loop = asyncio.get_running_loop() is not None
    except RuntimeError:
        loop = False
    line = {"event": event, "thread": threading.current_thread().name,
            "main_thread": threading.current_thread() is threading.main_thread(), "event_loop": loop, **fields}
    with (root / "standin.log").open("a") as f:
        f.write(json.dumps(line) + "\n")


class WhisperModel:
    def __init__(self, model_size_or_path: str, device: str = "auto", device_index: int | list[int] = 0,
                 compute_type: str = "default", cpu_threads: int = 0, num_workers: int = 1,
                 download_root: str | None = None, local_files_only: bool = False, **kwargs: Any) -> None:
        if model_size_or_path not in MODELS and not Path(model_size_or_path).is_dir():
            raise ValueError(f"Invalid model size '{model_size_or_path}', expected one of: {', '.join(MODELS)}")
        if download_root is None:
            raise AssertionError("vigil must name the download root (its data dir), not the user's cache")
        self.root = Path(download_root)
        snapshot = self.root / f"models--Systran--faster-whisper-{model_size_or_path}"
        if not snapshot.exists():
            snapshot.mkdir(parents=True)  # "downloaded", once
            (snapshot / "model.bin").write_bytes(b"stand-in weights")
            _log(self.root, "fetched", model=model_size_or_path)
        _log(self.root, "loaded", model=model_size_or_path, device=device, compute_type=compute_type)

    def transcribe(self, audio: str | BinaryIO, **options: Any) -> tuple[Iterator[Segment], TranscriptionInfo]:
        data = Path(audio).read_bytes() if isinstance(audio, str) else audio.read()
        if not isinstance(data, bytes):
            raise TypeError("audio must be a path or a binary file-like object")
        if not data.startswith(MAGIC):
            raise RuntimeError("Invalid data found when processing input")  # PyAV's InvalidDataError text
        words = data.split(b"SAY:", 1)[1].decode() if b"SAY:" in data else ""
        info = TranscriptionInfo("en", 0.99, 1.0, 1.0, None, options, None)

        def segments() -> Iterator[Segment]:  # lazy, as the real ones: the work happens while reading
            _log(self.root, "transcribing", words=words)
            if "HOLD" in words:
                deadline = time.monotonic() + HOLD_TIMEOUT_S
                while not (self.root / "release").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            for index, sentence in enumerate(part for part in words.split(". ") if part):
                yield Segment(index, 0, float(index), float(index + 1), f" {sentence}", [], -0.1, 1.0, 0.01,
                              None, 0.0)

        return segments(), info
