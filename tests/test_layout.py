"""The package's shape: modules small enough to read at once, each saying what it owns, and no upward imports.

Issue 11 split the large modules into parts of one job each; this keeps them that way. The store and
the ports are the bottom of the package: the actors and the adapters build on them, so they must not
import either (a cycle would make every test of the store load the actors, and the ports' contract
would stop being the one place both sides meet). Read from the source with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The checkout keeps actors/ and adapters/ at the top; vigil/actors and vigil/adapters are symlinks to them.
PACKAGE_DIRS = (ROOT / "vigil", ROOT / "actors", ROOT / "adapters")
MAX_LINES = 420  # "about 400": a module longer than this has more than one job
SMALLER = {"actors/session.py": 250}  # the session actor only routes; the work is in its helpers
UPWARD = ("vigil.actors", "vigil.adapters", "actors", "adapters")


def modules() -> list[Path]:
    found = []
    for top in PACKAGE_DIRS:
        for path in top.rglob("*.py"):
            # rglob does not descend into the symlinks under vigil/, so each file is seen once.
            if "__pycache__" not in path.parts:
                found.append(path)
    return sorted(found)


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            out.add(node.module)
    return out


def test_the_walk_sees_the_whole_package() -> None:
    names = {name(p) for p in modules()}
    assert {"vigil/ports.py", "vigil/store/store.py", "actors/session.py", "adapters/telegram/service.py"} <= names
    # Each file once, under its real folder: none through the vigil/actors or vigil/adapters symlinks.
    assert not [n for n in names if n.startswith(("vigil/actors/", "vigil/adapters/"))]
    assert (ROOT / "vigil" / "actors").is_symlink() and (ROOT / "vigil" / "adapters").is_symlink()


@pytest.mark.parametrize("path", modules(), ids=name)
def test_every_module_is_about_400_lines_at_most(path: Path) -> None:
    limit = SMALLER.get(name(path), MAX_LINES)
    lines = len(path.read_text().splitlines())
    assert lines <= limit, f"{name(path)} has {lines} lines (at most {limit}): split it by job"


@pytest.mark.parametrize("path", modules(), ids=name)
def test_every_module_says_what_it_owns(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(), str(path))), f"{name(path)} has no module docstring"


@pytest.mark.parametrize("path", [ROOT / "vigil" / "ports.py", *sorted((ROOT / "vigil" / "store").glob("*.py"))],
                         ids=name)
def test_the_ports_and_the_store_import_nothing_from_the_actors_or_adapters(path: Path) -> None:
    upward = sorted(m for m in imported(path) if any(m == top or m.startswith(top + ".") for top in UPWARD))
    assert upward == [], f"{name(path)} imports {upward}"
