"""The value parsers of the settings: each turns one raw string into a value or raises ValueError.

They live apart from `vigil.config.settings` (which maps variables to fields and reads the environment and the
TOML file) so that the contract's list of variables stays short enough to read in one go. A ValueError's
message reads after "NAME='value': ", so each says what is wrong, and how to write it right.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Literal, get_args

from vigil.durations import parse_duration
from vigil.errors import DurationError

MAX_UPLOAD_MB = 50  # the public Bot API takes uploads up to 50 MB (photos up to 10 MB)
WebTool = Literal["search", "fetch"]  # VIGIL_WEB: Anthropic's server-side web_search / web_fetch



def text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def optional_text(raw: str) -> str | None:
    return raw.strip() or None


def whole(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("not a whole number") from None
        if value < minimum:
            raise ValueError("must be at least 1" if minimum == 1 else "must not be negative")
        return value

    return parse


positive_int = whole(1)
non_negative_int = whole(0)


def upload_mb(raw: str) -> int:
    value = positive_int(raw)
    if value > MAX_UPLOAD_MB:
        raise ValueError(f"must be at most {MAX_UPLOAD_MB}: Telegram's Bot API takes uploads up to {MAX_UPLOAD_MB} MB")
    return value


def money(raw: str) -> float:
    try:
        value = float(raw.strip().lstrip("$"))
    except ValueError:
        raise ValueError("not an amount of dollars, like 5 or 2.50") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def duration(raw: str) -> float:
    try:
        return parse_duration(raw)
    except DurationError as exc:
        raise ValueError(exc.reason) from None


def duration_or_off(raw: str) -> float:
    """A duration, or `off` / `0` (or nothing) for never."""
    if raw.strip().lower() in ("", "off", "0", "never", "false", "no"):
        return 0.0
    return duration(raw)


def flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("not a yes/no value; use 1/true or 0/false")


def on_off(raw: str) -> Literal["on", "off"]:
    # A TOML file may well say `bash_network = false`: yes/no spellings mean on/off too.
    if not raw.strip():
        raise ValueError("must be on or off")
    try:
        return "on" if flag(raw) else "off"
    except ValueError:
        raise ValueError("must be on or off") from None


def user_ids(raw: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        item = part.strip()
        if not item:
            continue
        try:
            ids.add(int(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a numeric Telegram user id") from None
    return frozenset(ids)


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def host_port(raw: str, example_port: int, any_port: bool = False) -> tuple[str, int]:
    """An address to listen on, `host:port`, an IPv6 host in brackets (`[::1]:8443`): one rule for every
    listener, so "::1:9464" is refused everywhere rather than read as some host. `any_port`: 0 picks one."""
    value = raw.strip()
    example = f"like 127.0.0.1:{example_port} or [::1]:{example_port}"
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"must be host:port, {example}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets, {example}")
    port = int(port_text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise ValueError(f"the port must be from {0 if any_port else 1} to 65535")
    return host, port


def metrics_listen(raw: str) -> str | None:
    """`host:port` (`[::1]:9464` for IPv6; port 0 picks a free one, logged); empty or `off`: no endpoint."""
    value = raw.strip()
    if value.lower() in ("", "off", "0", "false", "no"):
        return None
    host, port = host_port(value, 9464, any_port=True)
    return f"{host}:{port}"


def url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def web(raw: str) -> tuple[WebTool, ...]:
    chosen = {part.strip() for part in raw.lower().replace(";", ",").split(",")}
    if chosen <= {"off", "none", "false"}:  # a TOML file may say `web = false`
        return ()
    if unknown := chosen - set(get_args(WebTool)):
        raise ValueError(f"{min(unknown)!r} is not a web tool: use search,fetch (the default), search, fetch or off")
    return tuple(tool for tool in get_args(WebTool) if tool in chosen)


DISK_WARN_PERCENT = 10.0
"""VIGIL_DISK_WARN_PERCENT's default: admins are told when free space falls under it (vigil/telemetry/disk.py)."""


def percent(raw: str) -> float:
    """VIGIL_DISK_WARN_PERCENT: a number from 0 to 100 (a `%` may follow); `off` or 0 warns never."""
    value = raw.strip().removesuffix("%").strip()
    if value.lower() == "off":
        return 0.0
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a percentage from 0 to 100, or off") from None
    if not 0 <= number <= 100:
        raise ValueError("must be a percentage from 0 to 100, or off")
    return number
