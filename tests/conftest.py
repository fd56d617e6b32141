"""Shared fixtures: a real LMDB store in a temporary data directory, runtimes on fakes, the stand-ins on
their own (with PTB or the anthropic SDK driving them), and the end-to-end rigs.

The rigs (`tests/rig.py`): `shared` is one running vigil per test module, `rig` hands it to a test
and checks it afterwards, `pooled` hands a test the running vigil with the settings it names, shared
with every test of the worker's session that names the same (its chats must be its own), and `fresh`
makes rigs of a test's own, for tests that restart, kill or count everything a service did.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.bytecode import CACHE as CACHE  # first of ours: bytecode is cached from here on
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


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[frozenset[tuple[str, str]], Rig]]:
    """The running vigils `pooled` hands out, one for each set of settings asked for, stopped (and checked to
    exit cleanly, the Messages API having refused nothing) at the end of the worker's session."""
    pool: dict[frozenset[tuple[str, str]], Rig] = {}
    try:
        yield pool
    finally:
        for made in pool.values():
            close_rig(made)
        assert all(not made.api.errors for made in pool.values()), [made.api.errors for made in pool.values()]


@pytest.fixture
def pooled(services: dict[frozenset[tuple[str, str]], Rig], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Callable[..., Rig]]:
    """A factory for the running vigil with these extra settings, shared by the tests that ask for the same (a
    start costs seconds of CPU, a turn milliseconds): for a test that talks only in chats of its own, stops and
    kills nothing, and judges only what its own chats did. Checked after the test like `rig`."""
    handed: list[tuple[Rig, int]] = []

    def factory(**extra: str) -> Rig:
        key = frozenset(extra.items())
        if key not in services:
            made = make_rig(tmp_path_factory.mktemp("pooled"), **extra)
            services[key] = made
            made.start()
        handed.append((services[key], len(services[key].api.errors)))
        return services[key]

    yield factory
    for handed_rig, errors_before in handed:
        assert handed_rig.alive(), handed_rig.running().err.text[-3000:]
        assert handed_rig.api.errors[errors_before:] == [], "the Messages API refused a request vigil built"


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


# A test using any of these runs against the loopback stand-ins (and most start `vigil run`): it is end to end.
E2E_FIXTURES = frozenset({"shared", "rig", "pooled", "services", "fresh", "bot_api", "messages_api", "claude"})


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked `e2e` that starts vigil as a subprocess or a stand-in's server fails at once, saying
    so: `pytest -m "not e2e"` (the inner loop) must hold the unit layer only, and no test may forget its mark."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    name = request.node.nodeid

    class InProcessOnly(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            argv = [str(a) for a in args] if isinstance(args, list | tuple) else str(args).split()
            if starts_vigil(argv):
                raise AssertionError(f"{name} starts vigil as a subprocess ({' '.join(argv[:4])}): mark it e2e")
            super().__init__(args, *rest, **options)

    def refuse(self: object) -> None:
        raise AssertionError(f"{name} starts the {type(self).__name__} stand-in's server: mark it e2e")

    monkeypatch.setattr(subprocess, "Popen", InProcessOnly)
    monkeypatch.setattr(BotAPI, "start", refuse)
    monkeypatch.setattr(MessagesAPI, "start", refuse)


def starts_vigil(argv: list[str]) -> bool:
    """`python -m vigil ...`, the `vigil` script, or a workload of tests/ running vigil's code in a process."""
    if argv and Path(argv[0]).name == "vigil":
        return True
    return any(flag == "-m" and (module == "vigil" or module.startswith(("vigil.", "tests.")))
               for flag, module in itertools.pairwise(argv))


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the marks added here count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use a rig or a stand-in are marked `e2e` (see E2E_FIXTURES), whatever their module says.

    Tests marked `latest` (tests/test_latest.py: the newest allowed releases, fetched from the
    registry) run only when asked for by name (`pytest -m latest`); every other run leaves them out,
    whatever its own `-m` says, so `pytest -m "not e2e"` does not start installing packages."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    if "latest" in (config.option.markexpr or ""):
        return
    chosen = [item for item in items if item.get_closest_marker("latest") is None]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("latest")])
        items[:] = chosen


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any | None:
    """xdist hands out the tests of an end-to-end module (`*_e2e.py`) to one worker together, every other test
    on its own: the module's `shared` vigil then starts once, not once on each worker (a start costs seconds
    of CPU, a test on a running vigil little). The biggest modules go first, so none is left for the end.

    `--dist loadgroup` with marks added here would say the same, but xdist 3.8 tells the group by rewriting
    node ids, which pytest 9.2 ignores (pytest-dev/pytest-xdist#1386): the groups silently vanish."""
    if config.getvalue("dist") != "load":
        return None  # another distribution asked for by name (`--dist ...`): xdist's own
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class EndToEndModulesTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.endswith("_e2e.py") else nodeid

    return EndToEndModulesTogether(config, log)
