"""Logging: structlog events, key=value on a terminal, JSON lines for journald.

Every log line, ours or a library's (pykka, python-telegram-bot, httpx), goes
through one stdlib handler whose `ProcessorFormatter` renders it the same way,
and the rendered line passes through a redactor last, so the API key and the
bot token (which httpx prints inside Bot API URLs) never reach a log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_NOISY = {"httpx": logging.WARNING, "httpx2": logging.WARNING, "httpcore": logging.WARNING,
          "httpcore2": logging.WARNING, "anthropic": logging.WARNING, "telegram": logging.INFO,
          "pykka": logging.INFO, "apscheduler": logging.WARNING, "hpack": logging.WARNING,
          "mcp": logging.WARNING}


class Redactor:
    """Replaces each secret with a fixed marker in rendered log lines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.set(secrets)

    def set(self, secrets: Iterable[str]) -> None:
        # Longest first, so a token containing another secret is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True))

    def add(self, secrets: Iterable[str]) -> None:
        self.set((*self._secrets, *secrets))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


_REDACTOR = Redactor()


class _RedactingRenderer:
    """Wraps the final renderer so that redaction sees the whole line, tracebacks included."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        rendered = self._inner(logger, name, event_dict)
        return _REDACTOR(rendered if isinstance(rendered, str) else str(rendered))


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> None:
    """Install the one pipeline for structlog and stdlib logging; safe to call again."""
    out = stream or sys.stderr
    _REDACTOR.set(secrets)
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    # Tracebacks without local variables: locals can hold message texts and keys.
    tail: list[Processor] = [] if use_console else [structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail,
                    _RedactingRenderer(renderer)],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(numeric)
    for name, floor in _NOISY.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A logger with context bound up front (each actor binds `session=key` on its own thread)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**bound) if bound else logger


def redact_also(secrets: Iterable[str]) -> None:
    """Keep these out of every log line too, beside those `configure_logging` was given (the credentials of the
    MCP servers, known once VIGIL_MCP_CONFIG is read)."""
    _REDACTOR.add(secrets)


def redact(text: str) -> str:
    """The redactor, for text vigil shows outside the log pipeline (error lines)."""
    return _REDACTOR(text)

