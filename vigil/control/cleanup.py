"""`/sessions cleanup`: list the idle sessions, and on confirmation delete exactly those.

A prompt's list is kept server-side (see `vigil.control.offers`) so that its button
deletes what was shown, for the one who asked; each session deletes itself (a
live one must drop what it holds in memory too) and only if nothing happened in
it since it was listed. Past generations (kept readable after /new) older than
the age go too, in the sessions that stay. Pinned sessions (/pin) are never listed.

Retention (`VIGIL_RETENTION`, vigil/ops/retention.py) is this same flow without a prompt: `expire`
lists every session by the same rule (vigil/policy/expiry.py) and carries the list out the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vigil.actors.core.protocol import Forget, Sender
from vigil.commands import cancel_button
from vigil.control.caller import Caller
from vigil.control.offers import OFFER_TTL_S, Listed, Offer, Offers
from vigil.control.views import clock, session_title
from vigil.durations import DurationError, format_duration, parse_duration
from vigil.policy.expiry import activity as activity
from vigil.policy.expiry import expired, old_generations
from vigil.policy.roles import place_of
from vigil.ports import Button, Reply, Unreadable
from vigil.records.schema import SessionHeader, Target
from vigil.runtime import Runtime

CLEANUP_WAIT_S = 30.0
DEFAULT_CLEANUP_AGE = 86400.0
# Retention asks as nobody in particular, seeing every session (it answers no chat).
RETENTION_TARGET = Target(channel="retention")
RETENTION_SENDER = Sender(user_id=0, name="retention")


class Cleanup:
    """The cleanup flow over a Runtime; `visible` and `header` are the Control's, so both see alike."""

    def __init__(self, runtime: Runtime,
                 visible: Callable[[Caller], tuple[list[SessionHeader], list[Unreadable]]],
                 header: Callable[[str], SessionHeader | None]) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.visible = visible
        self.header = header
        self.offers = Offers()

    def command(self, caller: Caller, args: list[str]) -> Reply:
        """`/sessions cleanup [AGE] [yes]`: the prompt, or (with "yes") the deletion at once."""
        confirmed = bool(args) and args[-1].lower() in ("yes", "confirm")
        if not confirmed:
            return self.prompt(caller, " ".join(args))
        args = args[:-1]
        try:
            age = parse_duration(" ".join(args)) if args else DEFAULT_CLEANUP_AGE
        except DurationError as exc:
            return Reply(text=f"⛔ {exc}. Example: /sessions cleanup 7d")
        return self.at_once(caller, age)

    def deletable(self, caller: Caller) -> list[SessionHeader]:
        """The sessions the caller may delete (vigil/policy/roles.py): in a group, all of that group's (its admins clean
        it up, whether or not they ever wrote there); elsewhere those the caller sees, but a group's only for
        its admins (a member sees the groups they talk in, and those are their admins' to delete)."""
        roles = self.runtime.roles
        if caller.group_key is not None and not caller.admin:
            headers = [h for h in self.store.scan_headers(None)[0] if caller.sees(h.key)]
        else:
            headers = self.visible(caller)[0]
        return [h for h in headers if roles.check(place_of(h), caller.user_id, "settings", "delete it").allowed]

    def candidates(self, caller: Caller, age_s: float) -> list[SessionHeader]:
        return self._idle(expired(self.store, self.deletable(caller), time.time() - age_s)[0])

    def _idle(self, headers: list[SessionHeader]) -> list[SessionHeader]:
        """Those of `headers` not answering or holding messages now."""
        out = []
        for header in headers:
            control = self.runtime.control(header.key)
            if control is not None and (control.busy or control.status.queued):
                continue
            out.append(header)
        return out

    def prompt(self, caller: Caller, args: str) -> Reply:
        """The list of what a cleanup would delete; its button deletes exactly that (see vigil.control.offers)."""
        try:
            age = parse_duration(args) if args.strip() else DEFAULT_CLEANUP_AGE
        except DurationError as exc:
            return Reply(text=f"⛔ {exc}. Example: /sessions cleanup 7d")
        candidates = self.candidates(caller, age)
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
                               cancel_button(caller.user_id)),))

    def at_once(self, caller: Caller, age_s: float) -> Reply:
        """`/sessions cleanup AGE yes`: asked and confirmed at once, by the one who acts."""
        return self._carry_out(self._offer(caller, age_s, self.candidates(caller, age_s)))

    def confirm(self, caller: Caller, token: str) -> tuple[Reply | None, str]:
        """A press of a prompt's "Delete them": (the report, "") or (None, why nothing was deleted)."""
        offer, refusal = self.offers.take(token, caller.user_id, caller.key)
        if offer is None:
            return None, refusal
        return self._carry_out(offer), ""

    def _offer(self, caller: Caller, age_s: float, candidates: list[SessionHeader],
               prune: tuple[str, ...] | None = None) -> Offer:
        """What to delete: `candidates` whole, and the old conversations of the caller's other visible sessions
        (or of the sessions `prune` names, judged already)."""
        now = time.time()
        listed = tuple(Listed(key=h.key, incarnation=h.incarnation, activity=activity(h), title=session_title(h),
                              turns=h.next_seq) for h in candidates)
        cutoff = now - age_s
        if prune is None:
            skip = {h.key for h in candidates}
            others = [h for h in self.deletable(caller) if h.key not in skip]
            prune = tuple(h.key for h in others if old_generations(self.store, h, cutoff))
        return Offer(asker=caller.user_id, chat_key=caller.key, age_s=age_s, sessions=listed, prune=prune,
                     prune_before=cutoff, created_at=now)

    def expire(self, age_s: float) -> tuple[int, int]:
        """Retention: every session idle longer than `age_s`, and every older conversation, deleted at once;
        (sessions, conversations) deleted."""
        doomed, prune = expired(self.store, self.store.headers(), time.time() - age_s)
        system = Caller(key="", target=RETENTION_TARGET, sender=RETENTION_SENDER, admin=True)
        removed, _, pruned = self._delete(self._offer(system, age_s, self._idle(doomed), tuple(prune)))
        return len(removed), pruned

    def _carry_out(self, offer: Offer) -> Reply:
        """Delete what the offer listed, skipping any session that changed or became active since; the report."""
        removed, kept, pruned = self._delete(offer)
        if not removed and not pruned:
            return Reply(text="🧹 Nothing was deleted: no session is idle that long any more.")
        lines = [f"🧹 Deleted {len(removed)} session(s):", *removed[:30]] if removed else []
        if kept:
            lines.append(f"Kept {kept} session(s) that were used since the list was made.")
        if pruned:
            lines.append(f"Also deleted {pruned} earlier conversation(s) (from /new) older than "
                         f"{format_duration(offer.age_s)} in the sessions that stay.")
        return Reply(text="\n".join(lines))

    def _delete(self, offer: Offer) -> tuple[list[str], int, int]:
        """(the sessions deleted, as lines; how many were kept; how many old conversations went).

        One session at a time: deletions take turns in the store anyway (vigil/store/deletes.py), and a
        hundred sessions woken at once to delete themselves would crowd out the chats that talk meanwhile."""
        removed = []
        kept = 0
        for item in offer.sessions:
            header = self.header(item.key)
            control = self.runtime.control(item.key)
            if (header is None or header.incarnation != item.incarnation or activity(header) > item.activity
                    or header.pinned or (control is not None and (control.busy or control.status.queued))):
                kept += 1
                continue
            event = threading.Event()
            # Each session deletes itself (a live one must drop what it holds in memory too), and only if
            # nothing happened in it since it was listed: the check runs in the session's own thread.
            self.runtime.submit(Forget(key=item.key, done=event, idle_since=item.activity))
            if event.wait(CLEANUP_WAIT_S):
                after = self.store.header(item.key)
                if after is None or after.incarnation != item.incarnation:
                    removed.append(f"• {item.title} ({item.key}): {item.turns} turns")
                else:
                    kept += 1
        return removed, kept, self.prune_generations(offer.prune, offer.prune_before)

    def prune_generations(self, keys: tuple[str, ...], before: float) -> int:
        """Past conversations (kept to /resume) of these sessions last active before `before` go too.

        Through the store, from this thread: a past conversation is in no session's memory (its record and
        turns are only in the store), so no session waits for it, and the store never drops the one a
        session made current meanwhile (vigil/store/deletes.py)."""
        pruned = 0
        for key in keys:
            header = self.header(key)
            old = old_generations(self.store, header, before) if header is not None else []
            if old:
                for generation in old:  # first: the recall index reads the words it takes out from the store
                    self.runtime.recall.forget(key, generation)
                pruned += int(self.store.prune_generations(key, before, old).result() or 0)
        if pruned:
            self.runtime.sweeper.request()  # their files, unless another conversation names them
        return pruned
