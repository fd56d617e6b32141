"""The MCP config file (vigil/mcp/config.py), tool names (vigil/mcp/names.py) and the MCP and skills
settings (vigil/config/settings.py): strict, one sentence per problem, credentials never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.config.settings import SettingsError, load_settings
from vigil.mcp.config import RemoteServer, StdioServer, effective_servers, load_config, parse_config
from vigil.mcp.names import API_TOOL_NAME, exposed_names

GOOD = {"mcpServers": {
    "notes": {"command": "uvx", "args": ["notes-mcp", "--token", "argv-secret-123"],
              "env": {"NOTES_TOKEN": "env-secret-456"}, "cwd": "work"},
    "github": {"type": "http", "url": "https://user:pw-secret-789@api.example.com/mcp?key=query-secret-000",
               "headers": {"Authorization": "Bearer header-secret-abc"}},
    "legacy": {"type": "sse", "url": "http://127.0.0.1:9000/sse"},
    "cursorish": {"url": "https://mcp.example.org/"},
}}
SECRETS = ("argv-secret-123", "env-secret-456", "pw-secret-789", "query-secret-000", "header-secret-abc")


def test_the_standard_shape_loads(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({**GOOD, "globalShortcut": "Ctrl+Space"}))
    config = load_config(path, defaults=("notes",))
    assert config.problems == ()
    notes, github, legacy, cursorish = config.servers.values()
    assert isinstance(notes, StdioServer) and notes.cwd == str(tmp_path / "work")
    assert notes.args == ("notes-mcp", "--token", "argv-secret-123") and notes.env == {"NOTES_TOKEN": "env-secret-456"}
    assert isinstance(github, RemoteServer) and github.transport == "http"
    assert github.shown_url == "https://api.example.com/mcp?…"
    assert isinstance(legacy, RemoteServer) and legacy.transport == "sse"
    assert isinstance(cursorish, RemoteServer) and cursorish.transport == "http"
    shown = repr(config) + "".join(s.describe() for s in config.servers.values())
    assert not [s for s in SECRETS if s in shown]
    assert {"env-secret-456", "pw-secret-789", "query-secret-000", "header-secret-abc"} <= set(config.secrets())


@pytest.mark.parametrize(("entry", "problem"), [
    ("not an object", "expected an object with command"),
    ({}, "needs command (a local server) or url (a remote one)"),
    ({"command": "x", "url": "http://h/"}, "has both command and url"),
    ({"command": ""}, "command must be a non-empty string"),
    ({"command": "x", "args": "-v"}, "args must be a list of strings"),
    ({"command": "x", "env": {"TOKEN": 5}}, "env.TOKEN must be a string"),
    ({"command": "x", "env": {"BAD NAME": "v"}}, "env: 'BAD NAME' is not an environment variable name"),
    ({"command": "x", "autoApprove": []}, "unknown field 'autoApprove'"),
    ({"command": "x", "type": "http"}, 'type must be "stdio"'),
    ({"type": "websocket", "url": "ws://h/"}, 'type must be "http" (streamable HTTP) or "sse"'),
    ({"type": "http", "url": "ftp://h/"}, "url must be an http:// or https:// URL with a host"),
    ({"type": "http", "url": "http://h/", "headers": {"X": "a\r\nInjected: secret-value-1"}},
     "headers.X holds a control character"),
    ({"type": "http", "url": "http://h/", "headers": {"Bad Header": "v"}}, "is not an HTTP header name"),
])
def test_a_bad_entry_is_one_sentence_and_the_rest_load(entry: object, problem: str) -> None:
    config = parse_config({"mcpServers": {"bad": entry, "good": {"command": "ok"}}})
    assert list(config.servers) == ["good"]
    (sentence,) = config.problems
    assert sentence.startswith("MCP server 'bad': ") and problem in sentence
    assert "secret-value-1" not in sentence


@pytest.mark.parametrize(("name", "problem"), [
    ("has space", "may hold only letters, digits"), ("a__b", "may not hold '__'"), ("x" * 33, "longer than 32")])
def test_server_names_must_be_typeable_and_unambiguous(name: str, problem: str) -> None:
    (sentence,) = parse_config({"mcpServers": {name: {"command": "x"}}}).problems
    assert problem in sentence


def test_a_bad_file_leaves_no_server_and_says_where(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert load_config(missing).problems == (f"VIGIL_MCP_CONFIG={missing}: no such file",)
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {"a": {"command": "x", "env": {"K": "secret-in-broken-file"}}')
    (problem,) = load_config(broken).problems
    assert "not valid JSON" in problem and "line 1" in problem and "secret-in-broken-file" not in problem
    broken.write_text('{"servers": {}}')
    assert "expected an object with \"mcpServers\"" in load_config(broken).problems[0]
    assert load_config(None, defaults=("x",)).problems == (
        "VIGIL_MCP_DEFAULT names 'x', which VIGIL_MCP_CONFIG does not define",)


def test_a_chats_servers_are_its_own_plus_the_defaults_it_kept() -> None:
    assert effective_servers(on=["b", "z"], off=["a"], defaults=["a", "c"], configured=["a", "b", "c"]) == ("b", "c")


def test_tool_names_fit_the_api_and_never_depend_on_order() -> None:
    tools = ["read", "get.item", "get_item", "x" * 100, "a/b", "émoji"]
    names = exposed_names("srv", tools)
    assert names["read"] == "mcp__srv__read"
    assert names == exposed_names("srv", list(reversed(tools)))
    assert len(set(names.values())) == len(tools)
    assert all(API_TOOL_NAME.match(n) for n in names.values())
    # "get_item" fits as it is, and nothing else takes its name: it keeps it.
    assert names["get_item"] == "mcp__srv__get_item" and names["get.item"].startswith("mcp__srv__get_item_")


@given(st.lists(st.text(min_size=1, max_size=130), min_size=1, max_size=12, unique=True))
def test_any_tool_names_map_to_distinct_valid_stable_names(tools: list[str]) -> None:
    names = exposed_names("s-1.x", tools)
    assert all(API_TOOL_NAME.match(n) for n in names.values())
    assert len(set(names.values())) == len(tools)
    assert names == exposed_names("s-1.x", list(reversed(tools)))
    # A tool keeps the name it has alone whatever else the server lists, unless another tool would take it.
    alone = {tool: exposed_names("s-1.x", [tool])[tool] for tool in tools}
    for tool in tools:
        if list(alone.values()).count(alone[tool]) == 1:
            assert names[tool] == alone[tool]


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "VIGIL_DATA_DIR": str(tmp_path / "data"), **extra}


def test_mcp_and_skills_settings(tmp_path: Path) -> None:
    settings = load_settings(env(tmp_path))
    assert settings.mcp_config is None and settings.mcp_default == () and settings.mcp_timeout_s == 60
    assert settings.mcp_max_eager_tools == 20
    assert settings.skills_dir == tmp_path / "home" / ".config" / "vigil" / "skills"
    (tmp_path / "etc").mkdir()
    toml = tmp_path / "etc" / "vigil.toml"
    toml.write_text('mcp_timeout = "2m"\n')
    settings = load_settings(env(tmp_path, VIGIL_MCP_CONFIG="~/mcp.json", VIGIL_MCP_DEFAULT="notes, github,notes",
                                 VIGIL_MCP_MAX_EAGER_TOOLS="0", VIGIL_CONFIG=str(toml)))
    assert settings.mcp_config == tmp_path / "home" / "mcp.json"
    assert settings.mcp_default == ("notes", "github")
    assert settings.mcp_timeout_s == 120 and settings.mcp_max_eager_tools == 0
    assert settings.skills_dir == tmp_path / "etc" / "skills"  # beside the config file
    assert load_settings(env(tmp_path, CONFIGURATION_DIRECTORY="/etc/vigil")).skills_dir == Path("/etc/vigil/skills")
    (tmp_path / "mine").mkdir()
    assert load_settings(env(tmp_path, VIGIL_SKILLS_DIR=str(tmp_path / "mine"))).skills_dir == tmp_path / "mine"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("VIGIL_MCP_DEFAULT", "notes,bad name", "VIGIL_MCP_DEFAULT='notes,bad name': the server name 'bad name' may hold"),
    ("VIGIL_MCP_TIMEOUT", "soon", "VIGIL_MCP_TIMEOUT='soon'"),
    ("VIGIL_MCP_MAX_EAGER_TOOLS", "-1", "VIGIL_MCP_MAX_EAGER_TOOLS='-1': must not be negative"),
    ("VIGIL_SKILLS_DIR", "/nonexistent/skills", "VIGIL_SKILLS_DIR=/nonexistent/skills: not an existing directory"),
])
def test_bad_mcp_and_skills_settings_are_refused(tmp_path: Path, variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env(tmp_path, **{variable: value}))


def test_skills_may_not_hold_the_store(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(SettingsError, match="holds or lies in VIGIL_DATA_DIR"):
        load_settings(env(tmp_path, VIGIL_SKILLS_DIR=str(tmp_path)))
    # The default one may: `vigil bench` runs with HOME in its data directory.
    home_in_data = {"HOME": str(tmp_path / "data"), "VIGIL_DATA_DIR": str(tmp_path / "data")}
    assert load_settings(home_in_data).skills_dir == tmp_path / "data" / ".config" / "vigil" / "skills"
