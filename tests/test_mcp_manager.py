"""The MCP manager against a real stdio server (tests/mcp_servers/toolbox.py, a process of its own).

Listing, every kind of result, the time limit, /stop (MCP cancellation reaches the server), a crash
mid-call and the restart after it (with backoff), `tools/list_changed`, one process shared by
concurrent users, and credentials kept out of every result, status, log line and repr.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from PIL import Image as PILImage

from tests.mcp_servers import script
from vigil.cancel import CancelToken
from vigil.mcp.config import parse_config
from vigil.mcp.manager import McpManager
from vigil.mcp.names import API_TOOL_NAME

SECRET = "s3cret-token-of-the-notes-server"
TOOLBOX_TOOLS = 12


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


class Clock:
    """Monotonic time plus an offset a test moves forward (only the manager's backoff reads it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def box_dir(tmp_path: Path) -> Path:
    path = tmp_path / "box"
    path.mkdir()
    return path


def make_manager(box_dir: Path, clock: Callable[[], float] = time.monotonic,
                 backoff: tuple[float, ...] = (0.0, 1.0, 2.0), timeout_s: float = 30.0,
                 command: list[str] | None = None) -> McpManager:
    argv = command or script("toolbox")
    config = parse_config({"mcpServers": {"box": {
        "command": argv[0], "args": argv[1:],
        "env": {"MCP_TEST_DIR": str(box_dir), "MCP_TEST_SECRET": SECRET}}}})
    return McpManager(config, timeout_s=timeout_s, clock=clock, backoff=backoff)


@pytest.fixture
def manager(box_dir: Path) -> Iterator[McpManager]:
    mgr = make_manager(box_dir)
    yield mgr
    mgr.close()


def starts(box_dir: Path) -> list[int]:
    path = box_dir / "starts"
    return [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    # A zombie is gone for every purpose but its entry; /proc tells. The entry itself goes when the process
    # is reaped, which may happen between any two looks (reading its stat then fails with ESRCH): gone too.
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_tools_are_listed_sorted_with_valid_names_and_read_only_hints(manager: McpManager) -> None:
    tools = manager.tools(["box", "unknown"])
    names = [t.name for t in tools]
    assert names == sorted(names)
    assert all(API_TOOL_NAME.match(n) for n in names)
    by_tool = {t.tool: t for t in tools}
    assert by_tool["read_note"].name == "mcp__box__read_note" and by_tool["read_note"].read_only
    assert not by_tool["write_note"].read_only
    assert by_tool["read_note"].spec()["input_schema"]["required"] == ["name"]
    odd = by_tool["lookup.by/id"]
    assert odd.name.startswith("mcp__box__lookup_by_id_") and len(odd.name) == len("mcp__box__lookup_by_id_") + 8
    assert manager.call(odd.name, {"id": "42"}).text.startswith("found 42")
    off = manager.call("mcp__box__read_note", {"name": "x"}, servers=["other"])
    assert off.is_error and off.text == "mcp__box__read_note is not a tool of any MCP server that is on in this chat"
    (status,) = manager.status()
    assert status.state == "running" and status.line().startswith("box · running · 12 tools")


def test_each_kind_of_result(manager: McpManager, box_dir: Path) -> None:
    manager.tools(["box"])
    wrote = manager.call("mcp__box__write_note", {"name": "a", "text": "remember the milk"})
    assert not wrote.is_error and (box_dir / "note-a").read_text() == "remember the milk"
    read = manager.call("mcp__box__read_note", {"name": "a"})
    assert read.blocks() == [{"type": "text", "text": "remember the milk"}]  # {"result": ...} not repeated

    png = manager.call("mcp__box__picture", {"kind": "png"})
    (block,) = [b for b in png.blocks() if b["type"] == "image"]
    assert block["source"]["media_type"] == "image/png"
    lying = manager.call("mcp__box__picture", {"kind": "lying"})
    assert [i.media_type for i in lying.images] == ["image/jpeg"]  # by its bytes, not by what it claimed
    broken = manager.call("mcp__box__picture", {"kind": "broken"})
    assert not broken.images and "not a readable JPEG, PNG, GIF or WebP image" in broken.text
    wide = manager.call("mcp__box__picture", {"kind": "wide"})
    (shrunk,) = wide.images  # 9000 px wide: over the API's 8000, so downscaled as a user's photo is
    with PILImage.open(io.BytesIO(shrunk.data)) as img:
        assert max(img.size) == 1568

    rich = manager.call("mcp__box__rich", {})
    for part in ("plain text", "[resource file:///notes/a.txt]\nresource text", "application/zip), 10 bytes",
                 "[resource link b.md (file:///docs/b.md, text/markdown)]", "[audio (audio/wav)",
                 'structured content: {"answer": 42}'):
        assert part in rich.text
    failed = manager.call("mcp__box__fail", {})
    assert failed.is_error and failed.blocks() == [{"type": "text", "text": "the thing is broken"}]

    big = manager.call("mcp__box__big", {"size": 100_000})
    assert len(big.text) < 17_000 and "bytes of output omitted" in big.text
    assert big.text.startswith("abcdef")


def test_a_call_past_its_time_limit_is_cancelled_at_the_server(manager: McpManager, box_dir: Path) -> None:
    manager.tools(["box"])
    outcome = manager.call("mcp__box__slow", {}, timeout=1.0)
    assert outcome.is_error and "timed out after 1 s" in outcome.text
    wait_until(lambda: (box_dir / "slow-cancelled").exists(), what="the server saw notifications/cancelled")
    assert manager.call("mcp__box__read_note", {"name": "x"}).text == "no note x"
    assert len(starts(box_dir)) == 1  # slow is not dead


def test_stop_cancels_a_running_call_and_returns_at_once(manager: McpManager, box_dir: Path) -> None:
    manager.tools(["box"])
    cancel = CancelToken()
    stopped_at: list[float] = []

    def stop_when_started() -> None:
        wait_until(lambda: (box_dir / "slow-started").exists(), what="the slow tool started")
        stopped_at.append(time.monotonic())
        cancel.cancel("stopped")

    threading.Thread(target=stop_when_started, daemon=True).start()
    outcome = manager.call("mcp__box__slow", {}, cancel=cancel)
    returned = time.monotonic() - stopped_at[0]
    assert outcome.is_error and outcome.text.startswith("cancelled: the user stopped this turn while")
    assert returned < 2.0, returned
    wait_until(lambda: (box_dir / "slow-cancelled").exists(), what="the server saw notifications/cancelled")
    assert not (box_dir / "slow-finished").exists()
    already = CancelToken()
    already.cancel()
    assert manager.call("mcp__box__slow", {}, cancel=already).text.startswith("cancelled: the user stopped this "
                                                                             "turn before the tool ran")


def test_a_crash_mid_call_is_an_error_and_the_next_call_starts_it_again(box_dir: Path) -> None:
    clock = Clock()
    manager = make_manager(box_dir, clock=clock, backoff=(0.0, 30.0))
    try:
        manager.tools(["box"])
        first = starts(box_dir)
        crashed = manager.call("mcp__box__crash", {})
        assert crashed.is_error
        assert "stopped during the call (its last words: toolbox: crashing on purpose)" in crashed.text
        (status,) = manager.status()
        assert status.state == "failed" and status.restarts == 1 and status.tools  # still offered meanwhile
        wait_until(lambda: not alive(first[0]), what="the crashed process gone")

        again = manager.call("mcp__box__read_note", {"name": "x"})
        assert again.text == "no note x" and len(starts(box_dir)) == 2
        # Two failures in a row (no call completed between): the next start waits out the backoff.
        manager.call("mcp__box__crash", {})
        manager.call("mcp__box__crash", {})
        assert len(starts(box_dir)) == 3
        refused = manager.call("mcp__box__read_note", {"name": "x"})
        assert refused.is_error and "is down" in refused.text and "the next try is in 30 s" in refused.text
        assert manager.status()[0].retry_in_s == pytest.approx(30, abs=2)
        assert len(manager.tools(["box"])) == TOOLBOX_TOOLS and len(starts(box_dir)) == 3  # the list stays, no start
        clock.offset += 31
        assert manager.call("mcp__box__read_note", {"name": "x"}).text == "no note x"
        assert len(starts(box_dir)) == 4
    finally:
        manager.close()


def test_a_changed_tool_list_is_read_again(manager: McpManager) -> None:
    manager.tools(["box"])
    assert manager.call("mcp__box__add_tool", {"name": "newcomer"}).text == "added newcomer"
    wait_until(lambda: manager.tool("mcp__box__newcomer"), what="the refreshed tool list")
    assert "mcp__box__newcomer" in [t.name for t in manager.tools(["box"])]
    assert manager.call("mcp__box__newcomer", {}).text == "I am newcomer"


def test_one_process_serves_every_chat(manager: McpManager, box_dir: Path) -> None:
    barrier = threading.Barrier(4)
    found: list[int] = []

    def chat() -> None:
        barrier.wait()
        found.append(len(manager.tools(["box"])))

    threads = [threading.Thread(target=chat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert found == [TOOLBOX_TOOLS] * 4 and len(starts(box_dir)) == 1


def test_close_stops_the_server(box_dir: Path) -> None:
    manager = make_manager(box_dir)
    manager.tools(["box"])
    (pid,) = starts(box_dir)
    manager.close()
    wait_until(lambda: not alive(pid), what="the server process gone")
    assert manager.call("mcp__box__read_note", {"name": "x"}).is_error


def test_a_server_that_cannot_start_says_why(box_dir: Path) -> None:
    manager = make_manager(box_dir, command=["/nonexistent/mcp-server"])
    try:
        assert manager.tools(["box"]) == ()
        (status,) = manager.status()
        assert status.state == "failed" and "/nonexistent/mcp-server was not found" in status.detail
        assert manager.call("mcp__box__read_note", {}).is_error
    finally:
        manager.close()
    exits = [sys.executable, "-c", "import sys; print('boom: no config file', file=sys.stderr); sys.exit(3)"]
    manager = make_manager(box_dir, command=exits, backoff=(0.0, 60.0))
    try:
        assert manager.tools(["box"]) == ()
        assert manager.status()[0].detail == "exited (its last words: boom: no config file)"
        assert manager.tools(["box"]) == ()  # tried again at once (the first step of the backoff is 0 s)...
        assert manager.status()[0].retry_in_s == pytest.approx(60, abs=2)  # ...then it waits
    finally:
        manager.close()


def test_credentials_reach_no_result_status_log_or_repr(box_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-vigils-own-key")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:vigils-own-bot-token")
    manager = make_manager(box_dir)
    try:
        with structlog.testing.capture_logs() as logs:
            manager.tools(["box"])
            leaked = manager.call("mcp__box__leak", {})
            environment = manager.call("mcp__box__environment", {}).text
            crashed = manager.call("mcp__box__crash", {})
            statuses = manager.status()
        assert "the secret is [redacted]" in leaked.text
        assert "\"MCP_TEST_SECRET\": \"[redacted]\"" in environment  # the server has its own credential...
        assert "ANTHROPIC_API_KEY" not in environment and "TELEGRAM_BOT_TOKEN" not in environment  # ...not vigil's
        assert any("my secret is [redacted]" in str(entry) for entry in logs)
        shown = [leaked.text, crashed.text, repr(statuses), repr(manager.config), str(logs),
                 *(s.line() for s in statuses)]
        assert not [text for text in shown if SECRET in text]
    finally:
        manager.close()
