"""systemd integration: the unit file, and sd_notify (READY, WATCHDOG, STOPPING).

The notify protocol is one datagram on the socket named by NOTIFY_SOCKET; the
maintained bindings (systemd-python) need libsystemd headers to build, so a
dozen lines here beat a compiler dependency on every install.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys

from vigil.logs import get_logger


class Notifier:
    """Sends sd_notify messages; a no-op when not run by systemd (no NOTIFY_SOCKET)."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._log = get_logger(__name__)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> bool:
        if not self._address:
            return False
        address = self._address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(state.encode())
            return True
        except OSError as exc:
            self._log.warning("systemd.notify_failed", state=state.split("\n")[0], error=str(exc))
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


def _vigil_executable() -> str:
    """The `vigil` installed beside the interpreter running now (the one the operator just used)."""
    beside = os.path.join(os.path.dirname(sys.executable), "vigil")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("vigil")
    return os.path.abspath(found) if found else f"{sys.executable} -m vigil"


def unit_file(user: str = "vigil", env_file: str = "/etc/vigil/vigil.env",
              workdir_root: str = "/srv/vigil") -> str:
    """A ready unit for `vigil run` (`systemd-analyze verify` accepts it)."""
    return f"""[Unit]
Description=vigil: Claude in Telegram, one session per chat
Documentation=https://github.com/vigil/vigil
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={_vigil_executable()} run
Restart=on-failure
RestartSec=5s
# Exit 3: the store cannot be opened until someone acts (damaged, not the service user's, read-only).
RestartPreventExitStatus=3
WatchdogSec=60s
TimeoutStopSec=20s
KillMode=mixed
User={user}
Group={user}
# Secrets (TELEGRAM_BOT_TOKEN, ANTHROPIC_API_KEY) and other settings, one NAME=value per line.
# Polling needs nothing more. Webhook mode: VIGIL_WEBHOOK_URL=https://bot.example.org/telegram/<random>
# there, and a reverse proxy (nginx, Caddy) forwarding that path to VIGIL_WEBHOOK_LISTEN
# (127.0.0.1:8443 unless set); the secret token is generated into the state directory if not given.
EnvironmentFile={env_file}
StateDirectory=vigil
StateDirectoryMode=0700
# Agent Skills, one folder each: root's, read-only to the service (and to Claude), away from /etc/vigil
# (the secrets, closed to the service user). An MCP config (VIGIL_MCP_CONFIG) holds credentials too: keep
# it root:vigil 0640, e.g. /etc/vigil-mcp.json. MCP stdio servers run as this user, under this unit's rules.
ConfigurationDirectory=vigil-skills
Environment=VIGIL_SKILLS_DIR=/etc/vigil-skills
Environment=VIGIL_WORKDIR_ROOT={workdir_root}
Environment=VIGIL_LOG_FORMAT=json
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={workdir_root}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictRealtime=yes
# The bash sandbox (bwrap) builds user, PID, IPC, UTS, mount and (VIGIL_BASH_NETWORK=off) network
# namespaces; cgroup and time namespaces stay forbidden. For the same reason there is no
# ProtectKernelTunables=, ProtectProc=, ProcSubset= or PrivateUsers= here: each hides part of /proc,
# and the kernel then refuses the fresh /proc a sandbox in a user namespace mounts.
RestrictNamespaces=user pid ipc uts mnt net
# AF_NETLINK: bwrap brings up the loopback interface of an unshared network namespace over rtnetlink.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0077

[Install]
WantedBy=multi-user.target
"""
