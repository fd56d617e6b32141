"""Plain-text views of sessions and usage, shared by the chat commands and `vigil sessions`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from vigil.durations import ago, format_duration
from vigil.model.prices import WEB_SEARCH_MICROS
from vigil.records.schema import Heartbeat, SessionHeader, Usage
from vigil.store.store import UsageRow


def tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return str(count)


def money(micros: int) -> str:
    dollars = micros / 1_000_000
    return f"${dollars:.4f}" if dollars < 1 else f"${dollars:.2f}"


def clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def heartbeat_line(beat: Heartbeat) -> str:
    if not beat.enabled:
        return f"off ({beat.disabled_reason})" if beat.disabled_reason else "off"
    hours = ""
    if beat.active_from is not None and beat.active_until is not None:
        hours = f", {beat.active_from:02d}-{beat.active_until:02d} {beat.tz}"
    return f"every {format_duration(beat.interval_s)}{hours}"


def usage_line(usage: Usage) -> str:
    return (f"{tokens(usage.input_tokens)} in · {tokens(usage.output_tokens)} out · "
            f"{tokens(usage.cache_read_tokens)} cache read · {tokens(usage.cache_write_tokens)} cache write · "
            f"{money(usage.cost_micros)}{searches_mark(usage)}{estimated_mark(usage)}")


def session_title(header: SessionHeader) -> str:
    if header.title:
        return header.title
    if header.chat_type == "console":
        return f"console {header.key.split(':', 1)[1]}"
    return header.key


def session_line(index: int, header: SessionHeader, state: str, now: float | None = None) -> str:
    total = header.usage + header.heartbeat_usage
    talk = f"\n   💬 #{header.generation} «{header.conversation_title}»" if header.conversation_title else ""
    return (f"{index}. {'📌 ' if header.pinned else ''}{session_title(header)} — {header.key}{talk}\n"
            f"   {state} · {header.cwd} · {header.model} · active {ago(header.last_activity, now)} · "
            f"{header.next_seq} turns · {money(total.cost_micros)} · ♥ {heartbeat_line(header.heartbeat)}")


def sum_usage(rows: Iterable[UsageRow]) -> Usage:
    total = Usage()
    for row in rows:
        total = total + row.usage
    return total


def usage_report(rows: Sequence[UsageRow], titles: dict[str, str], today: str, week_start: str,
                 month_start: str, per_user: bool) -> str:
    """Today / 7 days / 30 days, then per chat (or per user for admins)."""
    lines: list[str] = []
    for label, since in (("Today", today), ("7 days", week_start), ("30 days", month_start)):
        total = sum_usage(r for r in rows if r.day >= since)
        lines.append(f"{label}: {tokens(total.total_tokens)} tokens · {money(total.cost_micros)} "
                     f"({total.calls} calls){searches_mark(total)}{estimated_mark(total)}")
    month = [r for r in rows if r.day >= month_start]
    groups: dict[str, list[UsageRow]] = {}
    for row in month:
        groups.setdefault(str(row.user_id) if per_user else row.key, []).append(row)
    if groups:
        lines.append("")
        lines.append("Per user (30 days):" if per_user else "Per chat (30 days):")
        ranked = sorted(groups.items(), key=lambda kv: sum_usage(kv[1]).cost_micros, reverse=True)
        for name, group in ranked[:25]:
            total = sum_usage(group)
            beats = sum_usage(r for r in group if r.kind == "heartbeat")
            label = f"user {name}" if per_user else f"{titles.get(name, name)} ({name})"
            beat_text = f" · heartbeats {money(beats.cost_micros)} ({beats.calls})" if beats.calls else ""
            lines.append(f"• {label}: {money(total.cost_micros)} · {tokens(total.total_tokens)} tokens{beat_text}"
                         f"{searches_mark(total)}{estimated_mark(total)}")
    estimated = sum_usage(r for r in rows if r.day >= month_start).estimated_calls
    if estimated:
        lines.append("")
        lines.append(f"≈ estimated: {estimated} call(s) used a model missing from vigil's price table; they were "
                     "charged at the highest price of its family.")
    return "\n".join(lines)


def estimated_mark(usage: Usage) -> str:
    """A visible mark on a cost that includes calls priced by estimate (a model missing from the price table)."""
    return f" · ≈ {usage.estimated_calls} estimated" if usage.estimated_calls else ""


def searches_mark(usage: Usage) -> str:
    """The web searches in a cost, and their share of it (they are billed per search, not by tokens)."""
    count = usage.web_searches
    if not count:
        return ""
    return f" · {count} web search{'es' if count > 1 else ''} {money(count * WEB_SEARCH_MICROS)}"
