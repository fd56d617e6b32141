"""What reaches beyond a chat's directory and the web, made once per process: MCP servers and Agent Skills.

The MCP SDK takes most of a second to import, so a vigil whose VIGIL_MCP_CONFIG names no server never
loads it (`mcp` is then None). The servers' credentials (env values, headers, URL passwords and query
strings) are added to the log redactor before anything could print them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vigil.logs import redact_also
from vigil.mcp.config import McpConfig, load_config
from vigil.tools.skills import Skills

if TYPE_CHECKING:
    from vigil.mcp.manager import McpManager

__all__ = ["ExtensionSettings", "extensions", "log_extensions"]


class ExtensionSettings(Protocol):
    """What of the settings (`vigil.config.settings.Settings`) the extensions are made from: named here,
    so that the settings, which read `VIGIL_MCP_DEFAULT` with `vigil.mcp.names`, stay beneath this package."""

    @property
    def mcp_config(self) -> Path | None:
        """VIGIL_MCP_CONFIG: the servers' JSON file, or None for none."""

    @property
    def mcp_default(self) -> tuple[str, ...]:
        """VIGIL_MCP_DEFAULT: the servers on in every chat."""

    @property
    def mcp_timeout_s(self) -> float:
        """VIGIL_MCP_TIMEOUT: how long one tool call may take."""

    @property
    def skills_dir(self) -> Path:
        """Where the Agent Skills are read from."""

    def secrets(self) -> tuple[str, ...]:
        """vigil's own secrets, which a server's output must never echo."""


def extensions(settings: ExtensionSettings) -> tuple[McpConfig, McpManager | None, Skills]:
    """The MCP config as read (its problems included), its manager (None: no servers), the skills."""
    config = load_config(settings.mcp_config, settings.mcp_default)
    redact_also(config.secrets())
    manager = None
    if config.servers:
        from vigil.mcp.manager import McpManager

        manager = McpManager(config, timeout_s=settings.mcp_timeout_s, extra_secrets=settings.secrets())
    return config, manager, Skills(settings.skills_dir)


def log_extensions(log: Any, config: McpConfig, skills: Skills) -> None:
    """At start-up: what was left out of the config, the servers there are, and the skills (read now)."""
    for problem in config.problems:
        log.warning("mcp.config_problem", problem=problem)
    if config.servers:
        log.info("mcp.servers", servers={name: s.describe() for name, s in config.servers.items()})
    skills.current()  # read now: it logs what it loaded, and each folder it skipped and why
