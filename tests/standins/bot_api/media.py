"""How Telegram describes a file inside a message: the PhotoSize array of a photo, and the Document,
Voice, Audio and VideoNote objects, each pointing at a file kept in the world (`World.store_file`).

A photo is never one file at Telegram: it arrives as several sizes, smallest first, each its own file
(distinct file_id and file_unique_id), and a bot picks one (usually the last, the largest). So users'
photos and the bot's own get the same treatment here: the largest size is the bytes given; the smaller
ones are JPEGs Telegram would have made (90, 320, 800, 1280 px on the long side), made with
`tests.standins.images.make_jpeg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from tests.standins.bot_api.model import StoredFile
from tests.standins.bot_api.state import World
from tests.standins.images import MIME_OF_FORMAT, ImageInfo, image_info, make_jpeg

# The long sides of the thumbnails Telegram makes ("s", "m", "x", "y"), and the largest it keeps ("w").
THUMBNAIL_SIDES: Final = (90, 320, 800, 1280)
MAX_PHOTO_SIDE: Final = 2560
_EXTENSIONS: Final = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp"}


def readable_image(data: bytes) -> ImageInfo:
    """The image's header, or ValueError: a Telegram client never sends undecodable bytes as a photo."""
    info = image_info(data)
    if info is None or info.width < 1 or info.height < 1:
        raise ValueError("not an image Telegram could show as a photo (PNG, JPEG, GIF or WebP expected)")
    return info


def _scaled(info: ImageInfo, side: int) -> tuple[int, int]:
    scale = side / max(info.width, info.height)
    return max(1, round(info.width * scale)), max(1, round(info.height * scale))


def _photo_size(stored: StoredFile, width: int, height: int) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.file_size,
        "width": width,
        "height": height,
    }


def photo_sizes(world: World, photo: bytes | Sequence[bytes], *, cap: bool = False) -> list[dict[str, Any]]:
    """The PhotoSize array for ``photo``, each size stored as its own file.

    ``photo`` as bytes: thumbnails are made for every standard side below its long side, and it is the
    largest size itself, unless ``cap`` (what Telegram does to a bot's upload) and it is longer than
    2560 px: then the largest is a 2560 px rendition. As a sequence of bytes: those are the sizes,
    smallest first, as given."""
    if not isinstance(photo, bytes | bytearray):
        sizes = [bytes(p) for p in photo]
        if not sizes:
            raise ValueError("a photo needs at least one size")
        infos = [readable_image(p) for p in sizes]
        areas = [i.width * i.height for i in infos]
        if areas != sorted(areas):
            raise ValueError("photo sizes go smallest first")
        return [
            _photo_size(_store(world, p, i), i.width, i.height)
            for p, i in zip(sizes, infos, strict=True)
        ]
    data = bytes(photo)
    info = readable_image(data)
    long_side = max(info.width, info.height)
    out: list[dict[str, Any]] = []
    for n, side in enumerate(THUMBNAIL_SIDES):
        if side >= long_side:
            break
        width, height = _scaled(info, side)
        thumb = make_jpeg(width, height, level=40 + 40 * n)
        out.append(_photo_size(_store(world, thumb), width, height))
    if cap and long_side > MAX_PHOTO_SIDE:
        width, height = _scaled(info, MAX_PHOTO_SIDE)
        out.append(_photo_size(_store(world, make_jpeg(width, height, level=220)), width, height))
    else:
        out.append(_photo_size(_store(world, data, info), info.width, info.height))
    return out


def _store(world: World, data: bytes, info: ImageInfo | None = None) -> StoredFile:
    fmt = info.format if info is not None else "jpeg"
    return world.store_file(data, "photo", mime_type=MIME_OF_FORMAT[fmt], extension=_EXTENSIONS[fmt])


def document_of(stored: StoredFile) -> dict[str, Any]:
    """The Document object for a stored file."""
    d: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
    if stored.file_name is not None:
        d["file_name"] = stored.file_name
    if stored.mime_type is not None:
        d["mime_type"] = stored.mime_type
    d["file_size"] = stored.file_size
    return d


def voice_of(stored: StoredFile, duration: int) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "duration": duration,
        "mime_type": stored.mime_type or "audio/ogg",
        "file_size": stored.file_size,
    }


def audio_of(stored: StoredFile, duration: int, performer: str | None, title: str | None) -> dict[str, Any]:
    d = {**document_of(stored), "duration": duration}
    if performer:
        d["performer"] = performer
    if title:
        d["title"] = title
    return d


def video_note_of(stored: StoredFile, duration: int, length: int) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "length": length,
        "duration": duration,
        "file_size": stored.file_size,
    }
