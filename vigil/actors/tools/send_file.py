"""send_file: Claude hands a file from the chat's working directory to the chat.

The path goes through the editor's jail for this chat's workspace (`Toolbox.jail_for`), so the rules
are the editor's, checked the same way: nothing outside the workspace (`..`, absolute paths
elsewhere, symlinks out, /proc, the data directory), only regular files. The file is opened once,
its size checked on the open descriptor against the upload limit before a byte is read, and read
once into memory (at most `VIGIL_MAX_UPLOAD_MB`, 50 MB): what is sent is what was checked, even if
the file changes meanwhile.

A file goes as a document by default: the exact bytes under its name, which is what someone who
asked for "the file" wants (a chart, a build, a PDF). With `as_photo`, a PNG, JPEG or WebP image (by
its bytes, not its name) of at most 10 MB is shown inline as a photo instead, recompressed by
Telegram. The tool waits for the channel's answer, so its result says whether the file arrived.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.media.files import sniff_image
from vigil.ports import OutgoingFile
from vigil.tools.jail import JailError
from vigil.tools.outcome import ToolOutcome

TOOL_NAME = "send_file"
MB = 1024 * 1024
PHOTO_LIMIT_MB = 10  # Telegram's limit on a photo
CAPTION_LIMIT = 1024  # Telegram's limit on a caption
DESCRIBE_WIDTH = 60


@functools.lru_cache(maxsize=4)
def spec(limit_mb: int) -> dict[str, Any]:
    # One dict for every session (read only): a live session kept a copy of its 1.4 KB in its tool set.
    return {
        "name": TOOL_NAME,
        "description": (
            "Send a file from the working directory to this chat. It goes as a document: the exact file, "
            f"under its name, up to {limit_mb} MB. With as_photo, a PNG, JPEG or WebP image up to "
            f"{min(limit_mb, PHOTO_LIMIT_MB)} MB is shown inline as a photo instead (Telegram recompresses "
            "it). The result says whether the file arrived."),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string",
                         "description": "The file: relative to the working directory, or absolute inside it."},
                "caption": {"type": "string",
                            "description": f"Optional text shown with the file (Markdown, at most "
                                           f"{CAPTION_LIMIT} characters)."},
                "as_photo": {"type": "boolean",
                             "description": "Show an image inline as a photo rather than as a file."},
            },
            "required": ["path"],
        },
    }


# What Telegram takes as a photo (by the bytes' signature); a GIF goes as a document or an animation.
PHOTO_FORMATS = ("PNG", "JPEG", "WEBP")


def human_size(size: int) -> str:
    """Sizes in the units Telegram states its limits in (its 50 MB are 50 × 1024 × 1024 bytes)."""
    if size < 1024:
        return f"{size} bytes"
    if size < MB:
        return f"{size / 1024:.1f} KB"
    return f"{size / MB:.1f} MB"


def _refused(reason: str) -> ToolOutcome:
    return ToolOutcome(content=f"not sent: {reason}", is_error=True)


def read_for_upload(session: Session, place: tuple[str, str], path: str, limit: int) -> tuple[Path, bytes] | str:
    """(real path, bytes) of the file `path` names in the workspace, or why it cannot be sent."""
    cwd, workspace = Path(place[0]), Path(place[1])
    try:
        jail = session.deps.toolbox.jail_for(workspace)
        real = jail.resolve(cwd, path)
        fd = jail.open_file(cwd, path, os.O_RDONLY)
    except JailError as exc:
        return str(exc)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return f"{path} is a directory; send one file (with bash you could pack it into an archive first)"
        if info.st_size > limit:
            return (f"{path} is {human_size(info.st_size)}, over the limit of {human_size(limit)} "
                    f"for sending it here; make it smaller or split it")
        # One more byte than allowed: a file that grew since fstat is refused, not cut short.
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, MB))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    content = b"".join(chunks)
    if len(content) > limit:
        return f"{path} grew past the limit of {human_size(limit)} while it was being read"
    if not content:
        return f"{path} is empty; Telegram does not take empty files"
    return real, content


def send_file(session: Session, place: tuple[str, str], tool_input: dict[str, Any],
              cancel: CancelToken) -> ToolOutcome:
    assert session.header is not None
    path, caption, as_photo = tool_input.get("path"), tool_input.get("caption", ""), tool_input.get("as_photo", False)
    if not isinstance(path, str) or not path.strip():
        return _refused("`path` must name a file in the working directory")
    if not isinstance(caption, str):
        return _refused("`caption` must be text")
    if not isinstance(as_photo, bool):
        return _refused("`as_photo` must be true or false")
    if len(caption.strip()) > CAPTION_LIMIT:
        return _refused(f"the caption is {len(caption.strip())} characters, over Telegram's {CAPTION_LIMIT}; "
                        "shorten it, or say the rest in your reply")
    limit_mb = session.deps.settings.max_upload_mb
    limit = min(limit_mb, PHOTO_LIMIT_MB) * MB if as_photo else limit_mb * MB
    read = read_for_upload(session, place, path, limit)
    if isinstance(read, str):
        return _refused(read)
    real, content = read
    if as_photo and sniff_image(content) not in PHOTO_FORMATS:
        return _refused(f"{path} is not a PNG, JPEG or WebP image, so it cannot go as a photo; "
                        "send it without as_photo, as a document")
    target = session.header.target
    outbox = session.deps.outbox(target)
    if outbox is None:
        return _refused("this chat's channel is not connected")
    file = OutgoingFile(path=str(real), filename=real.name or "file", content=content, caption=caption.strip(),
                        as_photo=as_photo)
    delivery = outbox.send_file(session.key, target, file, cancel)
    return ToolOutcome(content=delivery.detail or ("sent" if delivery.delivered else "not sent"),
                       is_error=not delivery.delivered)


def send_file_tools(session: Session, place: tuple[str, str]) -> ToolSet:
    """`place` is (cwd, workspace) as the header holds them when the set is made."""

    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return send_file(session, place, tool_input, cancel)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        path = tool_input.get("path")
        shown = "".join(c if c.isprintable() else "?" for c in path) if isinstance(path, str) else "?"
        line = f"send {shown}"
        return line if len(line) <= DESCRIBE_WIDTH else "send …" + shown[-(DESCRIBE_WIDTH - 6):]

    return ToolSet(specs=(spec(session.deps.settings.max_upload_mb),), run=run, describe=describe)
