"""Streaming with drafts: the display's rules (first words at once, durable only what stays) and where a
drafted reply that outgrows a message is cut (`settled_cut`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import Block, Harness, HarnessFactory, RecordingOutbox, ScriptedModel, key_of
from vigil.adapters.telegram.render import markdown_to_html as render
from vigil.adapters.telegram.render import settled_cut, split_for_telegram, utf16_len, visible_text


@pytest.fixture
def make(tmp_path: Path) -> Iterator[HarnessFactory]:
    with HarnessFactory(tmp_path) as factory:
        yield factory


# ------------------------------------------------------------------------------------------ the display


def stored_reply(h: Harness, key: str) -> str:
    """The reply of the session's newest stored turn, as durable now ("" when nothing is stored yet)."""
    store = h.runtime.store
    header = store.header(key)
    turns = store.turns(key, header.generation) if header is not None else []
    return turns[-1].reply if turns else ""


def test_the_first_words_are_drafted_at_once_without_waiting_for_the_disk(make: HarnessFactory) -> None:
    release = threading.Event()
    outbox = RecordingOutbox(interval=30.0, drafts=True)  # an interval no test waits out
    h = make(model=ScriptedModel([Block(release, text=" and the rest.", partial="The first words")]), outbox=outbox)
    key = key_of(1)
    stored: list[str] = []
    outbox.update_hook = lambda k, text: stored.append(stored_reply(h, k))
    h.say(key, "tell me")
    assert outbox.wait_for(lambda: any(e[:2] == ("draft", "The first words")
                                       for s in outbox.streams_of(key) for e in s.events), 5)
    release.set()
    assert outbox.wait_finished(key, 1) == [("The first words and the rest.", "")]
    [stream] = outbox.streams_of(key)
    assert [e[0] for e in stream.events if e[0] in ("draft", "update") and e[1]] == ["draft"], stream.events
    assert stored and all(reply == "" for reply in stored), "the draft was shown without a checkpoint before it"


def test_a_slow_start_shows_an_empty_draft_then_the_words(make: HarnessFactory) -> None:
    release = threading.Event()
    outbox = RecordingOutbox(interval=30.0, drafts=True)
    h = make(model=ScriptedModel([Block(release, text="Done thinking.")]), outbox=outbox)
    key = key_of(1)
    h.say(key, "think hard")
    assert outbox.wait_for(lambda: any(e[:2] == ("draft", "") for s in outbox.streams_of(key) for e in s.events), 5)
    release.set()
    assert outbox.wait_finished(key, 1) == [("Done thinking.", "")]


def test_without_drafts_the_first_preview_waits_and_is_durable(make: HarnessFactory) -> None:
    release = threading.Event()
    outbox = RecordingOutbox(interval=0.3)
    h = make(model=ScriptedModel([Block(release, text=" more.", partial="Some words")]), outbox=outbox)
    key = key_of(1)
    stored: list[str] = []
    outbox.update_hook = lambda k, text: stored.append(stored_reply(h, k))
    h.say(key, "tell me")
    assert outbox.wait_for(lambda: any(e[0] == "update" for s in outbox.streams_of(key) for e in s.events), 5)
    release.set()
    outbox.wait_finished(key, 1)
    [stream] = outbox.streams_of(key)
    assert not [e for e in stream.events if e[0] == "draft"], "no drafts, no empty draft, where there are none"
    assert stored[0] == "Some words", "an update that stays is durable before it is shown"


def test_a_draft_past_the_cut_is_made_durable_first(make: HarnessFactory) -> None:
    release = threading.Event()
    long = "word " * 40
    outbox = RecordingOutbox(interval=0.2, drafts=True, draft_limit=100)
    h = make(model=ScriptedModel([Block(release, text="end", partial=long)]), outbox=outbox)
    key = key_of(1)
    stored: list[str] = []
    outbox.update_hook = lambda k, text: stored.append(stored_reply(h, k))
    h.say(key, "tell me")
    assert outbox.wait_for(lambda: any(e[0] == "update" for s in outbox.streams_of(key) for e in s.events), 5)
    release.set()
    outbox.wait_finished(key, 1)
    assert stored[0] == long.strip(), "the part that will stay in the chat was on disk before it was shown"


# ------------------------------------------------------------------------------------------ settled_cut


def shown_len(markdown: str) -> int:
    return utf16_len(visible_text(render(markdown)))


def test_no_cut_while_the_reply_fits() -> None:
    assert settled_cut("short\n\nreply") == 0
    assert settled_cut("x" * 4096) == 0


def test_the_cut_is_the_last_paragraph_break_before_which_it_fits() -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum " * 30 for i in range(20)]
    text = "\n\n".join(paragraphs)
    cut = settled_cut(text)
    assert 0 < cut < len(text)
    assert text[cut - 2:cut] == "\n\n" and text[cut:].startswith("Paragraph")
    assert shown_len(text[:cut]) <= 4096 and utf16_len(text[:cut]) <= 4096
    nxt = text.find("\n\n", cut)
    assert utf16_len(text[:nxt + 2]) > 4096, "a later paragraph break would also have fitted"
    assert len(split_for_telegram(text[:cut])) == 1


def test_no_cut_inside_a_code_block() -> None:
    code = "```python\n" + "\n\n".join(f"x_{i} = {i}  # " + "c" * 60 for i in range(120)) + "\n```"
    text = "Intro.\n\n" + code + "\n\nAfter."
    cut = settled_cut(text)
    assert cut == len("Intro.\n\n"), "the only place outside the code is before it"


def test_one_block_longer_than_a_message_has_no_cut() -> None:
    assert settled_cut("word " * 2000) == 0
