"""The newest releases pyproject.toml allows, watched before the lock moves to them.

The default run tests the lock (.ci/requirements.lock). This test (only with `pytest -m latest`; it
needs the package registry) installs vigil into a scratch virtualenv with every dependency at the
newest release its range allows, ignoring the lock, and runs the tests that speak to the SDKs there:
the Messages API and Bot API stand-ins driven by the real anthropic SDK and python-telegram-bot, and
the end-to-end model and Telegram tests of `vigil chat` and `vigil run`. A release that changes what
vigil relies on (anthropic 2.17 re-classed a stream cut mid-answer) fails here, not on a user's machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Installing and running five test files takes minutes, well past the suite's per-test limit.
pytestmark = [pytest.mark.latest, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parent.parent
SUITES = (
    "tests/test_model_failures.py",
    "tests/test_standin_messages_api.py",
    "tests/test_standin_bot_api.py",
    "tests/test_console_e2e.py",
    "tests/test_telegram_e2e.py",
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    text = (ROOT / ".ci" / "requirements.lock").read_text()
    return {_normal(name): version for name, version in _PIN.findall(text)}


def test_the_newest_allowed_releases_pass_the_sdk_and_end_to_end_tests(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "--upgrade-strategy", "eager",
                    "-e", f"{ROOT}[test]"], check=True, timeout=900)
    frozen = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    newest = {_normal(name): version for name, version in _PIN.findall(frozen)}
    lock = locked()
    moved = sorted(f"{name} {lock[name]} -> {version}" for name, version in newest.items()
                   if name in lock and lock[name] != version)
    print("newer than the lock:", ", ".join(moved) or "nothing")
    run = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUITES], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, (f"with {', '.join(moved) or 'the locked versions'}:\n"
                                 + (run.stdout + run.stderr)[-6000:])
