"""The console adapter: `vigil chat`, the same actors and store as the service.

Each stdin line is a user message (or a command) for the session
`console:<name>`; replies stream to stdout, progress lines to stderr. Lines
that arrive while a reply is running are collected by the session and answered
together. At EOF the adapter waits until the session has answered everything
it holds, then returns.
"""

from __future__ import annotations

import getpass
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from vigil.actors.core.protocol import Drain, Sender, UserText
from vigil.actors.tools.send_file import human_size
from vigil.cancel import CancelToken
from vigil.commands import parse_command
from vigil.control.dispatch import Caller, Control
from vigil.ports import FileDelivery, OutgoingFile, Reply
from vigil.records.schema import Target
from vigil.runtime import Runtime
from vigil.text import clean

CONSOLE_TARGET = Target(channel="console")
STREAM_INTERVAL_S = 0.25


class ConsoleStream:
    """A reply printed as it grows; only the new suffix is written each time."""

    def __init__(self, outbox: ConsoleOutbox) -> None:
        self._outbox = outbox
        self._printed = ""

    def update(self, text: str, durable: bool = True) -> None:
        with self._outbox.lock:
            self._emit(text)

    def needs_checkpoint(self, text: str) -> bool:
        return True  # what is printed stays printed

    def progress(self, line: str) -> None:
        with self._outbox.lock:
            self._outbox.err.write(f"… {line}\n")
            self._outbox.err.flush()

    def finish(self, text: str, note: str = "", thinking: str = "") -> None:
        with self._outbox.lock:
            if thinking.strip():  # `/think show`: Claude's summarized thinking, plainly, above the answer
                lines = "\n".join(f"💭 {line}" if line.strip() else "💭" for line in thinking.strip().splitlines())
                self._outbox.out.write(("\n" if self._printed and not self._printed.endswith("\n") else "")
                                       + lines + "\n")
                self._printed = ""  # the answer is printed whole below it
            self._emit(text)
            tail = ""
            if note:
                tail = ("\n" if self._printed and not self._printed.endswith("\n") else "") + note
            if tail:
                self._outbox.out.write(tail)
            self._outbox.out.write("\n")
            self._outbox.out.flush()

    def _emit(self, text: str) -> None:
        if text.startswith(self._printed):
            self._outbox.out.write(text[len(self._printed):])
        else:  # the text was rewritten (not just extended): show it again whole
            self._outbox.out.write("\n" + text)
        self._printed = text
        self._outbox.out.flush()


class ConsoleOutbox:
    """Outbox port for the terminal."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, save_dir: Path | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.save_dir = save_dir or Path.cwd()
        self.lock = threading.RLock()

    def update_interval(self, target: Target) -> float:
        return STREAM_INTERVAL_S

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        with self.lock:
            text = reply.text
            if reply.document is not None:
                path = self.save_dir / reply.document.filename
                path.write_bytes(reply.document.content)
                text = f"{text}\nSaved to {path}"
            if reply.buttons:
                labels = " | ".join(b.label for row in reply.buttons for b in row)
                text = f"{text}\n[{labels}]"
            self.out.write(text.rstrip("\n") + "\n")
            self.out.flush()

    def stream(self, key: str, target: Target, ref: int | None = None) -> ConsoleStream:
        return ConsoleStream(self)

    def typing(self, target: Target) -> None:
        return None

    def send_file(self, key: str, target: Target, file: OutgoingFile, cancel: CancelToken) -> FileDelivery:
        # The file is already on this machine: the console names it rather than copying it anywhere.
        with self.lock:
            caption = f" {file.caption.strip()}" if file.caption.strip() else ""
            self.out.write(f"📎 {file.path} ({human_size(len(file.content))}){caption}\n")
            self.out.flush()
        return FileDelivery(delivered=True, detail=f"shown on the console: {file.path}")


def run_console(runtime: Runtime, name: str, stdin: TextIO, outbox: ConsoleOutbox) -> None:
    """Feed stdin lines to the session until EOF, then wait for it to answer everything."""
    key = f"console:{name}"
    sender = Sender(user_id=0, name=getpass.getuser())
    caller = Caller(key=key, target=CONSOLE_TARGET, sender=sender, admin=True, chat_title=f"console {name}",
                    chat_type="console")
    control = Control(runtime)
    for raw in stdin:
        text = clean(raw.rstrip("\r\n"))
        if not text.strip():
            continue
        command = parse_command(text)
        if command is not None:
            reply = control.handle(command, caller)
            if reply is not None:
                outbox.send(key, CONSOLE_TARGET, reply)
            continue
        runtime.submit(UserText(key=key, target=CONSOLE_TARGET, sender=sender, text=text, at=time.time(),
                                chat_title=f"console {name}", chat_type="console"))
    done = threading.Event()
    runtime.submit(Drain(key=key, done=done))
    done.wait()
