"""The request check, as strict as the real API: the body's fields, tools, system, tool_choice, model.

`Validator` raises the first problem as a `Refusal`, in the order the API reports them; the messages
themselves (roles, blocks, tool_use/tool_result pairing) are `conversation`'s. `validate_request`
runs the same check without a server, for tests of how vigil builds requests.
"""

from __future__ import annotations

import re
from typing import Any

from tests.standins.messages_api.checks import BLOCK_KEYS, check_cache_control, check_extra_keys
from tests.standins.messages_api.conversation import check_messages
from tests.standins.messages_api.errors import Refusal, bad_tag, invalid
from tests.standins.messages_api.server_tools import WEB_TOOL_KEYS, check_server_blocks, check_web_tool
from tests.standins.messages_api.thinking import check_thinking
from tests.standins.messages_api.tool_search import SEARCH_TOOL_KEYS, check_deferral, check_references

# The fields anthropic 2.12's messages.create()/stream() put in the body (resources/messages/messages.py).
# user_profile_id and workspace_id travel as headers. There is no temperature/top_p/top_k in this SDK.
_TOP_LEVEL_FIELDS = frozenset(
    {
        "max_tokens",
        "messages",
        "model",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "metadata",
        "output_config",
        "service_tier",
        "speed",
        "stop_sequences",
        "stream",
        "system",
        "thinking",
        "tool_choice",
        "tools",
    }
)
# client.beta.messages adds these; the beta endpoint is the same path, told apart by anthropic-beta.
_BETA_TOP_LEVEL_FIELDS = frozenset(
    {
        "billing_policy",
        "compaction",
        "context_management",
        "fallback_credit_token",
        "fallbacks",
        "mcp_servers",
        "thread",
    }
)
# Fields the SDK types as Optional: null is accepted for these and refused for the rest.
_NULLABLE_FIELDS = frozenset({"cache_control", "container", "diagnostics", "inference_geo", "speed"})

# Built-in (typed) tools and the name each must carry.
_BUILTIN_TOOLS: dict[str, str | None] = {
    "bash_20250124": "bash",
    "text_editor_20250124": "str_replace_editor",
    "text_editor_20250429": "str_replace_based_edit_tool",
    "text_editor_20250728": "str_replace_based_edit_tool",
    "memory_20250818": "memory",
    "web_search_20250305": "web_search",
    "web_search_20260209": "web_search",
    "web_search_20260318": "web_search",
    "web_fetch_20250910": "web_fetch",
    "web_fetch_20260209": "web_fetch",
    "web_fetch_20260309": "web_fetch",
    "web_fetch_20260318": "web_fetch",
    "code_execution_20250522": "code_execution",
    "code_execution_20250825": "code_execution",
    "code_execution_20260120": "code_execution",
    "code_execution_20260521": "code_execution",
    "tool_search_tool_bm25_20251119": "tool_search_tool_bm25",
    "tool_search_tool_regex_20251119": "tool_search_tool_regex",
    "browser_toolset_20260801": None,
    "computer_toolset_20260801": None,
}
_COMMON_TOOL_KEYS = frozenset(
    {"name", "type", "cache_control", "allowed_callers", "defer_loading", "input_examples", "strict"}
)
_CUSTOM_TOOL_KEYS = _COMMON_TOOL_KEYS | {"description", "input_schema", "eager_input_streaming"}
# The built-ins vigil uses get their keys checked exactly (the web tools in `server_tools`); other
# built-ins are accepted as sent.
_STRICT_BUILTIN_KEYS: dict[str, frozenset[str]] = {
    "bash_20250124": _COMMON_TOOL_KEYS,
    "text_editor_20250728": _COMMON_TOOL_KEYS | {"max_characters"},
    "tool_search_tool_bm25_20251119": SEARCH_TOOL_KEYS,
    "tool_search_tool_regex_20251119": SEARCH_TOOL_KEYS,
}
# The API's documented pattern for a tool's name (the SDK types it as any string).
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_CACHE_BREAKPOINTS = 4


class Validator:
    """Checks one request body; raises :class:`Refusal` on the first problem, like the API."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str], served: dict[str, str] | None = None) -> None:
        self.body = body
        self.headers = headers
        self.cache_breakpoints = 0
        self.served = served  # the server tool blocks the stand-in served (None: only their pairing is checked)

    def run(self) -> None:
        body, headers = self.body, self.headers
        if not headers.get("anthropic-version"):
            raise invalid("anthropic-version: header is required")
        allowed = _TOP_LEVEL_FIELDS | (_BETA_TOP_LEVEL_FIELDS if headers.get("anthropic-beta") else frozenset())
        for key in body:
            if key not in allowed:
                raise invalid(f"{key}: Extra inputs are not permitted")
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                raise invalid(f"{key}: Field required")
        for key, value in body.items():
            if value is None and key not in _NULLABLE_FIELDS:
                raise invalid(f"{key}: Input should not be null")
        model = body["model"]
        if not isinstance(model, str):
            raise invalid("model: Input should be a valid string")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise invalid("max_tokens: Input should be a valid integer")
        # The SDK documents max_tokens=0 as valid (it pre-warms the prompt cache), so only < 0 is refused.
        if max_tokens < 0:
            raise invalid("max_tokens: Input should be greater than or equal to 0")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise invalid("stream: Input should be a valid boolean")
        self._check_optional_fields()
        tool_names = self._check_tools()
        self._check_system()
        self.cache_breakpoints += check_messages(body["messages"], bool(tool_names))
        check_server_blocks(body["messages"], self.served)
        check_references(body["messages"], body)
        check_thinking(body, self.served)
        if body.get("cache_control") is not None:
            check_cache_control(body["cache_control"], "cache_control")
            # Top-level cache_control marks the last cacheable block: it takes a breakpoint slot.
            self.cache_breakpoints += 1
        if self.cache_breakpoints > _MAX_CACHE_BREAKPOINTS:
            raise invalid(
                f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {self.cache_breakpoints}."
            )
        self._check_tool_choice(tool_names)
        # The model is looked up last: a malformed body is a 400 whatever the model.
        if not model.startswith("claude-"):
            raise Refusal(404, "not_found_error", f"model: {model}")

    def _check_optional_fields(self) -> None:
        body = self.body
        if "metadata" in body:
            metadata = body["metadata"]
            if not isinstance(metadata, dict):
                raise invalid("metadata: Input should be a valid dictionary")
            check_extra_keys(metadata, frozenset({"user_id"}), "metadata")
            if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
                raise invalid("metadata.user_id: Input should be a valid string")
        if "stop_sequences" in body:
            seqs = body["stop_sequences"]
            if not isinstance(seqs, list) or not all(isinstance(s, str) for s in seqs):
                raise invalid("stop_sequences: Input should be a valid list of strings")
            if any(not s.strip() for s in seqs):
                raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
        if "service_tier" in body and body["service_tier"] not in ("auto", "standard_only"):
            raise invalid("service_tier: Input should be 'auto' or 'standard_only'")
        if body.get("speed") is not None and body["speed"] not in ("standard", "fast"):
            raise invalid("speed: Input should be 'standard' or 'fast'")
        for key in ("output_config", "container", "diagnostics"):
            if body.get(key) is not None and not isinstance(body[key], dict | str):
                raise invalid(f"{key}: Input should be a valid dictionary")
        if "thinking" in body:
            thinking = body["thinking"]
            if not isinstance(thinking, dict) or thinking.get("type") not in (
                "enabled",
                "disabled",
                "adaptive",
            ):
                raise invalid("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
            if thinking["type"] == "enabled":
                budget = thinking.get("budget_tokens")
                if not isinstance(budget, int) or budget < 1024:
                    raise invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
                if budget >= body["max_tokens"]:
                    raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`")

    def _check_tools(self) -> set[str]:
        tools = self.body.get("tools")
        if tools is None:
            return set()
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        names: set[str] = set()
        for i, tool in enumerate(tools):
            path = f"tools.{i}"
            if not isinstance(tool, dict):
                raise invalid(f"{path}: Input should be a valid dictionary")
            tool_type = tool.get("type")
            name = tool.get("name")
            if tool_type in (None, "custom"):
                check_extra_keys(tool, _CUSTOM_TOOL_KEYS, f"{path}.custom")
                if not isinstance(name, str) or not _TOOL_NAME.match(name):
                    raise invalid(f"{path}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
                schema = tool.get("input_schema")
                if schema is None:
                    raise invalid(f"{path}.custom.input_schema: Field required")
                if not isinstance(schema, dict) or schema.get("type") != "object":
                    raise invalid(f"{path}.custom.input_schema.type: Input should be 'object'")
                if "description" in tool and not isinstance(tool["description"], str):
                    raise invalid(f"{path}.custom.description: Input should be a valid string")
            elif isinstance(tool_type, str) and tool_type in _BUILTIN_TOOLS:
                if tool_type in _STRICT_BUILTIN_KEYS:
                    check_extra_keys(tool, _STRICT_BUILTIN_KEYS[tool_type], f"{path}.{tool_type}")
                if tool_type in WEB_TOOL_KEYS:
                    check_web_tool(tool, path)
                expected = _BUILTIN_TOOLS[tool_type]
                if expected is not None and name != expected:
                    raise invalid(f"{path}.{tool_type}.name: Input should be '{expected}'")
                if not isinstance(name, str):
                    raise invalid(f"{path}.{tool_type}.name: Field required")
                if "max_characters" in tool and tool["max_characters"] is not None:
                    mc = tool["max_characters"]
                    if not isinstance(mc, int) or isinstance(mc, bool) or mc < 1:
                        raise invalid(f"{path}.{tool_type}.max_characters: Input should be greater than or equal to 1")
            else:
                raise bad_tag(path, tool_type)
            if tool.get("cache_control") is not None:
                check_cache_control(tool["cache_control"], f"{path}.cache_control")
                self.cache_breakpoints += 1
            if name in names:
                raise invalid("tools: Tool names must be unique.")
            names.add(name)
        check_deferral(tools)
        return names

    def _check_system(self) -> None:
        if "system" not in self.body:
            return
        system = self.body["system"]
        if isinstance(system, str):
            return
        if not isinstance(system, list):
            raise invalid("system: Input should be a valid string or a list of text blocks")
        for i, block in enumerate(system):
            path = f"system.{i}"
            if not isinstance(block, dict) or block.get("type") != "text":
                raise invalid(f"{path}.type: Input should be 'text'")
            check_extra_keys(block, BLOCK_KEYS["text"], path)
            text = block.get("text")
            if not isinstance(text, str) or not text.strip():
                raise invalid("system: text content blocks must contain non-whitespace text")
            if block.get("cache_control") is not None:
                check_cache_control(block["cache_control"], f"{path}.cache_control")
                self.cache_breakpoints += 1


    def _check_tool_choice(self, tool_names: set[str]) -> None:
        if "tool_choice" not in self.body:
            return
        choice = self.body["tool_choice"]
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if choice["type"] == "tool" else set())
        check_extra_keys(choice, frozenset(allowed), f"tool_choice.{choice['type']}")
        if choice["type"] in ("any", "tool") and not tool_names:
            raise invalid("tool_choice: tool_choice may only be specified while providing tools.")
        if choice["type"] == "tool" and choice.get("name") not in tool_names:
            raise invalid(f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in provided tools")


def validate_request(body: dict[str, Any]) -> str | None:
    """Check a request body against the stand-in's rules without a server: the refusal message, or None.

    The ``anthropic-version`` header the SDK always sends is supplied here, so only the body is judged.
    """
    try:
        Validator(body, {"anthropic-version": "2023-06-01"}).run()
    except Refusal as refusal:
        return refusal.message
    return None
