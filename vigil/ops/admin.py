"""`vigil sessions list|show|cleanup|delete|export|stats|reindex`: the store from another shell.

These open the same LMDB environment as the running service (LMDB is made
for several processes); reads never block it, and the few writes (cleanup,
delete) take LMDB's own write lock. A live session deleted this way notices on
its next write and starts afresh instead of resurrecting the deleted data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vigil.config.settings import Settings
from vigil.control.dispatch import complete, export_session
from vigil.control.views import clock, heartbeat_line, money, session_title, usage_line
from vigil.durations import DurationError, ago, parse_duration
from vigil.media.files import MediaStore
from vigil.media.sweep import sweep
from vigil.ops.stats import print_stats
from vigil.policy.expiry import activity, expired, old_generations
from vigil.recall.upkeep import reindex_command, unindex
from vigil.store.store import LmdbStore, open_store, unreadable_line


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Refusing without --yes (stdin is not a terminal).", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _list(store: LmdbStore, args: argparse.Namespace) -> int:
    found, skipped = store.scan_headers(args.user)
    headers = sorted(found, key=activity, reverse=True)
    # Unreadable records are named, so they can be deleted; on stderr with --json (one session per line).
    unreadable = unreadable_line(skipped)
    if args.json:
        for header in headers:
            print(json.dumps(complete(header), ensure_ascii=False))
        if unreadable:
            print(f"vigil: {unreadable}", file=sys.stderr)
        return 0
    if not headers:
        print("no stored sessions")
    else:
        print(f"{'KEY':<28} {'LAST ACTIVE':<14} {'TURNS':>6} {'COST':>9}  {'HEARTBEAT':<14} TITLE / CWD")
        for h in headers:
            total = h.usage + h.heartbeat_usage
            print(f"{h.key:<28} {ago(activity(h)):<14} {h.next_seq:>6} {money(total.cost_micros):>9}  "
                  f"{heartbeat_line(h.heartbeat):<14} {'📌 ' if h.pinned else ''}{session_title(h)} — {h.cwd}")
        print(f"{len(headers)} session(s)")
    if unreadable:
        print(f"{unreadable}; `vigil sessions delete KEY` removes one")
    return 0


def _show(store: LmdbStore, args: argparse.Namespace) -> int:
    key = store.canonical(args.key)
    header = store.header(key)
    received = store.inbox_count(key)
    if header is None:
        print(f"vigil: no stored session {args.key!r}"
              + (f" ({received} received message(s) wait for it in the inbox)" if received else ""), file=sys.stderr)
        return 1
    print(f"session     {header.key} — {session_title(header)} ({header.chat_type or 'chat'})")
    print(f"target      {header.target.channel} chat {header.target.chat_id}"
          + (f" thread {header.target.thread_id}" if header.target.thread_id else ""))
    print(f"model       {header.model}")
    print(f"cwd         {header.cwd}")
    print(f"generation  {header.generation} ({header.next_seq} turns; {header.turns_total} in all)")
    print(f"created     {clock(header.created_at)}; last active {ago(activity(header))}")
    if header.pinned:
        print("pinned      yes (kept by retention and cleanups; /pin off in the chat releases it)")
    print(f"usage       {usage_line(header.usage)}")
    print(f"heartbeats  {heartbeat_line(header.heartbeat)}; {usage_line(header.heartbeat_usage)}")
    if header.pending:
        print(f"pending     {len(header.pending)} unanswered message(s)")
    if received:
        print(f"inbox       {received} received message(s) the session has not taken up yet")
    turns = store.last_turns(key, header.generation, args.turns)
    if turns:
        print(f"\nlast {len(turns)} turn(s):")
    for turn in turns:
        said = " / ".join(i.text for i in turn.inputs) if turn.kind == "user" else "(heartbeat)"
        reply = turn.reply.replace("\n", " ")
        print(f"  #{turn.seq} {clock(turn.started_at)} [{turn.status}] {said[:80]}")
        if reply:
            print(f"      → {reply[:100]}")
    return 0


def _cleanup(store: LmdbStore, args: argparse.Namespace) -> int:
    try:
        age = parse_duration(args.older_than)
    except DurationError as exc:
        print(f"vigil: --older-than: {exc}", file=sys.stderr)
        return 2
    cutoff = time.time() - age
    headers = store.headers()
    # The same rule as /sessions cleanup and retention (vigil/policy/expiry.py): pinned sessions are kept.
    doomed, prune = expired(store, headers, cutoff)
    by_key = {h.key: h for h in headers}
    old_of = {key: old_generations(store, by_key[key], cutoff) for key in prune}
    old = sum(len(gens) for gens in old_of.values())
    if not doomed and not old:
        print(f"nothing to clean up: no session idle longer than {args.older_than}")
        return 0
    for h in doomed:
        print(f"  {h.key:<28} last active {ago(activity(h))}, {h.next_seq} turns — {session_title(h)}")
    if old:
        print(f"  and {old} earlier conversation(s) (from /new) older than {args.older_than} in other sessions")
    if not _confirm(f"Delete these {len(doomed)} session(s) and {old} earlier conversation(s)?", args.yes):
        return 1
    unindex(store, [(h.key, None) for h in doomed] + [(k, g) for k, gens in old_of.items() for g in gens])
    for h in doomed:
        store.delete_session(h.key).result()
    pruned = sum(int(store.prune_generations(key, cutoff, gens).result()) for key, gens in old_of.items())
    print(f"deleted {len(doomed)} session(s) and {pruned} earlier conversation(s)")
    _sweep_media(store)
    return 0


def _delete(store: LmdbStore, args: argparse.Namespace) -> int:
    key = store.canonical(args.key)
    # Not decoded: deleting is how an unreadable record is removed; a first message may wait in the inbox alone.
    if not store.has_session(key) and not store.inbox_count(key):
        print(f"vigil: no stored session {args.key!r}", file=sys.stderr)
        return 1
    if not _confirm(f"Delete session {key} (history, notes, settings)?", args.yes):
        return 1
    unindex(store, [(key, None)])  # first: the recall index reads the words it takes out from the store
    turns = store.delete_session(key).result()
    print(f"deleted {key} ({turns} turns)")
    _sweep_media(store)
    return 0


def _sweep_media(store: LmdbStore) -> None:
    """The photos and documents only the deleted sessions referenced go too (see vigil/media/sweep.py)."""
    files, removed = sweep(store, MediaStore(store.data_dir / "media"))
    if files:
        print(f"deleted {files} media file(s) no session uses any more ({removed / 1_000_000:.1f} MB)")


def _export(store: LmdbStore, args: argparse.Namespace) -> int:
    document = export_session(store, store.canonical(args.key))
    if document is None:
        print(f"vigil: no stored session {args.key!r}", file=sys.stderr)
        return 1
    if args.output:
        # Only the service user may read a conversation: 0600 whatever the umask, also for a file that existed.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(document)
        print(f"wrote {args.output} ({len(document)} bytes)")
    else:
        sys.stdout.buffer.write(document + b"\n")
    return 0


def _stats(store: LmdbStore, args: argparse.Namespace) -> int:
    return print_stats(store, args.json)


def sessions_command(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings.data_dir, settings.store_map_mb)
    try:
        action = {"list": _list, "show": _show, "cleanup": _cleanup, "delete": _delete, "export": _export,
                  "stats": _stats, "reindex": reindex_command}
        return action[args.action](store, args)
    finally:
        store.close()
