"""Commands answered at once, outside the session mailboxes: they read or signal, never wait.

`/status` reads the snapshot the live actor publishes (or the store, for a
session that is not live); `/stop` sets the running turn's cancel token;
`/sessions`, `/usage`, `/export` read the store, which any thread may do.

What `/sessions`, `/usage` and cleanup show depends on where they are asked: in
a group, that group's sessions only (its chat and its forum topics), whoever
asks, because everyone in the group reads the answer; in a private chat, the
asker's own sessions, or every session for an admin.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from vigil.actors.protocol import Forget, Prune, Sender, SessionCommand
from vigil.commands import ParsedCommand, help_text
from vigil.durations import DurationError, format_duration, parse_duration
from vigil.media_export import media_rows
from vigil.offers import OFFER_TTL_S, Listed, Offer, Offers
from vigil.ports import Button, Document, Reply, Store
from vigil.runtime import Runtime
from vigil.store.schema import SessionHeader, Target, UnreadableRecord
from vigil.store.store import Unreadable, UsageRow, unreadable_line, utc_day
from vigil.views import clock, heartbeat_line, money, session_line, session_title, tokens, usage_report
from vigil.workspace import own_directory, placed

PAGE_SIZE = 5
CLEANUP_WAIT_S = 30.0
DEFAULT_CLEANUP_AGE = 86400.0
GROUP_TYPES = ("group", "supergroup")


@dataclass(frozen=True)
class Caller:
    """Who asks, from which chat (and so about which session)."""

    key: str
    target: Target
    sender: Sender
    admin: bool
    chat_title: str = ""
    chat_type: str = ""

    @property
    def user_id(self) -> int:
        return self.sender.user_id

    @property
    def group_key(self) -> str | None:
        """In a group, the key of its chat (its forum topics' keys extend it); None elsewhere."""
        if self.chat_type not in GROUP_TYPES:
            return None
        return ":".join(self.key.split(":")[:2])

    @property
    def sees_everyone(self) -> bool:
        """Every user's sessions: an admin, outside groups only."""
        return self.admin and self.group_key is None

    def sees(self, key: str) -> bool:
        """Whether a session of this key belongs to where the caller asks from (membership aside)."""
        group = self.group_key
        return group is None or key == group or key.startswith(group + ":")


class Control:
    """Out-of-band command handlers over a Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.settings = runtime.settings
        self.offers = Offers()

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
        if spec.scope == "session":
            self.runtime.submit(SessionCommand(key=caller.key, target=caller.target, sender=caller.sender,
                                               name=command.name, args=command.args,
                                               chat_title=caller.chat_title, chat_type=caller.chat_type))
            return None
        args = command.args.split()
        if command.name == "sessions":
            if args[:1] == ["cleanup"]:
                rest = args[1:]
                confirmed = bool(rest) and rest[-1].lower() in ("yes", "confirm")
                if confirmed:
                    rest = rest[:-1]
                    try:
                        age = parse_duration(" ".join(rest)) if rest else DEFAULT_CLEANUP_AGE
                    except DurationError as exc:
                        return Reply(text=f"⛔ {exc}. Example: /sessions cleanup 7d")
                    return self.cleanup(caller, age)
                return self.cleanup_prompt(caller, " ".join(rest))
            return self.sessions(caller, int(args[0]) - 1 if args and args[0].isdigit() else 0)
        simple = {"start": self.start, "help": self.help}
        if command.name in simple:
            return simple[command.name]()
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
        if header is None and self.store.has_session(caller.key):
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
            f"(heartbeats {money(beats.cost_micros)} in {beats.calls} calls)",
            f"Heartbeat: {beat_text}",
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
        headers, skipped = self.visible(caller)
        headers.sort(key=lambda h: max(h.last_activity, h.last_turn_at, h.created_at), reverse=True)
        unreadable = f"⚠️ {unreadable_line(skipped)}" if skipped else ""
        if not headers:
            return Reply(text="\n\n".join(t for t in ("🗂 No stored sessions yet.", unreadable) if t))
        pages = (len(headers) + PAGE_SIZE - 1) // PAGE_SIZE
        page = min(max(page, 0), pages - 1)
        now = time.time()
        whose = ("This group's sessions" if caller.group_key is not None
                 else "All sessions" if caller.admin else "Your sessions")
        lines = [f"🗂 {whose} ({len(headers)}), newest first — page {page + 1}/{pages}", ""]
        for index, header in enumerate(headers[page * PAGE_SIZE:(page + 1) * PAGE_SIZE], page * PAGE_SIZE + 1):
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

    def cleanup_candidates(self, caller: Caller, age_s: float) -> list[SessionHeader]:
        cutoff = time.time() - age_s
        headers, _ = self.visible(caller)
        out = []
        for header in headers:
            control = self.runtime.control(header.key)
            if control is not None and (control.busy or control.status.queued):
                continue
            if max(header.last_activity, header.last_turn_at, header.created_at) < cutoff:
                out.append(header)
        return out

    def cleanup_prompt(self, caller: Caller, args: str) -> Reply:
        """The list of what a cleanup would delete; its button deletes exactly that (see vigil.offers)."""
        try:
            age = parse_duration(args) if args.strip() else DEFAULT_CLEANUP_AGE
        except DurationError as exc:
            return Reply(text=f"⛔ {exc}. Example: /sessions cleanup 7d")
        candidates = self.cleanup_candidates(caller, age)
        if not candidates:
            return Reply(text=f"🧹 Nothing to clean up: no stored session has been idle longer than "
                              f"{format_duration(age)}.")
        offer = self._offer(caller, age, candidates)
        token = self.offers.put(offer)
        names = "\n".join(f"• {session_title(h)} ({h.key}), last active {clock(h.last_activity or h.created_at)}"
                          for h in candidates[:20])
        more = f"\n…and {len(candidates) - 20} more" if len(candidates) > 20 else ""
        earlier = (f"\nAlso {len(offer.prune)} other session(s)' earlier conversations (from /new) older than "
                   f"{format_duration(age)}." if offer.prune else "")
        return Reply(text=f"🧹 {len(candidates)} session(s) idle longer than {format_duration(age)}:\n{names}{more}"
                          f"{earlier}\n\nDelete them? Their history and notes go; usage records stay. "
                          f"(This button works for you only, for {format_duration(OFFER_TTL_S)}.)",
                     buttons=((Button("🗑 Delete them", f"sessions:cleanup-yes:{token}"),
                               Button("Cancel", "cancel")),))

    def cleanup(self, caller: Caller, age_s: float) -> Reply:
        """`/sessions cleanup AGE yes`: asked and confirmed at once, by the one who acts."""
        return self._carry_out(self._offer(caller, age_s, self.cleanup_candidates(caller, age_s)))

    def confirm_cleanup(self, caller: Caller, token: str) -> tuple[Reply | None, str]:
        """A press of a prompt's "Delete them": (the report, "") or (None, why nothing was deleted)."""
        offer, refusal = self.offers.take(token, caller.user_id, caller.key)
        if offer is None:
            return None, refusal
        return self._carry_out(offer), ""

    def _offer(self, caller: Caller, age_s: float, candidates: list[SessionHeader]) -> Offer:
        now = time.time()
        listed = tuple(Listed(key=h.key, incarnation=h.incarnation, activity=_activity(h), title=session_title(h),
                              turns=h.next_seq) for h in candidates)
        cutoff = now - age_s
        skip = {h.key for h in candidates}
        prune = tuple(h.key for h in self.visible(caller)[0]
                      if h.key not in skip and any(g.ended_at < cutoff for g in h.past_generations))
        return Offer(asker=caller.user_id, chat_key=caller.key, age_s=age_s, sessions=listed, prune=prune,
                     prune_before=cutoff, created_at=now)

    def _carry_out(self, offer: Offer) -> Reply:
        """Delete what the offer listed, skipping any session that changed or became active since."""
        done: list[tuple[Listed, threading.Event]] = []
        kept = 0
        for item in offer.sessions:
            header = self.header(item.key)
            control = self.runtime.control(item.key)
            if (header is None or header.incarnation != item.incarnation or _activity(header) > item.activity
                    or (control is not None and (control.busy or control.status.queued))):
                kept += 1
                continue
            event = threading.Event()
            # Each session deletes itself (a live one must drop what it holds in memory too), and only if
            # nothing happened in it since it was listed: the check runs in the session's own thread.
            self.runtime.submit(Forget(key=item.key, done=event, idle_since=item.activity))
            done.append((item, event))
        removed = []
        for item, event in done:
            if event.wait(CLEANUP_WAIT_S):
                after = self.store.header(item.key)
                if after is None or after.incarnation != item.incarnation:
                    removed.append(f"• {item.title} ({item.key}): {item.turns} turns")
                else:
                    kept += 1
        pruned = self.prune_generations(offer.prune, offer.prune_before)
        if not removed and not pruned:
            return Reply(text="🧹 Nothing was deleted: no session is idle that long any more.")
        lines = [f"🧹 Deleted {len(removed)} session(s):", *removed[:30]] if removed else []
        if kept:
            lines.append(f"Kept {kept} session(s) that were used since the list was made.")
        if pruned:
            lines.append(f"Also deleted {pruned} earlier conversation(s) (from /new) older than "
                         f"{format_duration(offer.age_s)} in the sessions that stay.")
        return Reply(text="\n".join(lines))

    def prune_generations(self, keys: tuple[str, ...], before: float) -> int:
        """Past generations (kept readable after /new) of these sessions that ended before `before` go too."""
        waits = []
        for key in keys:
            header = self.header(key)
            count = sum(1 for g in header.past_generations if g.ended_at < before) if header else 0
            if count:
                event = threading.Event()
                self.runtime.submit(Prune(key=key, before=before, done=event))
                waits.append((event, count))
        return sum(count for event, count in waits if event.wait(CLEANUP_WAIT_S))

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


def _activity(header: SessionHeader) -> float:
    return max(header.last_activity, header.last_turn_at, header.created_at)


def export_session(store: Store, key: str) -> bytes | None:
    """The whole stored session (every generation, notes) as pretty JSON bytes.

    Raises UnreadableRecord for a session whose header can't be read.
    """
    header = store.header(key)
    if header is None:
        return None
    generations = []
    stored = [(generation, store.turns(key, generation)) for generation in store.generations(key)]
    for generation, turns in stored:
        generations.append({"generation": generation, "turns": [complete(t) for t in turns]})
    document = {
        "exported_at": clock(time.time()),
        "session": complete(header),
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
