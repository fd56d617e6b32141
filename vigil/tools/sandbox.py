"""The bubblewrap sandbox every bash command runs in, and the start-up probe that decides whether bash is offered.

Why a sandbox and not a scrubbed environment: a command that runs with the
service's rights reads `/proc/$PPID/environ` (the API key and the bot token),
the LMDB store and every other chat's files. Under `bwrap` a command gets:

- its own user, PID, IPC and UTS namespaces, no capabilities, and no way to
  make further user namespaces (`--disable-userns`); a fresh, read-only
  `/proc` that shows only the sandbox's processes (read-only because a
  command run by real root keeps uid 0, which may write global sysctls);
- the system read-only: `/usr` and the `/bin`, `/sbin`, `/lib*` links or
  directories, and a short list of `/etc` entries that programs need. `/etc`
  is not bound whole: it holds secrets (`/etc/vigil/*.env`, `/etc/shadow`,
  ssh host keys, `/etc/ssl/private`);
- one writable tree, the chat's workspace, bound at its own path so that
  `pwd` shows the chat's directory; a private `/tmp` and `/var/tmp`; the
  rest of the sandbox's root is read-only;
- none of the data directory, the service user's home, other chats'
  directories or the rest of the work root: they are not bound, and where
  one lies inside the workspace it is covered by an empty read-only tmpfs;
- an environment made from nothing (`--clearenv`): PATH, HOME, PWD, LANG, TERM;
- a process cap (RLIMIT_NPROC) that stops a fork bomb from exhausting the
  host's PIDs — the kernel does not apply it when vigil runs as real root;
- the network only when `VIGIL_BASH_NETWORK=on` (otherwise `--unshare-net`).

`detect` runs a trivial command through exactly this setup once; if bwrap is
missing or cannot build its namespaces, bash is not offered: there is no
unsandboxed fallback.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "MAX_PROCESSES",
    "SANDBOX_PATH",
    "Sandbox",
    "SandboxUnavailable",
    "WorkspaceRefused",
    "detect",
    "wrapper_argv",
]

# Tasks (processes and threads) one command may have at once: generous for `make -j` or a JVM,
# small enough that a fork bomb cannot take the host's PIDs from everyone else.
MAX_PROCESSES = 1024
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "vigil-sandbox"
PROBE_TIMEOUT_S = 15.0

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What shells, compilers, interpreters, TLS clients and resolvers read from /etc; nothing that holds
# credentials (no shadow, ssh, ssl/private, sudoers, *.env, pip.conf or npmrc, which may hold tokens).
_ETC = (
    "passwd", "group", "hosts", "host.conf", "resolv.conf", "nsswitch.conf", "gai.conf", "services",
    "protocols", "networks", "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
    "pki/tls/certs", "pki/ca-trust", "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "localtime", "timezone", "mime.types", "magic", "magic.mime", "os-release", "debian_version",
    "lsb-release", "inputrc", "terminfo", "locale.alias", "locale.conf", "shells", "mtab", "perl",
    "python3*", "java*",
)
# Symlinks that point into these stay symlinks inside (their targets are there, or deliberately absent).
_LINK_INSIDE = ("/usr/", "/proc/", "/etc/")

# Runs inside the sandbox as the first process after bwrap's init: caps processes, runs the command
# with the status fds closed, then gives background processes a moment (what they still write is kept),
# reports on the status fd whether any were left, and exits; bwrap's init then kills whatever remains.
# It pauses by a timed read of the report pipe's read end ($4), which nobody writes before it does,
# rather than by `sleep`: a fork bomb leaves no process to fork, and bash retries a failing fork for
# many seconds. `{var}` redirections put both fds where they cannot collide with each other.
_WRAPPER = r"""
ulimit -u "$3" 2>/dev/null || ulimit -u "$(ulimit -H -u)" 2>/dev/null
exec {report}>&"$2" {paused}<&"$4" && eval "exec $2>&- $4<&-"
bash --noprofile --norc -c "$1" {report}>&- {paused}<&-
status=$?
others() {
  local p line
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = 1 ] || [ "${p#/proc/}" = "$$" ] && continue
    read -r line < "$p/stat" 2>/dev/null || continue
    line=${line##*) }
    case ${line%% *} in Z|X) ;; *) return 0 ;; esac
  done
  return 1
}
for _ in 1 2 3 4 5 6 7 8 9 10; do others || break; read -r -t 0.05 -u "$paused" _; done
others && echo stragglers >&"$report"
exit "$status"
"""


class SandboxUnavailable(Exception):
    """bwrap is missing or cannot build the sandbox here; str() says why, in one line."""


class WorkspaceRefused(Exception):
    """A workspace the sandbox will not expose (the data directory, the home directory, `/`)."""


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _system_args() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _etc_args() -> list[str]:
    args: list[str] = []
    for pattern in _ETC:
        for path in sorted(glob.glob(os.path.join("/etc", pattern))):
            if os.path.islink(path):
                target = os.path.realpath(path)
                if any(_inside(target, base.rstrip("/")) for base in _LINK_INSIDE):
                    args += ["--symlink", os.readlink(path), path]
                    continue
                # e.g. resolv.conf -> /run/systemd/resolve/stub-resolv.conf: the file, not its directory.
                if os.path.isfile(target):
                    args += ["--ro-bind-try", target, path]
            elif os.path.exists(path):
                args += ["--ro-bind-try", path, path]
    return args


def _lang() -> str:
    lang = os.environ.get("LANG", "")
    return lang if lang and "/" not in lang else "C.UTF-8"


class Sandbox:
    """Builds the bwrap command line for one bash command; immutable after `detect` proved it works."""

    def __init__(self, bwrap: str, network: bool = True, data_dirs: Iterable[Path] = (), home: Path | None = None,
                 max_processes: int = MAX_PROCESSES, disable_userns: bool = True) -> None:
        self.bwrap = bwrap
        self.network = network
        self.max_processes = max_processes
        self._data_dirs = tuple(os.path.realpath(p) for p in data_dirs)
        self._home = os.path.realpath(home) if home is not None else None
        self._disable_userns = disable_userns
        # /etc and the system layout are read once: the sandbox is the same for every command.
        self._fixed = _system_args() + _etc_args()

    def describe(self) -> str:
        return f"bubblewrap ({self.bwrap}), network {'on' if self.network else 'off'}"

    def process_env(self) -> dict[str, str]:
        """The environment of the bwrap process itself. Inside, its init is PID 1 and
        `/proc/1/environ` is readable: so it gets nothing but a PATH."""
        return {"PATH": SANDBOX_PATH}

    def argv(self, workspace: Path, cwd: Path, command: str, status_fd: int, pause_fd: int,
             read_only: Sequence[tuple[str, str]] = ()) -> list[str]:
        """bwrap's argv for `command` run in `cwd`, with `workspace` (which holds `cwd`) writable.

        `status_fd` (inherited by bwrap) gets the in-sandbox supervisor's report; `pause_fd`, the read
        end of that pipe, lets it wait without forking. `read_only` are (directory, where it shows) pairs
        bound read-only (the Agent Skills' folders at `/skills/<name>`); one that is, holds or lies in the
        data directory, or holds the service user's home, is left out.
        """
        work = os.path.realpath(workspace)
        here = os.path.realpath(cwd)
        if not _inside(here, work):
            raise WorkspaceRefused(f"the working directory {here} is not inside the workspace {work}")
        if work == "/":
            raise WorkspaceRefused("bash does not run with the whole file system as its workspace")
        for data in self._data_dirs:
            if _inside(work, data):
                raise WorkspaceRefused(f"bash does not run in {work}: it lies in vigil's data directory")
        if work == self._home:
            raise WorkspaceRefused(f"bash does not run with the service user's home {work} as its workspace")
        # A work root chosen around them must not hand them over: cover each with an empty read-only dir.
        masks: list[str] = []
        for hidden in (*self._data_dirs, *([self._home] if self._home else [])):
            if _inside(hidden, work):
                masks += ["--tmpfs", hidden, "--remount-ro", hidden]
        shown: list[str] = []
        for source, where in read_only:
            real = os.path.realpath(source)
            if real == "/" or any(_inside(real, d) or _inside(d, real) for d in self._data_dirs) \
                    or (self._home is not None and _inside(self._home, real)):
                continue
            shown += ["--ro-bind-try", real, where]
        args = [
            self.bwrap,
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            *(["--disable-userns"] if self._disable_userns else []),
            *([] if self.network else ["--unshare-net"]),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", HOSTNAME,
            *self._fixed,
            *shown,
            "--proc", "/proc", "--remount-ro", "/proc",
            "--dev", "/dev",
            "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
            "--bind", work, work,
            *masks,
            # Writes anywhere else fail loudly instead of landing on the sandbox's throwaway root.
            "--remount-ro", "/",
            "--chdir", here,
            "--clearenv",
            "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", work, "--setenv", "PWD", here,
            "--setenv", "LANG", _lang(), "--setenv", "TERM", "dumb",
            "--",
        ]
        return args + wrapper_argv(command, status_fd, self.max_processes, pause_fd)


def wrapper_argv(command: str, status_fd: int, max_processes: int, pause_fd: int) -> list[str]:
    """The in-sandbox supervisor's argv: `bash -c WRAPPER vigil-sandbox COMMAND FD MAX PAUSE_FD`."""
    return ["bash", "--noprofile", "--norc", "-c", _WRAPPER, "vigil-sandbox", command, str(status_fd),
            str(max_processes), str(pause_fd)]


def _supports_disable_userns(bwrap: str) -> bool:
    try:
        shown = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                               env={"PATH": SANDBOX_PATH})
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in shown.stdout + shown.stderr


def detect(network: bool = True, data_dirs: Iterable[Path] = (), home: Path | None = None,
           search_path: str | None = None) -> Sandbox:
    """Find bwrap on PATH and prove it works by running `true` through the full sandbox, or raise."""
    found = shutil.which("bwrap", path=search_path if search_path is not None else os.environ.get("PATH"))
    if found is None:
        raise SandboxUnavailable("bwrap not found on PATH (install the bubblewrap package)")
    bwrap = os.path.abspath(found)
    sandbox = Sandbox(bwrap, network=network, data_dirs=data_dirs, home=home,
                      disable_userns=_supports_disable_userns(bwrap))
    with tempfile.TemporaryDirectory(prefix="vigil-probe-") as work:
        read_end, write_end = os.pipe()
        try:
            probe = subprocess.run(sandbox.argv(Path(work), Path(work), "true", write_end, read_end),
                                   env=sandbox.process_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, errors="replace", timeout=PROBE_TIMEOUT_S,
                                   pass_fds=(write_end, read_end))
        except subprocess.TimeoutExpired:
            raise SandboxUnavailable(f"bwrap failed: a trivial command took over {PROBE_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise SandboxUnavailable(f"bwrap failed: {exc.strerror or exc}") from None
        finally:
            os.close(read_end)
            os.close(write_end)
    if probe.returncode != 0:
        lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {probe.returncode}"
        raise SandboxUnavailable(f"bwrap failed: {detail[:200]}")
    return sandbox
