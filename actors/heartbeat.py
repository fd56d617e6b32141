"""Heartbeats: a session's own check-ins, at its own rhythm, silent unless worth it.

Cheap checks come before any model call: heartbeats off, a turn running when
the beat fell due (or messages waiting), outside the active hours, the last
beat less than an interval ago. Each of the beat's model calls is then paid by
the owner: over their budget or rate limit it is not made (vigil.budget). A beat turn
sees a bounded tail of the history and the notes, and has two tools:
`send_message` (the only way anything reaches the chat) and `save_note`. No
call means silence; its closing text is never shown. A message identical to
one sent in the last 24 hours is not sent again. What a beat says is committed
durably before it is sent, and kept in the history; silent beats leave only
their decision and their cost.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec

from actors.beat_schedule import (
    in_active_hours,
    message_digest,
    next_due,
    next_window_start,
    parse_hours,
    parse_zone,
    zone_of,
)
from actors.meter import Meter
from actors.protocol import DeliveryFailed, HeartbeatDue, SessionCommand
from actors.session import SAVE_NOTE_TOOL
from actors.session_commands import SessionCommandsMixin
from actors.turn import SilentDisplay, ToolSet
from vigil.budget import call_guard
from vigil.cancel import CancelToken
from vigil.durations import DurationError, format_duration, parse_duration
from vigil.model.history import estimate_tokens, join, normalized_turn
from vigil.model.prompt import system_blocks
from vigil.ports import ModelRequest
from vigil.store.schema import Heartbeat, SessionHeader, Turn
from vigil.tools.outcome import ToolOutcome

BEAT_MAX_ROUNDS = 4
BEAT_MAX_OUTPUT_TOKENS = 1024
BEAT_HISTORY_TOKENS = 6000
DEDUPE_WINDOW_S = 86400.0
MAX_REMEMBERED_HASHES = 50

SEND_MESSAGE_TOOL: dict[str, Any] = {
    "name": "send_message",
    "description": ("Send a message to this chat now. Only text passed to this tool is shown to the people in "
                    "the chat; call it only when you have something genuinely worth saying."),
    "input_schema": {"type": "object", "properties": {"text": {"type": "string",
                                                               "description": "The message (Markdown allowed)."}},
                     "required": ["text"]},
}

BEAT_PROMPT = """[Scheduled check-in — this is not a message from the user.]
It is {now} ({tz}). You are checking in on this chat on your own, as you do every {interval}.
Look at the recent conversation and your notes. If something is genuinely worth saying now — a reminder that \
is due, a follow-up you promised, something time-sensitive — call send_message with it. Otherwise call nothing: \
silence is the right default, and small talk or "just checking in" is not worth a message. You may update your \
notes with save_note. Text you write outside send_message is never shown to anyone."""


class HeartbeatMixin(SessionCommandsMixin):
    """Heartbeat scheduling, the beat turn, and /heartbeat."""

    def on_command(self, message: SessionCommand) -> None:
        if message.name == "heartbeat":
            self._cmd_heartbeat(message)
        else:
            super().on_command(message)

    # ------------------------------------------------------------------ scheduling

    def _reschedule(self) -> None:
        beat = self.header.heartbeat if self.header else None
        self.deps.schedule_heartbeat(self.key, beat.next_due if beat and beat.enabled else None)

    def _set_beat(self, **changes: Any) -> Heartbeat:
        assert self.header is not None
        beat = msgspec.structs.replace(self.header.heartbeat, **changes)
        self.header = msgspec.structs.replace(self.header, heartbeat=beat)
        return beat

    def on_delivery_failed(self, message: DeliveryFailed) -> None:
        super().on_delivery_failed(message)
        if message.permanent and self.header is not None and self.header.heartbeat.enabled:
            self._set_beat(enabled=False, disabled_reason=f"the chat can't be reached ({message.reason[:80]})")
            self.commit(wait=True)
            self._reschedule()
            self.log.warning("heartbeat.disabled_undeliverable", reason=message.reason)

    # ------------------------------------------------------------------ the beat

    def on_heartbeat(self, message: HeartbeatDue) -> None:
        if self.deps.registry.shutting_down.is_set():
            return  # the schedule is on disk: the next start beats when due, nothing is lost by waiting
        header = self.header
        if header is None or not header.heartbeat.enabled:
            self.deps.schedule_heartbeat(self.key, None)
            return
        now = self.deps.clock()
        beat = header.heartbeat
        skip = self._skip_reason(beat, message, now)
        if skip is not None:
            self._set_beat(next_due=next_due(beat, now) if skip != "outside active hours"
                           else next_window_start(beat, now), last_decision=f"skipped: {skip}")
            self.commit(wait=True)
            self._reschedule()
            self.log.info("heartbeat.skipped", reason=skip)
            return
        self.run_beat(now, reschedule=True)
        self._reschedule()

    def _skip_reason(self, beat: Heartbeat, message: HeartbeatDue, now: float) -> str | None:
        if message.due < self.turn_ended_at:  # it fell due while a turn was running
            return "a turn was running"
        if self._has_work():
            return "messages waiting"
        if not in_active_hours(beat, now):
            return "outside active hours"
        if beat.last_beat_at and now - beat.last_beat_at < beat.interval_s * 0.9:
            return "the last beat was less than an interval ago"
        return None  # the owner's budget and rate limit are checked before each of the beat's model calls

    def beat_history(self, header: SessionHeader) -> list[dict[str, Any]]:
        """The newest turns only, bounded in count and tokens: a beat never pays for the whole history."""
        count = self.deps.settings.heartbeat_history_turns
        if count == 0:
            return []
        parts = [normalized_turn(t, header.chat_type in ("group", "supergroup"))
                 for t in self.deps.store.last_turns(self.key, header.generation, count) if t.final]
        while parts and estimate_tokens(join(parts)) > BEAT_HISTORY_TOKENS:
            parts.pop(0)
        return join(parts)

    def beat_prompt(self, header: SessionHeader, now: float) -> str:
        beat = header.heartbeat
        local = dt.datetime.fromtimestamp(now, zone_of(beat.tz))
        return BEAT_PROMPT.format(now=local.strftime("%A %Y-%m-%d %H:%M"), tz=beat.tz,
                                  interval=format_duration(beat.interval_s))

    def run_beat(self, now: float, reschedule: bool = False) -> list[str]:
        """One beat turn; returns what it sent (empty: it stayed silent). `reschedule` sets the next due."""
        assert self.header is not None
        header = self.header
        prompt = self.beat_prompt(header, now)
        history = self.beat_history(header)
        tools = self.beat_tools(prompt, now)
        request = ModelRequest(
            model=header.model, max_tokens=min(BEAT_MAX_OUTPUT_TOKENS, self.deps.settings.max_output_tokens),
            system=system_blocks(header, self.notes(), [t["name"] for t in tools.specs]),
            messages=tuple(join([history, [{"role": "user", "content": [{"type": "text", "text": prompt}]}]])))
        cancel = CancelToken()
        # The owner pays (as for the cost below); over their budget or rate limit a beat is not run, not delayed.
        self._beat_meter = Meter()
        may_call = call_guard(self.deps.allowance, header.heartbeat.owner)
        self.control.begin("heartbeat", cancel)
        try:
            # Shutdown cancels the tokens of the turns it finds running; a beat that began just after
            # that must not run (and pay for) a model call the shutdown would then wait for.
            if self.deps.registry.shutting_down.is_set():
                cancel.cancel("shutdown")
                return []
            outcome = self.deps.runner.run(request, cancel, SilentDisplay(), tools, max_rounds=BEAT_MAX_ROUNDS,
                                           may_call=may_call, meter=self._beat_meter)
        finally:
            self.control.end()
        sent = list(self._beat_sent)
        usage = self._usage_of(outcome.calls)
        assert self.header is not None
        self.beat_refusal = outcome.note if outcome.error_kind == "limit" and not outcome.calls else ""
        if self.beat_refusal:
            self._set_beat(last_decision=f"skipped: {self.beat_refusal}",
                           next_due=next_due(self.header.heartbeat, now) if reschedule
                           else self.header.heartbeat.next_due)
            self.commit(wait=True)
            self.log.info("heartbeat.refused", reason=self.beat_refusal)
            return []
        cut = cancel.reason == "shutdown"
        decision = ("cut short: vigil was shutting down" if cut
                    else f"spoke ({len(sent)} message{'s' if len(sent) > 1 else ''})" if sent
                    else "failed: " + outcome.note if outcome.status == "failed" else "stayed silent")
        beat = self.header.heartbeat
        # A beat cut by shutdown, having said nothing, keeps its due time: the next start runs it again.
        spent = sent or not cut
        self._set_beat(last_beat_at=now if spent else beat.last_beat_at, last_decision=decision,
                       last_message=sent[-1] if sent else beat.last_message,
                       next_due=next_due(beat, now) if reschedule and spent else beat.next_due)
        self.header = msgspec.structs.replace(self.header, heartbeat_usage=self.header.heartbeat_usage + usage)
        turn = None
        if self._beat_turn is not None:
            turn = msgspec.structs.replace(self._beat_turn, status="stopped" if cut else "done",
                                           note="cut short by a restart" if cut else "", messages=outcome.messages,
                                           reply="\n\n".join(sent), ended_at=self.deps.clock(), usage=usage)
            self.header = msgspec.structs.replace(self.header, open_turn=None)
        self.commit(turn, self._usage_entries(beat.owner, "heartbeat", usage), wait=True)
        if turn is not None and self.window is not None and self.window.upto == turn.seq:
            self.window.add(turn)
        self.log.info("heartbeat.done", decision=decision, input_tokens=usage.input_tokens,
                      cache_read=usage.cache_read_tokens, output_tokens=usage.output_tokens)
        return sent

    def beat_tools(self, prompt: str, now: float) -> ToolSet:
        self._beat_sent: list[str] = []
        self._beat_turn: Turn | None = None

        def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
            if name == "send_message":
                return self._beat_send(str(tool_input.get("text", "")), prompt, now)
            if name == "save_note":
                return self.save_note(tool_input)
            return ToolOutcome(content=f"unknown tool {name!r}", is_error=True)

        def describe(name: str, tool_input: dict[str, Any]) -> str:
            return name

        return ToolSet(specs=(SEND_MESSAGE_TOOL, SAVE_NOTE_TOOL), run=run, describe=describe)

    def _beat_send(self, text: str, prompt: str, now: float) -> ToolOutcome:
        assert self.header is not None
        text = text.strip()
        if not text:
            return ToolOutcome(content="not sent: the message was empty", is_error=True)
        digest = message_digest(text)
        recent = [(h, at) for h, at in self.header.heartbeat.recent_hashes if now - at < DEDUPE_WINDOW_S]
        if any(h == digest for h, _ in recent):
            return ToolOutcome(content="not sent: you already sent this exact message in the last 24 hours")
        self._beat_sent.append(text)
        if self._beat_turn is None:
            seq = self.header.next_seq
            self._beat_turn = Turn(seq=seq, kind="heartbeat", prompt=prompt, started_at=now, model=self.header.model)
            self.header = msgspec.structs.replace(self.header, next_seq=seq + 1, open_turn=seq,
                                                  turns_total=self.header.turns_total + 1, last_turn_at=now)
        self._set_beat(recent_hashes=(*recent, (digest, now))[-MAX_REMEMBERED_HASHES:])
        # The open beat turn carries what its calls used so far: a crash before it ends is charged on recovery.
        self._beat_turn = msgspec.structs.replace(self._beat_turn, reply="\n\n".join(self._beat_sent),
                                                  usage=self._beat_meter.usage())
        if not self.commit(self._beat_turn, wait=True):
            return ToolOutcome(content="not sent: it could not be saved", is_error=True)
        self._send(text, markdown=True)
        return ToolOutcome(content="sent")

    # ------------------------------------------------------------------ /heartbeat

    def _cmd_heartbeat(self, message: SessionCommand) -> None:
        header = self.ensure_header(message.target, message.chat_title, message.chat_type)
        words = message.args.split()
        verb = words[0].lower() if words else "status"
        rest = " ".join(words[1:])
        settings = self.deps.settings
        now = self.deps.clock()
        beat = header.heartbeat
        if verb == "status":
            self._reply(message, self.heartbeat_status(now))
            return
        if verb == "on":
            beat = self._set_beat(enabled=True, owner=message.sender.user_id, disabled_reason="",
                                  next_due=next_due(beat, now))
            text = f"🫀 Heartbeat on: every {format_duration(beat.interval_s)}, next {self._when(beat.next_due)}."
        elif verb == "off":
            self._set_beat(enabled=False, disabled_reason="")
            text = "🫀 Heartbeat off."
        elif verb == "every":
            try:
                interval = parse_duration(rest)
            except DurationError as exc:
                self._reply(message, f"⛔ {exc}. Example: /heartbeat every 30m")
                return
            if interval < settings.heartbeat_min_interval_s:
                self._reply(message, f"⛔ {format_duration(interval)} is too often; the shortest interval is "
                                     f"{format_duration(settings.heartbeat_min_interval_s)}.")
                return
            beat = self._set_beat(enabled=True, interval_s=interval, owner=message.sender.user_id,
                                  disabled_reason="")
            beat = self._set_beat(next_due=next_due(beat, now))
            text = f"🫀 Heartbeat on: every {format_duration(interval)}, next {self._when(beat.next_due)}."
        elif verb == "hours":
            if rest.strip().lower() in ("off", "always", "any", "all"):
                beat = self._set_beat(active_from=None, active_until=None)
                text = "🫀 Heartbeat active at any hour."
            else:
                try:
                    window = parse_hours(rest)
                except ValueError as exc:
                    self._reply(message, f"⛔ {rest!r}: {exc}. Example: /heartbeat hours 08-22")
                    return
                assert window is not None
                beat = self._set_beat(active_from=window[0], active_until=window[1])
                text = f"🫀 Heartbeat active {window[0]:02d}:00–{window[1]:02d}:00 ({beat.tz})."
            if beat.enabled:
                beat = self._set_beat(next_due=next_window_start(beat, max(now, beat.next_due)))
        elif verb == "tz":
            if parse_zone(rest.strip()) is None:
                shown = rest.strip()[:64]
                self._reply(message, f"⛔ {shown!r} is not a time zone. Example: /heartbeat tz Europe/Lisbon")
                return
            beat = self._set_beat(tz=rest.strip())
            text = f"🫀 Heartbeat time zone: {beat.tz} (it is {self._local(now)} there)."
        elif verb == "test":
            self._heartbeat_test(message, now)
            return
        else:
            self._reply(message, "Usage: /heartbeat [on|off|every DUR|hours HH-HH|tz ZONE|test|status]")
            return
        if not self.commit(wait=True):
            self.header = header  # not saved, so not in effect
            self._reply(message, "⚠️ The heartbeat setting could not be saved; please try again.")
            return
        self._reschedule()
        self._reply(message, text)

    def _heartbeat_test(self, message: SessionCommand, now: float) -> None:
        if self.header is None or self._has_work():
            self._reply(message, "🫀 Not now: messages are waiting to be answered.")
            return
        if self.deps.registry.shutting_down.is_set():
            self._reply(message, "🫀 Not now: vigil is restarting.")
            return
        if not self.header.heartbeat.owner:
            self._set_beat(owner=message.sender.user_id)
        sent = self.run_beat(now)
        self._reschedule()
        if self.beat_refusal:
            self._reply(message, f"🫀 Test beat not run: {self.beat_refusal}")
        elif sent:
            quoted = "\n".join(f"«{text[:300]}»" for text in sent)
            self._reply(message, f"🫀 Test beat: the model chose to speak:\n{quoted}")
        else:
            decision = self.header.heartbeat.last_decision if self.header else ""
            self._reply(message, f"🫀 Test beat: the model {decision or 'stayed silent'}.")

    def heartbeat_status(self, now: float) -> str:
        assert self.header is not None
        beat = self.header.heartbeat
        hours = (f"{beat.active_from:02d}:00–{beat.active_until:02d}:00" if beat.active_from is not None
                 and beat.active_until is not None else "any hour")
        lines = [f"🫀 Heartbeat {'on' if beat.enabled else 'off'}"
                 + (f" ({beat.disabled_reason})" if beat.disabled_reason and not beat.enabled else ""),
                 f"Interval: {format_duration(beat.interval_s)} · Active: {hours} · Time zone: {beat.tz} "
                 f"(now {self._local(now)})"]
        if beat.enabled:
            lines.append(f"Next beat: {self._when(beat.next_due)}")
        if beat.last_beat_at:
            said = f": «{beat.last_message[:200]}»" if beat.last_message and beat.last_decision.startswith(
                "spoke") else ""
            lines.append(f"Last beat: {self._when(beat.last_beat_at)} — {beat.last_decision}{said}")
        usage = self.header.heartbeat_usage
        lines.append(f"Heartbeat cost so far: {usage.calls} calls, ${usage.cost_usd:.4f}")
        return "\n".join(lines)

    def _local(self, at: float) -> str:
        tz = self.header.heartbeat.tz if self.header else "UTC"
        return dt.datetime.fromtimestamp(at, zone_of(tz)).strftime("%H:%M")

    def _when(self, at: float) -> str:
        delta = at - time.time()
        relative = f"in {format_duration(delta)}" if delta > 0 else f"{format_duration(-delta)} ago"
        return f"{self._local(at)} ({relative})"
