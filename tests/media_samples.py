"""Real media files for tests, made with Pillow: photos, screenshots with transparency, PDFs."""

from __future__ import annotations

import io
import random

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


def pdf(pages: int = 2) -> bytes:
    """A real PDF of `pages` pages."""
    images = [Image.new("RGB", (200, 280), (255, 255, 255 - i % 200)) for i in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:])
    return buffer.getvalue()
