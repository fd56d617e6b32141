"""`vigil sessions stats`: how big the store is, how much of it is live, what a turn costs on disk.

LMDB never shrinks its file: pages freed by deletions (retention, cleanups) go on its freelist and
are reused by later writes, so after a retention pass the file keeps its size while its free pages
grow; `vigil backup` (a compacted copy) is how the file itself gets small again.

py-lmdb does not expose the freelist (LMDB's FREE_DBI), so free pages are estimated: the pages the
file holds (`last_pgno + 1` from `env.info()`) minus the pages of every B-tree (branch, leaf and
overflow pages of the main database, from `env.stat()`, and of each named database, from
`txn.stat(db)`) minus LMDB's two meta pages. What remains is the freelist's pages plus the pages it
lists (free now, or kept for a reader still looking at an older snapshot).
"""

from __future__ import annotations

import json
import os
from typing import Any

from vigil.media.files import MediaStore
from vigil.store.store import LmdbStore

META_PAGES = 2


def _pages(stat: dict[str, int]) -> int:
    return int(stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"])


def store_stats(store: LmdbStore) -> dict[str, Any]:
    """The numbers, as plain data (the `--json` form)."""
    lmdb_env = store.environment

    def read(txn: Any) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        env = lmdb_env.env
        main = dict(env.stat())
        info = dict(env.info())
        named = {name.decode(): dict(txn.stat(db)) for name, db in lmdb_env.dbs.items()}
        return {"main": main, "info": info}, named

    raw, named = lmdb_env.read(read)
    page = int(raw["main"]["psize"])
    file_pages = int(raw["info"]["last_pgno"]) + 1
    tree_pages = _pages(raw["main"]) + sum(_pages(s) for s in named.values())
    free_pages = max(0, file_pages - tree_pages - META_PAGES)
    path = store.data_dir / "data.mdb"
    info = os.stat(path)
    turns = named["turns"]["entries"]
    turn_bytes = _pages(named["turns"]) * page
    media = MediaStore(store.data_dir / "media")
    media_files = media_bytes = 0
    for digest in media.digests():
        try:
            media_bytes += media.size(digest)
        except FileNotFoundError:
            continue  # swept meanwhile
        media_files += 1
    return {
        "path": str(path),
        "file_bytes": info.st_size,
        "allocated_bytes": info.st_blocks * 512,
        "map_size": int(raw["info"]["map_size"]),
        "page_size": page,
        "pages": file_pages,
        "live_pages": tree_pages + META_PAGES,
        "free_pages": free_pages,
        "free_pages_estimated": True,
        "sessions": named["sessions"]["entries"],
        "turns": turns,
        "turn_bytes": turn_bytes,
        "bytes_per_turn": round(turn_bytes / turns) if turns else 0,
        "notes": named["notes"]["entries"],
        "inbox": named["inbox"]["entries"],
        "usage_rows": named["usage"]["entries"],
        "media_files": media_files,
        "media_bytes": media_bytes,
        "databases": {name: {"entries": s["entries"], "pages": _pages(s)} for name, s in sorted(named.items())},
    }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def print_stats(store: LmdbStore, as_json: bool) -> int:
    stats = store_stats(store)
    if as_json:
        print(json.dumps(stats))
        return 0
    page = stats["page_size"]
    print(f"store        {stats['path']}")
    print(f"file         {stats['file_bytes']} bytes ({_size(stats['file_bytes'])}); "
          f"{stats['allocated_bytes']} allocated on disk")
    print(f"map size     {stats['map_size']} bytes ({_size(stats['map_size'])}); grows on demand")
    print(f"pages        {stats['pages']} of {page} bytes: {stats['live_pages']} live, "
          f"{stats['free_pages']} free (estimated: file pages minus every tree's pages; reused by later writes)")
    print(f"sessions     {stats['sessions']}")
    print(f"turns        {stats['turns']} ({_size(stats['turn_bytes'])}; {stats['bytes_per_turn']} bytes per turn)")
    print(f"notes        {stats['notes']}; inbox {stats['inbox']}; usage rows {stats['usage_rows']}")
    print(f"media        {stats['media_files']} file(s), {stats['media_bytes']} bytes ({_size(stats['media_bytes'])})")
    return 0
