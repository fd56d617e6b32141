"""Real media files for tests, made with Pillow: photos, screenshots with transparency, PDFs."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib

from PIL import Image


def jpeg(width: int = 640, height: int = 480, seed: int = 1, quality: int = 90) -> bytes:
    """A JPEG photo; `seed` varies the picture (and so its digest)."""
    image = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    rng = random.Random(seed)
    for _ in range(20):
        x, y = rng.randrange(width), rng.randrange(height)
        image.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                    (x, y, min(width, x + width // 8 + 1), min(height, y + height // 8 + 1)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png(width: int = 320, height: int = 200, alpha: bool = False) -> bytes:
    image = Image.new("RGBA" if alpha else "RGB", (width, height), (10, 200, 30, 128) if alpha else (10, 200, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(width: int, height: int, seed: int = 3) -> bytes:
    """A PNG that does not compress: big in bytes for its size."""
    data = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), data).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


_PDF_DATE = time.gmtime(1_767_225_600)  # 2026-01-01, as Pillow takes a date (a struct_time)


def pdf(pages: int = 2) -> bytes:
    """A real PDF of `pages` pages."""
    images = [Image.new("RGB", (200, 280), (255, 255, 255 - i % 200)) for i in range(pages)]
    buffer = io.BytesIO()
    # Pillow stamps the time of saving into the file: fixed here, so two calls give the same bytes.
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], creationDate=_PDF_DATE, modDate=_PDF_DATE)
    return buffer.getvalue()


def pdf_in_object_streams(pages: int) -> bytes:
    """A PDF 1.5 whose objects all sit in one compressed object stream, found through an xref stream.

    Common in PDFs from office suites: nothing of the page tree is visible in the raw bytes, so a count
    of `/Type /Page` there finds nothing (and a size-based guess says 1 page for this small file)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (3 + i) for i in range(pages)) + b"] /Count %d >>"
               % pages]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 280] >>" for _ in range(pages)]
    offsets, body = [], b""
    for obj in objects:
        offsets.append(len(body))
        body += obj + b"\n"
    index = b" ".join(b"%d %d" % (number, offset) for number, offset in enumerate(offsets, start=1)) + b"\n"
    packed = zlib.compress(index + body)
    stream_no, xref_no = len(objects) + 1, len(objects) + 2
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    stream_at = len(out)
    out += (b"%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\nstream\n"
            % (stream_no, len(objects), len(index), len(packed))) + packed + b"\nendstream\nendobj\n"
    xref_at = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    rows += [struct.pack(">BIH", 2, stream_no, i) for i in range(len(objects))]
    rows += [struct.pack(">BIH", 1, stream_at, 0), struct.pack(">BIH", 1, xref_at, 0)]
    table = zlib.compress(b"".join(rows))
    out += (b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /Length %d >>\n"
            b"stream\n" % (xref_no, xref_no + 1, len(table))) + table + b"\nendstream\nendobj\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)
