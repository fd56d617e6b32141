"""What `pip install .` puts into site-packages: vigil and its dist-info, nothing named `actors` or `adapters`.

The real folders are `vigil/actors` and `vigil/adapters`; the checkout's top-level `actors/` and
`adapters/` are links to them (the card's layout), which must not land in the wheel. This builds the
real wheel from a copy of the checkout (with the project's own setuptools, no build isolation, so no
network) and installs it into a directory of its own, then imports the actor and the Telegram service
from there and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_JUNK = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("vigil", "actors", "adapters"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=_JUNK)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(src),
         "-w", str(out)],
        capture_output=True, text=True, timeout=170,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("vigil-*.whl")
    return built


def test_the_wheel_holds_only_vigil(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"vigil", next(t for t in tops if t.endswith(".dist-info"))}
    assert "vigil/actors/session.py" in names
    assert "vigil/adapters/telegram/service.py" in names
    # Real directories in the wheel, not the checkout's symlinks.
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo("vigil/actors/session.py").file_size > 0


def test_installed_package_imports_on_its_own(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=170,
    )
    assert done.returncode == 0, done.stderr
    # `bin/` holds the `vigil` console script.
    assert {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")} - {"bin"} == {"vigil"}
    probe = (
        "import importlib.util, vigil.actors.session, vigil.adapters.telegram.service, vigil.actors.supervisor as s;"
        "print(s.__file__);"
        "print(importlib.util.find_spec('actors'), importlib.util.find_spec('adapters'))"
    )
    # -I: no user site, no PYTHONPATH, no cwd; the target goes first, ahead of the editable checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr
    where, missing = done.stdout.splitlines()
    assert where.startswith(str(target / "vigil" / "actors"))
    assert missing == "None None"
