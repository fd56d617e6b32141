"""Webhook mode's settings: the public URL, the listen address, and the secret token Telegram sends back.

Why here and not in settings.py: the rules are Telegram's and need a few lines each. Telegram's own
servers deliver only to `https://` URLs on ports 443, 80, 88 or 8443; a local Bot API server
(`VIGIL_TELEGRAM_BASE_URL` set to it) delivers anywhere, plain `http://` included, which is also what
the tests' stand-in does on loopback. The secret token is what proves a request came from Telegram:
1 to 256 characters of `A-Za-z0-9_-`. Unset, one is generated on the first start and kept in the data
directory (`webhook-secret`, 0600), so a restart registers the same one and requests Telegram queued
with it before the restart are still accepted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from vigil.config.parsing import host_port
from vigil.durable import fsync_dir, write_all
from vigil.errors import SettingsError

DEFAULT_LISTEN = ("127.0.0.1", 8443)
TELEGRAM_PORTS = (443, 80, 88, 8443)
SECRET_FILE = "webhook-secret"
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def parse_url(raw: str) -> str | None:
    """VIGIL_WEBHOOK_URL: an http(s) URL with a host; its path is what vigil serves. Empty: polling."""
    value = raw.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be a URL like https://bot.example.org/telegram")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment (the secret token proves a request is Telegram's)")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    return value


def parse_secret(raw: str) -> str | None:
    """VIGIL_WEBHOOK_SECRET: Telegram's secret_token alphabet and length. Empty: generated."""
    value = raw.strip()
    if not value:
        return None
    if not _SECRET.fullmatch(value):
        raise ValueError("must be 1 to 256 characters, each a letter, digit, _ or - (Telegram's rule)")
    return value


def parse_listen(raw: str) -> tuple[str, int]:
    """VIGIL_WEBHOOK_LISTEN: `host:port` (an IPv6 host in brackets, `[::1]:8443`)."""
    return host_port(raw, 8443)


def check_against_api(url: str | None, telegram_base_url: str, default_base_url: str) -> None:
    """Telegram's servers refuse other webhooks: say so at start-up, not after a refused setWebhook."""
    if url is None or telegram_base_url.rstrip("/") != default_base_url.rstrip("/"):
        return  # a local Bot API server delivers to any URL
    parts = urlsplit(url)
    shown = url if len(url) <= 60 else url[:57] + "..."
    if parts.scheme != "https":
        raise SettingsError(f"VIGIL_WEBHOOK_URL={shown!r}: Telegram delivers webhooks only to https:// URLs "
                            "(put a reverse proxy with a certificate in front of VIGIL_WEBHOOK_LISTEN)")
    port = parts.port or 443
    if port not in TELEGRAM_PORTS:
        raise SettingsError(f"VIGIL_WEBHOOK_URL={shown!r}: Telegram delivers webhooks only to ports "
                            f"{', '.join(map(str, TELEGRAM_PORTS))}, not {port}")


def path_of(url: str) -> str:
    """The path vigil serves: the URL's, `/` if it has none."""
    return urlsplit(url).path or "/"


def secret_token(configured: str | None, data_dir: Path) -> str:
    """VIGIL_WEBHOOK_SECRET (`configured`), else the one kept in the data directory (made on first use)."""
    if configured:
        return configured
    return kept_secret(data_dir / SECRET_FILE)


def kept_secret(path: Path) -> str:
    """The secret in `path`; a new one is written there (0600, durably) if there is none yet."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    fresh = secrets.token_urlsafe(48)  # 64 characters of A-Za-z0-9_-
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, fresh.encode())
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # never replaces a secret written meanwhile (a second process)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    fsync_dir(path.parent)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text(encoding="ascii").strip()
    if not _SECRET.fullmatch(value):
        raise SettingsError(f"{path}: not a webhook secret token (1 to 256 of A-Za-z0-9_-); delete it to make "
                            "a new one, or set VIGIL_WEBHOOK_SECRET")
    return value
