"""The MCP manager against remote servers (tests/mcp_servers/remote.py in a process of its own, on a
loopback socket): streamable HTTP and HTTP+SSE, each behind a bearer token, reached with the config's
headers; a wrong token fails with a sentence that holds no credential; a server that goes away is
reconnected when it is back."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mcp_servers import script
from tests.test_mcp_manager import wait_until
from vigil.mcp.config import parse_config
from vigil.mcp.manager import McpManager

TOKEN = "remote-bearer-token-0123456789"


@dataclass
class Remote:
    url: str
    dir: Path
    process: subprocess.Popen[bytes]
    sock: socket.socket

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.sock.close()  # else the kernel still takes connections for it and they hang


def serve(tmp_path: Path, transport: str, port: int = 0) -> Remote:
    sock = socket.create_server(("127.0.0.1", port))
    port = sock.getsockname()[1]
    env = {**os.environ, "MCP_TEST_TOKEN": TOKEN, "MCP_TEST_DIR": str(tmp_path)}
    process = subprocess.Popen([*script("remote"), str(sock.fileno()), transport], env=env,
                               pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL)
    path = "/sse" if transport == "sse" else "/mcp"
    return Remote(f"http://127.0.0.1:{port}{path}", tmp_path, process, sock)


@pytest.fixture(params=["http", "sse"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    server = serve(tmp_path, request.param)
    yield server
    server.stop()


def manager_for(remote: Remote, token: str = TOKEN, transport: str | None = None) -> McpManager:
    kind = transport or ("sse" if remote.url.endswith("/sse") else "http")
    config = parse_config({"mcpServers": {"far": {"type": kind, "url": remote.url + "?key=query-secret-value",
                                                  "headers": {"Authorization": f"Bearer {token}"}}}})
    return McpManager(config, timeout_s=20)


def test_a_remote_server_is_reached_with_the_configured_bearer_header(remote: Remote) -> None:
    manager = manager_for(remote)
    try:
        tools = manager.tools(["far"])
        assert [(t.name, t.read_only) for t in tools] == [("mcp__far__echo", True), ("mcp__far__remember", False)]
        assert manager.call("mcp__far__echo", {"text": "hi"}).text == "remote echo: hi"
        assert manager.call("mcp__far__remember", {"value": "7"}).text == "remembered 7"
        assert (remote.dir / "remembered").read_text() == "7"
        (status,) = manager.status()
        assert status.state == "running"
        assert status.describe == f"{'sse' if remote.url.endswith('/sse') else 'http'}: {remote.url}?…"
        assert not (remote.dir / "refused").exists()
    finally:
        manager.close()


def test_a_wrong_token_fails_and_says_so_without_the_token(remote: Remote) -> None:
    manager = manager_for(remote, token="not-the-right-token-42")
    try:
        assert manager.tools(["far"]) == ()
        (status,) = manager.status()
        assert status.state == "failed" and status.detail
        assert (remote.dir / "refused").exists()
        for shown in (status.detail, status.line(), repr(status), repr(manager.config)):
            assert "not-the-right-token-42" not in shown and "query-secret-value" not in shown
    finally:
        manager.close()


def test_a_remote_server_that_went_away_is_reconnected(tmp_path: Path) -> None:
    first = serve(tmp_path, "http")
    manager = manager_for(first)
    try:
        assert manager.tools(["far"])
        assert manager.call("mcp__far__echo", {"text": "a"}).text == "remote echo: a"
        first.stop()
        down = manager.call("mcp__far__echo", {"text": "b"})
        assert down.is_error and "'far'" in down.text
        wait_until(lambda: manager.status()[0].state == "failed", what="the server marked down")
        # The same port, as a restarted service would have.
        second = serve(tmp_path, "http", int(first.url.split(":")[2].split("/")[0]))
        try:
            assert manager.call("mcp__far__echo", {"text": "c"}).text == "remote echo: c"
            assert manager.status()[0].state == "running"
        finally:
            second.stop()
    finally:
        manager.close()
