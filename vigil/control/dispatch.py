"""Commands answered at once, outside the session mailboxes: they read or signal, never wait.

`/status` reads the snapshot the live actor publishes (or the store, for a
session that is not live); `/stop` sets the running turn's cancel token;
`/sessions`, `/usage`, `/export` read the store, which any thread may do.

What `/sessions`, `/usage` and cleanup show depends on where they are asked: in
a group, that group's sessions only (its chat and its forum topics), whoever
asks, because everyone in the group reads the answer; in a private chat, the
asker's own sessions, or every session for an admin (see `vigil.control.caller`). The
`/sessions cleanup` flow lives in `vigil.control.cleanup`.

Every command passes the rule of vigil/policy/roles.py here first, session commands
too, before they are queued: a refused one changes nothing and says who may.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.commands import ParsedCommand, help_text
from vigil.control.caller import Caller
from vigil.control.cleanup import DEFAULT_CLEANUP_AGE, Cleanup
from vigil.control.reach import McpCommands
from vigil.control.search import search_reply
from vigil.control.views import (
    clock,
    heartbeat_line,
    money,
    searches_mark,
    session_line,
    session_title,
    tokens,
    usage_report,
)
from vigil.durations import format_duration
from vigil.media.export import media_rows
from vigil.policy.tool_mode import mode_line
from vigil.ports import Button, Document, Reply, Store
from vigil.records.schema import SessionHeader, UnreadableRecord
from vigil.runtime import Runtime
from vigil.store.store import Unreadable, UsageRow, unreadable_line, utc_day
from vigil.tools.workspace import own_directory, placed

PAGE_SIZE = 5


class Control:
    """Out-of-band command handlers over a Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.settings = runtime.settings
        self.roles = runtime.roles
        self.cleanups = Cleanup(runtime, self.visible, self.header)
        self.mcp = McpCommands(runtime, self.header)  # /mcp and /skills

    # ------------------------------------------------------------------ helpers

    def header(self, key: str) -> SessionHeader | None:
        control = self.runtime.control(key)
        if control is not None and control.status.header is not None:
            return control.status.header
        try:
            return self.store.header(key)
        except UnreadableRecord:
            return None  # the session itself says why when it is written to; /status says so too

    def visible(self, caller: Caller) -> tuple[list[SessionHeader], list[Unreadable]]:
        """The sessions this caller may list from where they ask, and the unreadable ones among them, named."""
        headers, skipped = self.store.scan_headers(None if caller.admin else caller.user_id)
        if caller.group_key is None:
            return headers, skipped
        return [h for h in headers if caller.sees(h.key)], [u for u in skipped if caller.sees(u.key)]

    def visible_usage(self, caller: Caller, since_day: str) -> tuple[list[UsageRow], list[Unreadable]]:
        rows, skipped = self.store.scan_usage(None if caller.admin else caller.user_id, since_day)
        if caller.group_key is None:
            return rows, skipped
        return [r for r in rows if caller.sees(r.key)], [u for u in skipped if caller.sees(u.key)]

    def state(self, key: str, now: float | None = None) -> str:
        control = self.runtime.control(key)
        if control is None:
            return "idle"
        status = control.status
        now = time.time() if now is None else now
        if status.state == "idle":
            return f"idle, {status.queued} waiting" if status.queued else "idle"
        queued = f", {status.queued} waiting" if status.queued else ""
        verb = "checking in" if status.state == "heartbeat" else "answering"
        return f"{verb} for {format_duration(max(1.0, now - status.since))}{queued}"

    # ------------------------------------------------------------------ dispatch

    def handle(self, command: ParsedCommand, caller: Caller) -> Reply | None:
        """Answer a control command, or forward a session command (then None: the session answers)."""
        spec = command.spec
        if spec is None:
            return Reply(text=f"Unknown command /{command.name}. /help lists the commands.")
        verdict = self.roles.command(caller.place, caller.user_id, command.name, command.args)
        if not verdict.allowed:
            return Reply(text=verdict.reason)
        if spec.scope == "session":
            if command.name == "new":  # /new denies a prompt waiting here at once (its turn ends before /new runs)
                self.runtime.deps.approvals.withdraw(caller.key, "/new")
            self.runtime.submit(SessionCommand(key=caller.key, target=caller.target, sender=caller.sender,
                                               name=command.name, args=command.args,
                                               chat_title=caller.chat_title, chat_type=caller.chat_type))
            return None
        args = command.args.split()
        if command.name == "sessions":
            if args[:1] == ["cleanup"]:
                return self.cleanups.command(caller, args[1:])
            return self.sessions(caller, int(args[0]) - 1 if args and args[0].isdigit() else 0)
        if command.name == "mcp":
            return self.mcp.mcp(caller, command.args)
        if command.name == "skills":
            return self.mcp.skills(caller)
        simple = {"start": self.start, "help": self.help}
        if command.name in simple:
            return simple[command.name]()
        if command.name == "search":  # this chat's past conversations (vigil/control/search.py)
            return search_reply(self.runtime.recall, caller.key, command.args, self.header)
        per_caller = {"status": self.status, "stop": self.stop, "pwd": self.pwd, "usage": self.usage,
                      "export": self.export}
        return per_caller[command.name](caller)

    # ------------------------------------------------------------------ commands

    def start(self) -> Reply:
        return Reply(text="👋 This is vigil: Claude in this chat, with its own history, working directory and "
                          "optional check-ins. Write anything to talk; every chat and forum topic is a separate "
                          "session.\n\n" + help_text())

    def help(self) -> Reply:
        return Reply(text=help_text())

    def stop(self, caller: Caller) -> Reply:
        if self.runtime.stop_turn(caller.key):
            return Reply(text="⏹ Stopping the reply in progress.")
        return Reply(text="Nothing to stop: no reply is in progress here.")

    def pwd(self, caller: Caller) -> Reply:
        header = self.header(caller.key)
        return Reply(text=f"📁 {self.placed(header).cwd if header else self.first_directory(caller)}")

    def placed(self, header: SessionHeader) -> SessionHeader:
        """A stored header as its session will see it (one from before workspaces gains one)."""
        return placed(header, self.settings.workdir_root)

    def first_directory(self, caller: Caller) -> Path:
        """Where the caller's session will start once it is created (it has no header yet)."""
        return self.settings.workdir_root.joinpath(*own_directory(caller.key, caller.target, caller.chat_type).parts)

    def status(self, caller: Caller) -> Reply:
        header = self.header(caller.key)
        live = self.runtime.registry.live_count()
        busy = self.runtime.registry.busy_count()
        live_line = f"Live sessions: {live} ({busy} busy) · model calls in flight: {self.runtime.slots.in_flight}"
        bash = self.bash_line()
        if bash:
            live_line = f"{bash}\n{live_line}"
        if caller.admin:  # the machine's disk is the operator's business, not every member's
            live_line = f"{live_line}\n{self.runtime.disk.report().line()}"
        if header is None and self.store.has_session(caller.key):
            header = self.header(caller.key)  # made between the two reads (its first message): readable after all
            if header is None:
                return Reply(text=f"📊 Session {caller.key}\n⚠️ {unreadable_line([self._unreadable(caller.key)])}.\n"
                                  f"{live_line}")
        if header is None:
            return Reply(text=f"📊 Session {caller.key}\nNo conversation yet: write something to start one.\n"
                              f"Directory: {self.first_directory(caller)} · Model: {self.settings.model}\n{live_line}")
        beat = header.heartbeat
        beat_text = heartbeat_line(beat)
        if beat.enabled and beat.next_due:
            beat_text += f", next {clock(beat.next_due)}"
        if beat.last_beat_at:
            beat_text += f", last {clock(beat.last_beat_at)} ({beat.last_decision or '?'})"
        chat = header.usage
        beats = header.heartbeat_usage
        lines = [
            f"📊 Session {header.key} — {session_title(header)}",
            f"State: {self.state(caller.key)}",
            f"Model: {header.model}",
            f"Directory: {self.placed(header).cwd}",
            f"Turns: {header.next_seq} in this conversation, {header.turns_total} in all "
            f"(generation {header.generation})",
            f"Tokens: {tokens(chat.input_tokens)} in · {tokens(chat.output_tokens)} out · "
            f"{tokens(chat.cache_read_tokens)} cache read · {tokens(chat.cache_write_tokens)} cache write",
            f"Cost: {money(chat.cost_micros + beats.cost_micros)} "
            f"(heartbeats {money(beats.cost_micros)} in {beats.calls} calls){searches_mark(chat + beats)}",
            f"Heartbeat: {beat_text}",
            f"Pinned: {'yes, kept by retention and cleanups (/pin off releases it)' if header.pinned else 'no (/pin)'}",
            mode_line(header, self.settings, self.runtime.deps.approvals.waiting(caller.key) is not None),
            live_line,
        ]
        return Reply(text="\n".join(lines))

    def _unreadable(self, key: str) -> Unreadable:
        try:
            self.store.header(key)
        except UnreadableRecord as exc:
            return Unreadable(key, exc.reason)
        return Unreadable(key, "unreadable")

    def bash_line(self) -> str:
        """Whether the bash asked for is offered, and if not why; empty when bash is not enabled."""
        toolbox = self.runtime.toolbox
        if toolbox.bash_unavailable is not None:
            return f"Bash: off — {toolbox.bash_unavailable}"
        if toolbox.sandbox is not None:
            return f"Bash: on, sandboxed (network {'on' if toolbox.sandbox.network else 'off'})"
        return ""

    def sessions(self, caller: Caller, page: int = 0) -> Reply:
        # Sorted by times alone (a quick decoding of each header); only the page's headers are read whole.
        listed, skipped = self.store.scan_activity(None if caller.admin else caller.user_id)
        if caller.group_key is not None:
            listed, skipped = [a for a in listed if caller.sees(a.key)], [u for u in skipped if caller.sees(u.key)]
        listed.sort(key=lambda a: a.activity, reverse=True)
        pages = (len(listed) + PAGE_SIZE - 1) // PAGE_SIZE
        page = min(max(page, 0), pages - 1)
        shown = []
        for index, item in enumerate(listed[page * PAGE_SIZE:(page + 1) * PAGE_SIZE], page * PAGE_SIZE + 1):
            try:
                header = self.store.header(item.key)
            except UnreadableRecord as exc:
                skipped.append(Unreadable(item.key, exc.reason))
                continue
            if header is not None:
                shown.append((index, header))
        unreadable = f"⚠️ {unreadable_line(skipped)}" if skipped else ""
        if not listed:
            return Reply(text="\n\n".join(t for t in ("🗂 No stored sessions yet.", unreadable) if t))
        now = time.time()
        whose = ("This group's sessions" if caller.group_key is not None
                 else "All sessions" if caller.admin else "Your sessions")
        lines = [f"🗂 {whose} ({len(listed)}), newest first — page {page + 1}/{pages}", ""]
        for index, header in shown:
            lines.append(session_line(index, header, self.state(header.key, now), now))
        if unreadable:
            lines += ["", unreadable]
        row: list[Button] = []
        if page > 0:
            row.append(Button("◀ Newer", f"sessions:page:{page - 1}"))
        if page + 1 < pages:
            row.append(Button("Older ▶", f"sessions:page:{page + 1}"))
        buttons: tuple[tuple[Button, ...], ...] = (tuple(row),) if row else ()
        buttons += ((Button("🧹 Clean up idle > 24h", f"sessions:cleanup:{int(DEFAULT_CLEANUP_AGE)}"),),)
        return Reply(text="\n".join(lines), buttons=buttons)

    def usage(self, caller: Caller) -> Reply:
        now = time.time()
        today = utc_day(now)
        week = utc_day(now - 6 * 86400)
        month = utc_day(now - 29 * 86400)
        rows, bad_rows = self.visible_usage(caller, month)
        headers, bad_headers = self.visible(caller)
        titles = {h.key: session_title(h) for h in headers}
        if caller.group_key is not None:
            who = "this group" + (" (admin view)" if caller.admin else f", your share (id {caller.user_id})")
        else:
            who = "everyone (admin view)" if caller.admin else f"you (id {caller.user_id})"
        budget = self.settings.daily_budget_usd
        spent = self.store.user_cost_micros(caller.user_id, today)
        budget_line = ("" if caller.admin else
                       f"\nDaily budget: {money(spent)} of ${budget:.2f} used today (resets 00:00 UTC)")
        body = usage_report(rows, titles, today, week, month, per_user=caller.sees_everyone)
        skipped = [*bad_headers, *bad_rows]
        unreadable = f"\n\n⚠️ {unreadable_line(skipped)}" if skipped else ""
        return Reply(text=f"💰 Usage for {who}\n{body}{budget_line}{unreadable}")

    def export(self, caller: Caller) -> Reply:
        try:
            document = export_session(self.runtime.store, caller.key)
        except UnreadableRecord as exc:
            return Reply(text=f"⚠️ {unreadable_line([Unreadable(caller.key, exc.reason)])}.")
        if document is None:
            return Reply(text="Nothing to export: this chat has no stored session.")
        name = f"vigil-{caller.key.replace(':', '_')}.json"
        return Reply(text="📦 This session's history.",
                     document=Document(filename=name, content=document, caption=f"{caller.key} history"))


def export_session(store: Store, key: str) -> bytes | None:
    """The whole stored session (every generation with its turns and compaction summaries, the records of its
    past conversations, notes) as JSON bytes.

    Raises UnreadableRecord for a session whose header can't be read.
    """
    header = store.header(key)
    if header is None:
        return None
    generations = []
    stored = [(generation, store.turns(key, generation)) for generation in store.generations(key)]
    for generation, turns in stored:
        generations.append({"generation": generation, "turns": [complete(t) for t in turns],
                            "summaries": [complete(s) for s in store.summaries(key, generation)]})
    document = {
        "exported_at": clock(time.time()),
        "session": complete(header),
        "conversations": [complete(c) for c in store.scan_conversations(key)[0]],
        "generations": generations,
        "notes": [complete(n) for n in store.notes(key)],
        "media": media_rows(header, stored),
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def complete(value: Any) -> Any:
    """Plain data with every field, defaults included (the stored encoding omits them)."""
    if isinstance(value, msgspec.Struct):
        return {f: complete(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [complete(v) for v in value]
    if isinstance(value, dict):
        return {k: complete(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


__all__ = ["Caller", "Control", "complete", "export_session"]
