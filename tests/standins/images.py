"""Image bytes for both stand-ins: what format some bytes really are and how large, and real images to send.

Telegram answers an upload by its dimensions (``PHOTO_INVALID_DIMENSIONS``) and the Messages API refuses
an image whose bytes are not the media type it was declared as, or larger than 8000 px; both judge the
bytes, not the file name. So the stand-ins read the headers themselves (PNG, JPEG, GIF, WebP: no Pillow
needed, and no pixels decoded), and tests get real, decodable images of any size in milliseconds:
`make_jpeg` (a flat grey-level baseline JPEG, what Telegram serves photos as) and `make_png` (a flat
colour, palette PNG), each optionally padded to a byte size with an ancillary chunk the decoders skip.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Final, Literal

ImageFormat = Literal["jpeg", "png", "gif", "webp"]

MIME_OF_FORMAT: Final[dict[ImageFormat, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
}
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (every SOFn except DHT C4, JPG C8 and DAC CC) carry the dimensions.
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says: its real format and, when readable, its size in pixels."""

    format: ImageFormat
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        return MIME_OF_FORMAT[self.format]


def sniff_format(data: bytes) -> ImageFormat | None:
    """The image format the magic numbers say, or None for anything else (a PDF, text, garbage)."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_info(data: bytes) -> ImageInfo | None:
    """Format and dimensions from the header; None when the bytes are no image or the header is cut."""
    fmt = sniff_format(data)
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                return None
            width, height = struct.unpack(">II", data[16:24])
            return ImageInfo(fmt, width, height)
        if fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return ImageInfo(fmt, width, height)
        if fmt == "webp":
            return _webp_info(data)
        if fmt == "jpeg":
            return _jpeg_info(data)
    except struct.error:
        return None
    return None


def _webp_info(data: bytes) -> ImageInfo | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit sizes, minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", width, height)
    return None


def _jpeg_info(data: bytes) -> ImageInfo | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return ImageInfo("jpeg", width, height)
        if marker == 0xDA:  # start of scan before any frame header: not a JPEG we can read
            return None
        i += 2 + length
    return None


# -- making images --------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 60, 30), *, size: int = 0) -> bytes:
    """A valid PNG of ``width`` x ``height`` in one colour (a 1-bit palette image, so even 10000 px is
    instant); ``size`` pads it to exactly that many bytes with a private ancillary chunk decoders skip.
    Different colours give different bytes."""
    if not (1 <= width <= 0x7FFFFFFF and 1 <= height <= 0x7FFFFFFF):
        raise ValueError("PNG dimensions are 1..2^31-1")
    row = b"\x00" + bytes(math.ceil(width / 8))  # filter byte, then every pixel palette index 0
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    head = _PNG_MAGIC + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0))
    head += _png_chunk(b"PLTE", bytes(rgb))
    tail = _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return head + _padding_chunk(size - len(head) - len(tail)) + tail if size else head + tail


def _padding_chunk(room: int) -> bytes:
    if room < 12:
        raise ValueError("size is smaller than the image itself")
    return _png_chunk(b"prVt", bytes(room - 12))


def make_jpeg(width: int, height: int, level: int = 128, *, size: int = 0) -> bytes:
    """A valid baseline JPEG of ``width`` x ``height`` in one grey ``level`` (0..255), as Telegram serves
    photos. Every 8x8 block is a DC value and an end-of-block, so a 10000 px image takes milliseconds.
    ``size`` pads it to exactly that many bytes with a COM segment (decoders skip it)."""
    if not (1 <= width <= 0xFFFF and 1 <= height <= 0xFFFF) or not 0 <= level <= 255:
        raise ValueError("JPEG dimensions are 1..65535 and the level 0..255")
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    # With a quantisation table of ones the first block's DC coefficient is 8 * (level - 128); every
    # later block repeats it (difference 0, code "00") and ends at once (EOB, code "0" in our AC table).
    dc = 8 * (level - 128)
    category = abs(dc).bit_length()
    extra = "" if category == 0 else format(dc if dc > 0 else dc + (1 << category) - 1, f"0{category}b")
    bits = _DC_CODES[category] + extra + "0" + "000" * (blocks - 1)
    bits += "1" * (-len(bits) % 8)  # pad the last byte with ones, as the standard asks
    scan = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    head = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    head += _segment(0xDB, b"\x00" + bytes([1] * 64))
    head += _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    head += _segment(0xC4, b"\x00" + bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]) + bytes(range(12)))
    head += _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    head += _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    tail = scan + b"\xff\xd9"
    if not size:
        return head + tail
    room = size - len(head) - len(tail)
    if room < 0:
        raise ValueError("size is smaller than the image itself")
    pads = []
    while room > 0:
        take = min(room, _MAX_SEGMENT)
        if 0 < room - take < 4:  # leave room for one more (empty) segment
            take -= 4
        if take < 4:
            raise ValueError("no whole number of padding segments makes that size")
        pads.append(_segment(0xFE, bytes(take - 4)))
        room -= take
    return head[:2] + b"".join(pads) + head[2:] + tail


_MAX_SEGMENT: Final = 0xFFFF + 2  # marker, then a length that counts itself
# The standard luminance DC table (ITU T.81 K.3): the code of each size category.
_DC_CODES: Final = (
    "00", "010", "011", "100", "101", "110", "1110", "11110", "111110", "1111110", "11111110", "111111110",
)  # fmt: skip


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
