"""The bash sandbox end to end: `vigil run` with bash on, a model looking for secrets, a host without bwrap."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import run_vigil, vigil_env
from tests.standins.bot_api import BotAPI
from tests.standins.messages_api import MessagesAPI
from tests.test_tools_e2e import ANN, ask, result_text, start, tool, tool_results

pytestmark = pytest.mark.e2e

API_KEY = "sk-ant-secret-e2e-" + "k" * 20
BOB = 222
BOBS_WORDS = "bob-private-words"
SNOOP = "tr '\\0' '\\n' < /proc/$PPID/environ; cat /proc/1/environ; cat /proc/*/environ; echo; ls /proc; env; "


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotAPI, MessagesAPI, dict[str, str]]]:
    with MessagesAPI(api_key=API_KEY) as api, BotAPI() as tg:
        tg.add_private_chat(tg.add_user(ANN, "Ann"))
        tg.add_private_chat(tg.add_user(BOB, "Bob"))
        env = vigil_env(tmp_path, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=api.base_url,
                        TELEGRAM_BOT_TOKEN=tg.token, VIGIL_TELEGRAM_BASE_URL=tg.base_url,
                        VIGIL_ALLOWED_USERS=f"{ANN},{BOB}", VIGIL_MESSAGES_PER_MINUTE="1000", VIGIL_ENABLE_BASH="1")
        yield tg, api, env


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_the_secrets_and_the_store_never_reach_the_model(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    data = Path(env["VIGIL_DATA_DIR"])
    with start(tg, env) as vigil:
        tg.send_text(BOB, BOB, BOBS_WORDS)
        tg.wait_for(lambda: BOBS_WORDS.encode() in (data / "data.mdb").read_bytes(), timeout=20,
                    message="Bob's words to be stored")
        ask(tg, tool("bash", command=SNOOP + f"cat {data}/data.mdb; find / -name data.mdb -not -path '/proc/*'"),
            "tool results")
        result = result_text(tool_results(api.requests[-1])[0])
        assert "PATH=/usr/local/sbin" in result, "the snooping really ran"
        assert "Bash: on, sandboxed (network on)" in ask(tg, "/status", "Bash:")
        vigil.terminate()
    assert "bash.sandboxed" in vigil.err.text
    for request in api.requests:
        sent = request.all_text()
        assert API_KEY not in sent and tg.token not in sent
        assert "ANTHROPIC_API_KEY=" not in sent and "TELEGRAM_BOT_TOKEN=" not in sent
        if BOBS_WORDS not in request.last_user_text():  # Bob's own turn carries them, nobody else's
            assert BOBS_WORDS not in sent
    assert not api.errors


def test_without_bwrap_on_path_bash_is_not_offered_and_everyone_says_why(
        world: tuple[BotAPI, MessagesAPI, dict[str, str]], tmp_path: Path) -> None:
    tg, api, env = world
    no_bwrap = tmp_path / "bin-without-bwrap"
    no_bwrap.mkdir()
    env = {**env, "PATH": str(no_bwrap)}
    with start(tg, env) as vigil:
        reply = ask(tg, tool("bash", command="pwd"), "not offered")
        assert "bash" in reply
        assert "bash" not in {t.get("name") for t in api.requests[-1].body.get("tools", [])}
        status = ask(tg, "/status", "Bash:")
        assert "Bash: off — bwrap not found on PATH" in status
        vigil.terminate()
    warnings = [json.loads(line) for line in vigil.err.lines if "bash.unavailable" in line]
    assert warnings and warnings[0]["level"] == "warning" and "bwrap not found" in warnings[0]["reason"]
    check = run_vigil(["check"], env)
    assert check.returncode == 1
    assert "FAIL bash: bwrap not found on PATH" in check.stdout and "not offered" in check.stdout
    # A bwrap that cannot build its namespaces (as in a locked-down container) is named the same way.
    (no_bwrap / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (no_bwrap / "bwrap").chmod(0o755)
    check = run_vigil(["check"], env)
    assert check.returncode == 1
    assert "FAIL bash: bwrap failed: bwrap: No permissions to create new namespace" in check.stdout
    assert not api.errors
