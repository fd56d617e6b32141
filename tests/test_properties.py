"""Property tests: command parsing, text cleaning, and arbitrary Unicode through real sessions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import CHANNEL, Harness, HarnessFactory
from vigil.commands import BY_NAME, parse_command
from vigil.text import clean

ANY_CHAR = st.characters(blacklist_categories=())  # includes lone surrogates and control characters
_chats = itertools.count(1)


@given(st.text(alphabet=ANY_CHAR))
def test_parsing_any_text_gives_a_command_or_nothing(text: str) -> None:
    command = parse_command(text)
    if command is None:
        return
    assert text.strip().startswith("/")
    assert command.name == command.name.lower() and 1 <= len(command.name) <= 32
    assert command.args == command.args.strip()


@given(st.sampled_from(sorted(BY_NAME)), st.text(alphabet=ANY_CHAR).map(lambda s: s.replace("\n", " ")),
       st.sampled_from(["", "@vigil_test_bot"]))
def test_a_command_keeps_its_arguments(name: str, args: str, suffix: str) -> None:
    command = parse_command(f"/{name}{suffix} {args}")
    assert command is not None and command.name == name
    assert command.args == args.strip()
    assert command.addressed_to == (suffix[1:] or None)


@given(st.text(alphabet=ANY_CHAR))
def test_cleaned_text_always_encodes_and_keeps_what_was_valid(text: str) -> None:
    cleaned = clean(text)
    cleaned.encode("utf-8")
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert cleaned == text


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with HarnessFactory(Path(tmp_path_factory.mktemp("properties"))) as factory:
        yield factory()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=ANY_CHAR, min_size=1, max_size=400))
def test_any_unicode_message_is_stored_and_answered(harness: Harness, text: str) -> None:
    key = f"{CHANNEL}:{next(_chats)}"
    harness.say(key, clean(text))
    assert harness.drain(key)
    turns = harness.turns(key)
    assert [t.status for t in turns] == ["done"]
    assert turns[0].inputs[0].text == clean(text)
    assert harness.outbox.finished(key), "a reply was delivered"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["cd", "model", "heartbeat", "notes", "new"]),
       st.text(alphabet=ANY_CHAR, max_size=80).map(clean))
def test_any_command_arguments_get_an_answer_and_break_nothing(harness: Harness, name: str, args: str) -> None:
    key = f"{CHANNEL}:{next(_chats)}"
    before = len(harness.outbox.sent(key))
    harness.command(key, name, args)
    assert harness.drain(key)
    assert harness.outbox.wait_for(lambda: len(harness.outbox.sent(key)) > before), f"/{name} {args!r} answered"
    harness.say(key, "still fine?")
    assert harness.drain(key)
    assert harness.outbox.finished(key)[-1][0].startswith("echo")
