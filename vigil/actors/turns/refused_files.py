"""Files the model service refused: the turn is answered without them, and no later turn sends them again.

vigil judges a file from its bytes when it arrives (vigil/media/attachments.py), but only the Messages API
really reads it: a PDF whose pages hide in compressed object streams can hold 300 pages where vigil
counted 17, and a PDF or image can be broken in ways no cheap check sees. The API then refuses the whole
request with a 400 (`invalid_request_error`), and since the file stays in the history window every later
turn of the chat would be refused the same way, until /new.

So a bad-request refusal of a request that carries files is mended here (the turn runner's `on_refused`):

- the API names the block it refused ("messages.2.content.0.document.source.base64.data: The PDF
  specified was not valid."): that file becomes a line in the request and the call is made again (each
  retry takes out a file not taken out before, so the retries end);
- a refusal that names no file block may still be caused by one: the call is made once more with every
  file as a line. Those files count as refused only if the turn then succeeds (a refusal with another
  cause would fail again, and then no file is blamed for it).

The refused digests are kept in the session header (`SessionHeader.unreadable`), written with the turn:
the next turns, after an eviction or a restart too, send those files as lines from the start instead of
paying a refused request at every turn. The header, not the stored turn, because an older turn's file
can be the one refused and stored turns are never rewritten; a digest rather than a (turn, index) place,
because the same bytes sent again would be refused again. The user is told which file could not be read,
in the API's own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil.errors import ModelError
from vigil.model.attached import CARRIED, attachment_of, materialize, ref_at, ref_spots
from vigil.ports import MediaSource
from vigil.records.schema import Attachment

ApiMessage = dict[str, Any]

MAX_REMEMBERED = 200  # refused digests a header keeps (the oldest go first): a header stays small
# A block of a message, or a block inside a tool_result's content (an MCP tool's image).
_BLOCK_PATH = re.compile(r"^messages\.(\d+)\.content\.(\d+)(?:\.content\.(\d+))?\b")
_PATH_PREFIX = re.compile(r"^[\w.\[\]-]+:\s*")


@dataclass
class RefusedFiles:
    """The mending of one turn's requests; `messages` are the request's messages with placeholders."""

    messages: list[ApiMessage]
    media: MediaSource | None
    known: frozenset[str] = frozenset()  # refused before (the header's list)
    named: dict[str, tuple[Attachment, str]] = field(default_factory=dict)  # digest -> (file, why): the API said so
    suspected: dict[str, tuple[Attachment, str]] = field(default_factory=dict)  # taken out on a refusal naming none
    _all_out: bool = False

    def request_messages(self) -> list[ApiMessage]:
        return materialize(self.messages, self.media, unreadable=self.known | self.named.keys() | self.suspected.keys())

    def on_refused(self, error: ModelError) -> list[ApiMessage] | None:
        """The runner's `on_refused`: the request's messages without the refused file, or None."""
        out = self.known | self.named.keys() | self.suspected.keys()
        detail = error.detail or error.sentence
        refused = self._named_file(detail)
        if refused is not None and refused.digest not in out:
            self.named[refused.digest] = (refused, reason_of(detail))
            return self.request_messages()
        if self._all_out:
            return None
        self._all_out = True
        left = [a for a in self._carried() if a.digest not in out]
        if not left:
            return None
        for attachment in left:
            self.suspected[attachment.digest] = (attachment, reason_of(detail))
        return self.request_messages()

    def refused(self, succeeded: bool) -> list[tuple[Attachment, str]]:
        """The files this turn found unreadable: those the API named, and the suspected ones if the turn
        then went through."""
        return [*self.named.values(), *(self.suspected.values() if succeeded else ())]

    def _named_file(self, detail: str) -> Attachment | None:
        found = _BLOCK_PATH.match(detail)
        if found is None:
            return None
        m, b = int(found.group(1)), int(found.group(2))
        spot = (m, b, int(found.group(3)) if found.group(3) is not None else None)
        return attachment_of(ref_at(self.messages, spot)) if spot in ref_spots(self.messages) else None

    def _carried(self) -> list[Attachment]:
        return [a for spot in ref_spots(self.messages) if (a := attachment_of(ref_at(self.messages, spot))).kind
                in CARRIED]


def reason_of(detail: str) -> str:
    """The API's words without the field path they start with."""
    return _PATH_PREFIX.sub("", detail.strip(), count=1) or "the model service refused it"


def remember(known: tuple[str, ...], refused: list[tuple[Attachment, str]]) -> tuple[str, ...]:
    """The header's list of refused digests with this turn's added (newest last, at most MAX_REMEMBERED)."""
    added = [a.digest for a, _ in refused if a.digest not in known]
    return (*known, *dict.fromkeys(added))[-MAX_REMEMBERED:]


def tell(refused: list[tuple[Attachment, str]]) -> str:
    """One sentence per file for the user: "I couldn't read report.pdf: The PDF specified was not valid." """
    lines = []
    for attachment, why in refused:
        name = attachment.name or ("the photo" if attachment.kind == "image" else "the file")
        lines.append(f"I couldn't read {name}: {why}")
    return "\n".join(lines)
