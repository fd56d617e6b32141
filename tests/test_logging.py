"""Logging (`vigil/logs.py`): one renderer for structlog and stdlib loggers, and secrets never logged.

The bot token and the API key are configured as secrets; whatever carries them to a log line (an
event field, a library's message, an httpx URL, an exception's message or traceback) the rendered
line holds `[redacted]` instead.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from vigil.logs import _REDACTOR, configure_logging, get_logger, redact

TOKEN = "123456789:AAHfakeTokenValue-abc_DEF123456789xyz"
API_KEY = "sk-ant-api03-FAKEKEYabcdefghijklmnopqrstuv"
SECRETS = (TOKEN, API_KEY)
_LIBRARY_LOGGERS = ("httpx", "httpcore", "anthropic", "telegram", "pykka", "apscheduler", "hpack")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the global logging and structlog configuration back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
    config = structlog.get_config()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**config)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
        _REDACTOR.set(())  # the module-wide redactor forgets the test secrets


def setup(fmt: str, level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, SECRETS, stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines, "something was logged"
    return [json.loads(line) for line in lines]


def log_everything() -> None:
    """One of each: a vigil event carrying secrets, library lines, and two exceptions."""
    log = get_logger("vigil.test", session="tg:42")
    log.info("turn.started", token=TOKEN, detail={"api_key": API_KEY, "list": [TOKEN]})
    logging.getLogger("telegram.ext").info("Application started with token %s", TOKEN)
    logging.getLogger("pykka").info("Actor %s stopped", "SessionActor (urn:uuid:1)")
    logging.getLogger("httpx").warning(
        'HTTP Request: POST https://api.telegram.org/bot%s/getUpdates "HTTP/1.1 409 Conflict"', TOKEN)
    try:
        try:
            raise KeyError(API_KEY)
        except KeyError as inner:
            raise RuntimeError(f"request to https://api.telegram.org/bot{TOKEN}/sendMessage failed") from inner
    except RuntimeError:
        log.exception("turn.crashed")
        logging.getLogger("telegram.ext").exception("Error while getting Updates")


# ----------------------------------------------------------------------------- JSON


def test_json_lines_for_our_events_and_library_loggers() -> None:
    stream = setup("json")
    log_everything()
    records = json_lines(stream)
    for record in records:
        assert {"event", "level", "timestamp"} <= set(record)
        assert record["timestamp"].endswith("Z")
    by_logger = {(r["logger"], r["level"]) for r in records}
    assert ("vigil.test", "info") in by_logger
    assert ("telegram.ext", "info") in by_logger
    assert ("pykka", "info") in by_logger
    assert ("httpx", "warning") in by_logger
    assert ("vigil.test", "error") in by_logger
    assert ("telegram.ext", "error") in by_logger
    pykka = next(r for r in records if r["logger"] == "pykka")
    assert pykka["event"] == "Actor SessionActor (urn:uuid:1) stopped"
    started = next(r for r in records if r["event"] == "turn.started")
    assert started["session"] == "tg:42"


def test_json_exceptions_are_structured_without_locals() -> None:
    stream = setup("json")
    secret_local = "local-value-that-must-not-be-logged"
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("vigil.test").exception("failed", local_hint=len(secret_local))
    (record,) = json_lines(stream)
    assert record["level"] == "error"
    assert record["exception"][0]["exc_type"] == "ValueError"
    assert record["exception"][0]["exc_value"] == "boom"
    assert secret_local not in stream.getvalue()


def test_auto_on_a_pipe_is_json() -> None:
    stream = setup("auto")
    get_logger("vigil.test").info("hello", n=1)
    (record,) = json_lines(stream)
    assert record["event"] == "hello"
    assert record["n"] == 1


# ----------------------------------------------------------------------------- console


def test_console_is_key_value() -> None:
    stream = setup("console")
    log_everything()
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert "turn.started" in first
    assert "session=tg:42" in first
    assert "[info" in first
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)
    assert "Application started with token [redacted]" in text
    assert "[telegram.ext]" in text
    assert "Actor SessionActor (urn:uuid:1) stopped" in text
    assert "[pykka]" in text
    assert "bot[redacted]/getUpdates" in text
    assert "Traceback (most recent call last)" in text


# ----------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_never_reach_the_output(fmt: str) -> None:
    stream = setup(fmt)
    log_everything()
    text = stream.getvalue()
    for secret in SECRETS:
        assert secret not in text
    # Every place a secret was, in both exceptions (chained cause included), says so instead.
    assert text.count("[redacted]") >= 8
    assert "bot[redacted]/getUpdates" in text
    assert "bot[redacted]/sendMessage" in text


def test_redaction_in_json_fields_keeps_lines_parseable() -> None:
    stream = setup("json")
    log_everything()
    records = json_lines(stream)
    started = next(r for r in records if r["event"] == "turn.started")
    assert started["token"] == "[redacted]"
    assert started["detail"] == {"api_key": "[redacted]", "list": ["[redacted]"]}
    httpx = next(r for r in records if r["logger"] == "httpx")
    assert httpx["event"].startswith("HTTP Request: POST https://api.telegram.org/bot[redacted]/getUpdates")
    crashed = next(r for r in records if r["event"] == "turn.crashed")
    values = [e["exc_value"] for e in crashed["exception"]]
    assert any("bot[redacted]/sendMessage" in v for v in values)
    assert any("[redacted]" in v and "KeyError" not in v for v in values)


def test_a_secret_inside_a_longer_secret_is_replaced_whole() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", ("abcdef", "abcdefghijkl"), stream)
    get_logger("vigil.test").info("x", value="abcdefghijkl and abcdef")
    (record,) = json_lines(stream)
    assert record["value"] == "[redacted] and [redacted]"


def test_redact_for_text_outside_the_pipeline() -> None:
    setup("json")
    assert redact(f"failed: {TOKEN}") == "failed: [redacted]"
    assert redact("nothing secret") == "nothing secret"


def test_configuring_again_moves_the_output_and_the_secrets() -> None:
    first = setup("json")
    log = get_logger("vigil.test")
    log.info("one")
    second = io.StringIO()
    configure_logging("info", "json", ("new-secret-value",), second)
    log.info("two", value="new-secret-value", old=TOKEN)
    assert [r["event"] for r in json_lines(first)] == ["one"]
    (record,) = json_lines(second)
    assert record["event"] == "two"
    assert record["value"] == "[redacted]"
    assert record["old"] == TOKEN  # no longer configured as a secret


# ----------------------------------------------------------------------------- context and levels


def test_bound_session_context() -> None:
    stream = setup("json")
    log = get_logger("vigil.actors.session", session="console:default")
    log.info("session.started")
    log.bind(turn=3).info("turn.done")
    structlog.contextvars.bind_contextvars(request="r-1")
    get_logger("vigil.other").info("from.contextvars")
    records = json_lines(stream)
    assert records[0]["session"] == "console:default"
    assert records[1]["session"] == "console:default"
    assert records[1]["turn"] == 3
    assert records[2]["request"] == "r-1"
    assert "session" not in records[2]


def test_levels_filter_ours_and_keep_libraries_quiet() -> None:
    stream = setup("json", level="warning")
    get_logger("vigil.test").info("hidden")
    get_logger("vigil.test").warning("shown")
    logging.getLogger("telegram.ext").info("hidden too")
    logging.getLogger("httpx").info("HTTP Request: GET https://example.org")
    assert [r["event"] for r in json_lines(stream)] == ["shown"]

    stream = setup("json", level="debug")
    get_logger("vigil.test").debug("visible at debug")
    logging.getLogger("httpx").info("HTTP Request: GET https://example.org")  # httpx stays at warning
    assert [r["event"] for r in json_lines(stream)] == ["visible at debug"]
