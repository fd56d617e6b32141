"""Shared fixtures: a real LMDB store in a temporary data directory, runtimes on fakes, the stand-ins on
their own (with PTB or the anthropic SDK driving them), and the end-to-end rigs.

The rigs (`tests/rig.py`): `shared` is one running vigil per test module, `rig` hands it to a test
and checks it afterwards, `fresh` makes rigs of a test's own, with settings of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest

from tests.fakes import HarnessFactory
from tests.ptb import ALICE, BOB
from tests.rig import Rig, close_rig, make_rig, running
from tests.standins.bot_api import BotAPI
from tests.standins.messages_api import MessagesAPI
from vigil.store.store import LmdbStore, open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet (the store creates it)."""
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[LmdbStore]:
    """The process's store for `data_dir`, on real LMDB; closed after the test."""
    opened = open_store(data_dir)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[HarnessFactory]:
    """Runtimes on fakes (scripted model, recording outbox) in `tmp_path`, shut down after the test."""
    with HarnessFactory(tmp_path) as factory:
        yield factory


@pytest.fixture
def bot_api() -> Iterator[BotAPI]:
    """The Bot API stand-in with Alice (in a private chat with the bot) and Bob; see tests/ptb.py."""
    with BotAPI() as stand_in:
        alice = stand_in.add_user(ALICE, "Alice", "alice")
        stand_in.add_user(BOB, "Bob", "bob")
        stand_in.add_private_chat(alice)
        yield stand_in


@pytest.fixture
def messages_api() -> Iterator[MessagesAPI]:
    """The Messages API stand-in."""
    with MessagesAPI() as server:
        yield server


@pytest.fixture
def claude(messages_api: MessagesAPI) -> Iterator[anthropic.Anthropic]:
    """The anthropic SDK on the Messages API stand-in, without the SDK's own retries."""
    sdk = anthropic.Anthropic(api_key="test-key", base_url=messages_api.base_url, max_retries=0)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One running vigil for the tests of a module; a module's `RIG_SETTINGS` (a dict) adds to its environment."""
    with running(make_rig(tmp_path_factory.mktemp("shared"), **getattr(request.module, "RIG_SETTINGS", {}))) as rig:
        yield rig


@pytest.fixture
def rig(shared: Rig) -> Iterator[Rig]:
    """The shared rig, checked after each test: vigil still runs and no request was refused."""
    errors_before = len(shared.api.errors)
    yield shared
    assert shared.alive(), shared.running().err.text[-3000:]
    assert shared.api.errors[errors_before:] == [], "the Messages API refused a request vigil built"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """A factory for a rig of the test's own, with extra settings; vigil is started unless `start=False`.

    `defaults=True` leaves VIGIL_DATA_DIR and VIGIL_WORKDIR_ROOT unset (vigil's own defaults).
    """
    made: list[Rig] = []

    def factory(defaults: bool = False, start: bool = True, **extra: str) -> Rig:
        made_rig = make_rig(tmp_path / f"rig{len(made)}", **extra)
        if defaults:
            for name in ("VIGIL_DATA_DIR", "VIGIL_WORKDIR_ROOT"):
                del made_rig.env[name]
        made.append(made_rig)
        if start:
            made_rig.start()
        return made_rig

    yield factory
    for made_rig in made:
        close_rig(made_rig)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `latest` (tests/test_latest.py: the newest allowed releases, fetched from the
    registry) run only when asked for by name (`pytest -m latest`); every other run leaves them out,
    whatever its own `-m` says, so `pytest -m "not e2e"` does not start installing packages."""
    if "latest" in (config.option.markexpr or ""):
        return
    chosen = [item for item in items if item.get_closest_marker("latest") is None]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("latest")])
        items[:] = chosen
