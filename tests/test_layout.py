"""The package's shape: folders that name the parts, modules small enough to read at once, imports one way.

Issue 11 split the large modules into parts of one job each; issue 24 grouped them into folders by what
they are and made the layers run one way, contracts at the bottom, the adapters and the command line at
the top. This keeps both. Read from the source with `ast`, nothing is imported; every import counts,
inside functions and `TYPE_CHECKING` blocks too, because a circle a type checker follows is still a
circle a reader has to hold in their head.

`ALLOWED` is the map of the house: for each part (a subpackage, or a module at the top of `vigil/`),
the parts it may import. A new import of a part not listed fails `test_imports_run_one_way`; listing
it there fails `test_the_allowed_arrows_run_one_way` if it points back up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vigil"
MAX_LINES = 420  # "about 400": a module longer than this has more than one job
MAX_MODULES = 15  # per folder, `__init__.py` not counted: more and the folder no longer names one part
SMALLER = {"vigil/actors/session.py": 250}  # the session actor only routes; the work is in its helpers

# Each part, bottom to top, and the parts it may import (names below `vigil.`; "vigil" is the package's own
# `__init__`, which holds the version). Read top-down it is the architecture: values and contracts, the
# store, the model and the media; then what a session is made of; then the actors; then the runtime that
# starts them, the commands answered beside them, the operations and the adapters; the CLI last.
ALLOWED: Mapping[str, frozenset[str]] = {part: frozenset(deps) for part, deps in {
    # values every layer speaks, importing nothing of vigil's but each other
    "vigil": set(),
    "values": set(),
    "text": set(),
    "logs": set(),
    "durable": set(),
    "cancel": {"logs"},
    "errors": {"values"},
    "durations": {"errors"},
    "lock": {"errors"},
    # what is stored, and the contract sessions talk through
    "records": {"errors"},
    "ports": {"cancel", "errors", "records", "values"},
    "commands": {"ports"},
    # the machinery beneath a session: tools, model, media, store, MCP, settings, recall, policy, telemetry
    "tools": {"cancel", "logs", "records"},
    "model": {"cancel", "logs", "ports", "records", "text"},
    "store.engine": {"errors", "logs", "ports", "records"},
    "media": {"durable", "errors", "logs", "model", "ports", "records", "tools"},
    "telemetry": {"errors", "logs", "model", "ports"},
    "store": {"errors", "logs", "media", "ports", "records", "store.engine"},
    "mcp": {"vigil", "cancel", "logs", "media", "text", "tools"},
    "config": {"durable", "durations", "errors", "mcp"},
    "recall": {"errors", "lock", "logs", "records", "store", "store.engine"},
    "policy": {"cancel", "config", "durations", "mcp", "ports", "records", "store", "tools"},
    # the session actor's parts, each importing only the ones listed before it
    "actors.engine": {"cancel", "logs", "model", "ports", "records", "telemetry", "tools"},
    "actors.core": {"actors.engine", "cancel", "config", "logs", "mcp", "media", "model", "policy", "ports",
                    "recall", "records", "store", "telemetry", "tools"},
    "actors.timing": {"actors.core", "durations", "records"},
    "actors.tools": {"actors.core", "actors.engine", "actors.timing", "cancel", "config", "durations", "mcp",
                     "media", "model", "policy", "ports", "recall", "records", "text", "tools"},
    "actors.turns": {"actors.core", "actors.engine", "actors.timing", "actors.tools", "cancel", "config",
                     "durations", "errors", "model", "policy", "ports", "records"},
    "actors.commands": {"actors.core", "actors.timing", "actors.tools", "actors.turns", "commands", "durations",
                        "mcp", "model", "policy", "ports", "records", "tools"},
    "actors": {"actors.commands", "actors.core", "actors.timing", "actors.turns", "logs", "records"},
    # what starts the actors and stands beside them
    "intake": {"actors.core", "ports", "records"},
    "runtime": {"actors", "actors.core", "actors.engine", "config", "intake", "logs", "mcp", "media", "policy",
                "ports", "recall", "store", "telemetry", "tools"},
    "control": {"actors.core", "commands", "durations", "mcp", "media", "model", "policy", "ports", "recall",
                "records", "runtime", "store", "tools"},
    "ops": {"vigil", "config", "control", "durable", "durations", "errors", "lock", "logs", "mcp", "media",
            "policy", "recall", "store", "store.engine", "telemetry", "tools"},
    # the channels: Telegram's rendering and sending sit low (the actors' display feeds them), its intake high
    "adapters.telegram.render": set(),
    "adapters.telegram.send": {"actors.engine", "adapters.telegram.render", "cancel", "logs", "ports", "records",
                               "telemetry", "tools"},
    "adapters.telegram.receive": {"config", "errors", "intake", "logs", "media", "ports", "records", "runtime",
                                  "tools"},
    "adapters.telegram": {"actors.commands", "actors.core", "adapters.telegram.receive", "adapters.telegram.send",
                          "commands", "config", "control", "errors", "intake", "lock", "logs", "media", "model",
                          "ops", "policy", "ports", "records", "runtime", "text", "tools"},
    "adapters": {"actors.core", "actors.tools", "cancel", "commands", "control", "ports", "records", "runtime",
                 "text"},
    # the command line, and what only it starts
    "bench": {"actors.core", "cancel", "config", "control", "logs", "media", "ops", "ports", "recall", "records",
              "runtime", "store", "store.engine", "telemetry"},
    "cli": {"vigil", "adapters", "adapters.telegram", "bench", "config", "errors", "lock", "logs", "model", "ops",
            "runtime"},
    "__main__": {"cli"},
}.items()}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def module_names() -> frozenset[str]:
    return frozenset(dotted(p) for p in modules())


@cache
def packages() -> frozenset[str]:
    return frozenset(dotted(p) for p in modules() if p.name == "__init__.py")


def part_of(module: str) -> str:
    """The part a module belongs to: its package, or itself for a module at the top of `vigil/`."""
    if module == "vigil":
        return "vigil"
    part = module if module in packages() else module.rpartition(".")[0]
    if part == "vigil":
        part = module
    return "vigil" if part == "vigil" else part.removeprefix("vigil.")


def imported(path: Path) -> set[str]:
    """Every vigil module `path` imports, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    known = module_names()
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{name(path)}: relative import (vigil imports absolutely)"
            for alias in node.names:  # `from vigil.store.engine import keys` imports the module keys
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


@cache
def module_graph() -> Mapping[str, frozenset[str]]:
    return {dotted(p): frozenset(imported(p) - {dotted(p)}) for p in modules()}


def part_arrows(graph: Mapping[str, Iterable[str]]) -> dict[tuple[str, str], list[str]]:
    """Each arrow between two parts, with the module imports that make it."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            a, b = part_of(module), part_of(target)
            if a != b:
                arrows.setdefault((a, b), []).append(f"{module} → {target}")
    return arrows


def upward(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The arrows `ALLOWED` does not list, each with the imports that make it."""
    return [f"{a} may not import {b} ({', '.join(sorted(why)[:3])})"
            for (a, b), why in sorted(part_arrows(graph).items()) if b not in ALLOWED.get(a, frozenset())]


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_whole_package() -> None:
    names = {name(p) for p in modules()}
    assert {"vigil/ports/__init__.py", "vigil/store/store.py", "vigil/actors/session.py",
            "vigil/adapters/telegram/service.py"} <= names
    # The card's top level keeps actors/ and adapters/: links into the package, which holds the real folders,
    # so a tool walking vigil/ sees every module once and an installed vigil is the same tree.
    for top in ("actors", "adapters"):
        link = ROOT / top
        assert link.is_symlink() and link.resolve() == (PACKAGE / top).resolve(), f"{top}/ is not a link into vigil/"
    assert not any(p.is_symlink() for p in PACKAGE.rglob("*")), "a link inside vigil/ makes tools see a part twice"


@pytest.mark.parametrize("path", modules(), ids=name)
def test_every_module_is_about_400_lines_at_most(path: Path) -> None:
    limit = SMALLER.get(name(path), MAX_LINES)
    lines = len(path.read_text().splitlines())
    assert lines <= limit, f"{name(path)} has {lines} lines (at most {limit}): split it by job"


@pytest.mark.parametrize("path", modules(), ids=name)
def test_every_module_says_what_it_owns(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(), str(path))), f"{name(path)} has no module docstring"


def test_every_folder_holds_about_fifteen_modules_at_most() -> None:
    crowded = {}
    for folder in {p.parent for p in modules()}:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > MAX_MODULES:
            crowded[name(folder)] = count
    assert crowded == {}, f"group these into subpackages by what they are: {crowded}"


@pytest.mark.parametrize("path", [p for p in modules() if p.name == "__init__.py"], ids=name)
def test_every_package_is_a_part_of_the_map(path: Path) -> None:
    part = part_of(dotted(path))
    assert part in ALLOWED, f"{part}: a new package; say in ALLOWED what it may import"
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    assert len(doc.split()) >= 12, f"{name(path)}: say what the package holds and what it may import"


def test_every_part_of_the_map_exists() -> None:
    parts = {part_of(m) for m in module_names()}
    assert set(ALLOWED) == parts, f"listed, gone: {set(ALLOWED) - parts}; present, not listed: {parts - set(ALLOWED)}"


def test_imports_run_one_way() -> None:
    assert upward(module_graph()) == []


def test_the_allowed_arrows_run_one_way() -> None:
    assert circles({part: sorted(deps) for part, deps in ALLOWED.items()}) == []


def test_no_module_imports_itself_back() -> None:
    assert circles(module_graph()) == []


def test_an_arrow_back_up_fails_the_checks() -> None:
    """The checks themselves can fail: an import from the store up into the actors is caught twice."""
    graph = dict(module_graph())
    graph["vigil.records.schema"] = graph["vigil.records.schema"] | {"vigil.actors.core.state"}
    assert any(line.startswith("records may not import actors.core") for line in upward(graph))
    assert circles(graph) != []
