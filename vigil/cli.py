"""The `vigil` command line: run, chat, sessions, backup, restore, check, systemd-unit, bench.

Errors a user can fix (a bad setting, a missing key, a second instance) are one
line on stderr and exit code 2, never a traceback; errors that stop vigil (the
store or Telegram refused) are one line and exit 1. Which is which is the error's
class in `vigil.errors`, not a list kept here.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

import msgspec

from vigil import __version__
from vigil.config.settings import Settings, ensure_data_dir, ensure_workdir_root, load_settings
from vigil.errors import ServiceError, SettingsError, UserError
from vigil.logs import configure_logging, get_logger

_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _settings(log_default: str | None = None) -> Settings:
    settings = load_settings()
    level = settings.log_level if (log_default is None or "VIGIL_LOG_LEVEL" in os.environ) else log_default
    configure_logging(level, settings.log_format, settings.secrets())
    return settings


def _require_api_key(settings: Settings) -> None:
    settings.export_for_sdk()
    if settings.anthropic_api_key:
        return
    if os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        return
    raise UserError("no Anthropic API key: set ANTHROPIC_API_KEY (or anthropic_api_key in the file named by "
                    "VIGIL_CONFIG) to a key from console.anthropic.com")


def cmd_chat(args: argparse.Namespace) -> int:
    from vigil.adapters.console import ConsoleOutbox, run_console
    from vigil.lock import ProcessLock
    from vigil.model.anthropic_model import AnthropicModel
    from vigil.runtime import Runtime

    name = args.session
    if not _SESSION_NAME.match(name):
        raise UserError(f"--session {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    # The console is a tool beside the service, not a service: it never takes the service's metrics port.
    settings = msgspec.structs.replace(_settings(log_default="warning"), metrics_listen=None)
    _require_api_key(settings)
    data_dir = ensure_data_dir(settings)
    ensure_workdir_root(settings)
    lock = ProcessLock(data_dir / f"console-{name}.lock", f"vigil chat --session {name}").acquire()
    # A terminal may send bytes that aren't UTF-8: show U+FFFD rather than stop reading.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    outbox = ConsoleOutbox()
    model = AnthropicModel(settings.model_timeout_s, settings.model_max_retries)
    model.warm_up()
    key = f"console:{name}"
    runtime = Runtime(settings, {"console": outbox}, model, serves=lambda k: k == key)
    runtime.start()
    try:
        run_console(runtime, name, sys.stdin, outbox)
    except KeyboardInterrupt:
        outbox.err.write("\n")
    finally:
        runtime.shutdown(grace_s=2.0)
        lock.release()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from vigil.adapters.telegram.service import run_service

    settings = _settings()
    if not settings.telegram_bot_token:
        raise UserError("TELEGRAM_BOT_TOKEN is not set: vigil run serves Telegram and needs the bot token "
                        "from @BotFather (use `vigil chat` for the console)")
    _require_api_key(settings)
    ensure_data_dir(settings)
    ensure_workdir_root(settings)
    return run_service(settings)


def cmd_sessions(args: argparse.Namespace) -> int:
    from vigil.ops.admin import sessions_command

    settings = _settings(log_default="warning")
    ensure_data_dir(settings)
    return sessions_command(settings, args)


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vigil.ops.backup import take_backup

    settings = _settings(log_default="warning")
    manifest = take_backup(settings, Path(args.path))
    missing = manifest["missing_media"]
    print(f"backed up {manifest['sessions']} session(s), {manifest['turns']} turn(s) and "
          f"{manifest['media_files']} media file(s) to {args.path}"
          + (f"; {len(missing)} file(s) named by records were missing or damaged on disk" if missing else ""))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vigil.ops.restore import restore_backup

    settings = _settings(log_default="warning")
    done = restore_backup(settings, Path(args.path))
    print(f"restored {done['sessions']} session(s), {done['turns']} turn(s), {done['media_files']} media file(s) "
          f"from the backup of {done['created']} into {settings.data_dir}")
    if done["aside"]:
        print(f"the previous store was moved aside to {done['aside']}")
    if done["unreadable"]:
        print(done["unreadable"])
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from vigil.ops.check import run_checks

    try:
        settings = _settings(log_default="warning")
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    return run_checks(settings)


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    from vigil.ops.systemd import unit_file

    print(unit_file(user=args.user, env_file=args.env_file, workdir_root=args.workdir_root), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vigil.bench import run_bench, run_year

    configure_logging("warning", "auto")
    if args.year:
        return run_year(as_json=args.json, quick=args.quick)
    return run_bench(as_json=args.json, quick=args.quick, scale=args.scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Claude in Telegram, one session per chat.")
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the Telegram service")
    run.set_defaults(func=cmd_run)

    chat = sub.add_parser("chat", help="talk to a session on the console (one line in, the reply out)")
    chat.add_argument("--session", default="default", help="console session name (default: default)")
    chat.set_defaults(func=cmd_chat)

    sessions = sub.add_parser("sessions", help="list, show, clean up, delete or export stored sessions")
    ssub = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = ssub.add_parser("list", help="stored sessions, newest first")
    listing.add_argument("--user", type=int, help="only sessions this Telegram user takes part in")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = ssub.add_parser("show", help="one session's settings and latest turns")
    show.add_argument("key")
    show.add_argument("--turns", type=int, default=10)
    cleanup = ssub.add_parser("cleanup", help="delete sessions idle longer than AGE")
    cleanup.add_argument("--older-than", default="24h", metavar="AGE")
    cleanup.add_argument("--yes", action="store_true", help="delete without asking")
    delete = ssub.add_parser("delete", help="delete one session's stored data")
    delete.add_argument("key")
    delete.add_argument("--yes", action="store_true", help="delete without asking")
    export = ssub.add_parser("export", help="one session's history as JSON")
    export.add_argument("key")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    stats = ssub.add_parser("stats", help="the store's size, live and free pages, bytes per turn, media")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    ssub.add_parser("reindex", help="build the recall index (/search, Claude's recall) anew from the store")
    sessions.set_defaults(func=cmd_sessions)

    backup = sub.add_parser("backup", help="a consistent, compacted copy of the store and its media (vigil may run)")
    backup.add_argument("path", help="a new directory for the backup")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="put a backup in place of the store (vigil must be stopped)")
    restore.add_argument("path", help="a directory written by `vigil backup`")
    restore.set_defaults(func=cmd_restore)

    check = sub.add_parser("check", help="check settings, store, Telegram and the model")
    check.set_defaults(func=cmd_check)

    unit = sub.add_parser("systemd-unit", help="print a systemd unit file for `vigil run`")
    unit.add_argument("--user", default="vigil", help="the service user (default: vigil)")
    unit.add_argument("--env-file", default="/etc/vigil/vigil.env", help="EnvironmentFile with the secrets")
    unit.add_argument("--workdir-root", default="/srv/vigil", help="VIGIL_WORKDIR_ROOT, writable by the service")
    unit.set_defaults(func=cmd_systemd_unit)

    bench = sub.add_parser("bench", help="measure vigil in-process with a zero-latency model")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    bench.add_argument("--scale", type=int, metavar="N",
                       help="divide every size by N (--quick is 10): a smoke test of every measurement")
    bench.add_argument("--year", action="store_true", help="build a busy year's store and measure using it")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:  # exit 2: a setting, a flag, a second instance
        print(f"vigil: {exc}", file=sys.stderr)
        return exc.exit_code
    except ServiceError as exc:  # exit 1: the store or Telegram refused
        print(f"vigil: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception:
        get_logger(__name__).exception("vigil.crashed")
        print("vigil: an unexpected error stopped vigil; the log above has the details", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """The `vigil` script and `python -m vigil`: `main`, then an exit that does not collect the process's garbage.

    Python's exit runs a full collection over every object the process made (the SDKs' classes and models,
    PTB's, every cached record): measured at ~0.8 s of CPU after `vigil run`, for memory the kernel takes
    back anyway, on every restart systemd makes. By then the store is closed and the logs are flushed,
    and the exit handlers (`atexit`) still run; only the walk is skipped.
    """
    code = main()
    gc.freeze()
    sys.exit(code)
