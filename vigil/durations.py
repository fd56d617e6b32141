"""Human durations: `90s`, `15m`, `2h`, `1d`, and combinations such as `1h30m`.

One parser serves the environment, the TOML file and the chat commands, so a
duration means the same thing wherever a user types it.
"""

from __future__ import annotations

import re
import time

from vigil.errors import DurationError as DurationError  # its old home: re-exported

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w))+\s*$")

HINT = "use a number with a unit, like 90s, 15m, 2h or 1d"
MAX_SECONDS = 10 * 366 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in `text`; bare numbers are refused because `30` could mean anything."""
    cleaned = text.strip().lower()
    if not cleaned or not _WHOLE.match(cleaned):
        raise DurationError(text, f"not a duration; {HINT}")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise DurationError(text, f"not a positive duration; {HINT}")
    if not seconds < MAX_SECONDS:
        raise DurationError(text, "longer than ten years; use a shorter duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact text for a duration, the inverse of `parse_duration` at one-second precision."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    total = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def ago(at: float, now: float | None = None) -> str:
    if at <= 0:
        return "never"
    delta = (time.time() if now is None else now) - at
    return "just now" if delta < 5 else f"{format_duration(delta)} ago"
