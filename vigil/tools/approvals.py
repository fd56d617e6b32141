"""The approval prompts waiting for a tap, shared by the turns that wait and the adapters that get the taps.

A turn in `ask` mode that wants to run a command opens a `Pending` here and waits on it (on its
session's thread, with the turn's cancel token: `/stop` ends the wait at once). A press on one of
the prompt's buttons arrives on the adapter's event loop and is decided here at once, in memory:
it never passes through the session's mailbox, which is busy with the very turn that waits.

Button data: `ap:<token>:<a|t|d>` (Allow, Allow for this turn, Deny): the token names the prompt
(12 characters, random; the whole is under 20 bytes of Telegram's 64). The prompt is the only
place its token lives: after a restart the turn asks again with a fresh prompt, and the old
prompt's buttons find nothing ("no longer waiting").

What was decided durably (and so what a restart makes of it) is the turn's business
(actors/tools/approval_gate.py); this module only knows who may answer and what they answered.

A prompt that closes without a press (the timeout, `/stop`, `/new`, a restart) loses its buttons at
once and says why: the adapter that posted it left a closer here (`posted`), called with that line.
A press is shown by the adapter that took it.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from vigil.cancel import CancelToken

PREFIX = "ap:"
Choice = Literal["allow", "turn", "deny"]
CODES: dict[str, Choice] = {"a": "allow", "t": "turn", "d": "deny"}
LABELS: dict[Choice, str] = {"allow": "✅ Allow", "turn": "☑️ Allow for this turn", "deny": "❌ Deny"}
MAX_FINISHED = 500  # outcomes of prompts no longer waiting, kept to explain a late press

GONE = "This request is no longer waiting."
OTHER_CHAT = "That button belongs to another chat."


def button_data(token: str, choice: Choice) -> str:
    return f"{PREFIX}{token}:{next(code for code, c in CODES.items() if c == choice)}"


def parse_button(data: str) -> tuple[str, Choice] | None:
    """(token, choice) of an approval button's data; None if it is not one."""
    token, _, code = data.removeprefix(PREFIX).rpartition(":")
    if not data.startswith(PREFIX) or not token or code not in CODES:
        return None
    return token, CODES[code]


@dataclass(frozen=True)
class Decision:
    choice: Choice
    by: int = 0  # 0: nobody pressed (a timeout, /stop, /new)
    by_name: str = ""
    reason: str = ""  # why nobody's decision denied it: "timeout", "stopped", "/new"


@dataclass
class Pending:
    """One open prompt; its turn waits on `event`."""

    token: str
    key: str  # the session the prompt belongs to: a press from another chat is refused
    asker: int  # who asked for the turn (vigil/policy/roles.py asker_of): they (or an admin of either kind) may answer
    asker_name: str
    decision: Decision | None = None
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self, cancel: CancelToken, timeout_s: float) -> Decision | None:
        """Wait for a press (or `/new`), `/stop`, or the timeout; the decision made meanwhile, if any."""
        with cancel.on_cancel(self.event.set):
            self.event.wait(timeout_s)
        return self.decision


@dataclass(frozen=True)
class Press:
    """What a press did: `decided` (the turn goes on with it), or why not (`answer`, shown as an alert)."""

    decided: bool
    answer: str
    verdict: str = ""  # for the prompt's text: who decided what (or, for a late press, what became of it)


class PendingApprovals:
    """Thread-safe; one per process (SessionDeps.approvals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Pending] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()  # token -> what became of it
        self._closers: dict[str, Callable[[str], None]] = {}  # token -> takes its prompt's buttons away

    def open(self, key: str, asker: int, asker_name: str) -> Pending:
        pending = Pending(token=secrets.token_urlsafe(9), key=key, asker=asker, asker_name=asker_name)
        with self._lock:
            self._open[pending.token] = pending
        return pending

    def posted(self, token: str, close: Callable[[str], None]) -> None:
        """The prompt of `token` is on screen; `close(line)` edits it if it closes without a press (any thread)."""
        with self._lock:
            if token in self._open:
                self._closers[token] = close
                return
            verdict = self._finished.get(token)
        if verdict:
            close(verdict)  # it closed while being posted

    def asker(self, token: str) -> int | None:
        """Whose prompt `token` is, while it waits (None: it no longer does)."""
        with self._lock:
            pending = self._open.get(token)
            return pending.asker if pending is not None else None

    def waiting(self, key: str) -> Pending | None:
        """The prompt a session waits on, if any (for /status)."""
        with self._lock:
            return next((p for p in self._open.values() if p.key == key), None)

    def press(self, token: str, choice: Choice, user_id: int, user_name: str, admin: bool, key: str) -> Press:
        with self._lock:
            pending = self._open.get(token)
            if pending is None:
                return Press(False, GONE, self._finished.get(token, ""))
            if pending.key != key:
                return Press(False, OTHER_CHAT)
            if user_id != pending.asker and not admin:
                who = pending.asker_name or "the person whose message started this"
                return Press(False, f"Only {who} (or an admin) can answer this; nothing was done.")
            pending.decision = Decision(choice, by=user_id, by_name=user_name)
            self._close(pending, verdict_line(pending.decision))  # the adapter that took the press shows it
        pending.event.set()
        return Press(True, {"allow": "Allowed.", "turn": "Allowed for the rest of this turn.",
                            "deny": "Denied."}[choice], verdict_line(pending.decision))

    def settle(self, pending: Pending, default: Decision, force: bool = False) -> Decision:
        """The decision the turn acts on: a press that came in time, else (or if `force`) `default`; the prompt
        closes."""
        with self._lock:
            if pending.decision is None or force:
                pending.decision = default
            verdict = verdict_line(pending.decision)
            close = self._close(pending, verdict)
        if close is not None:
            close(verdict)
        return pending.decision

    def withdraw(self, key: str, reason: str) -> int:
        """Deny every prompt of a session at once (`/new`); how many there were."""
        with self._lock:
            found = [p for p in self._open.values() if p.key == key and p.decision is None]
            closing = []
            for pending in found:
                pending.decision = Decision("deny", reason=reason)
                verdict = verdict_line(pending.decision)
                closing.append((self._close(pending, verdict), verdict))
        for pending in found:
            pending.event.set()
        for close, verdict in closing:
            if close is not None:
                close(verdict)
        return len(found)

    def _close(self, pending: Pending, verdict: str) -> Callable[[str], None] | None:
        """With the lock held: the prompt no longer waits; its closer, if the adapter left one (once only)."""
        self._open.pop(pending.token, None)
        self._finished[pending.token] = verdict
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)
        return self._closers.pop(pending.token, None)


def verdict_line(decision: Decision) -> str:
    """One line for the prompt: what was decided, and by whom (or why nobody did)."""
    if decision.by:
        who = decision.by_name or f"user {decision.by}"
        return {"allow": f"✅ Allowed by {who}", "turn": f"☑️ Allowed for this turn by {who}",
                "deny": f"❌ Denied by {who}"}[decision.choice]
    return {"timeout": "⌛ Denied: nobody answered in time", "stopped": "⏹ Denied: the turn was stopped",
            "/new": "❌ Denied: a new conversation was started",
            "shutdown": "⏸ Not run: vigil was restarting"}.get(decision.reason, "❌ Denied")
