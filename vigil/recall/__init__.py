"""Recall: every chat's own past, searchable, for Claude (the `recall` tool) and for people (`/search`).

An index derived from the store, under the data directory (`recall.sqlite3`), built on SQLite's FTS5
through the standard library's `sqlite3`. Why FTS5: BM25 ranking is built in; it is the most widely
deployed full-text engine there is, maintained with SQLite itself; it needs no new dependency (nor
a wheel per platform, as tantivy's Python binding would); it gives concurrent readers beside one
writer across processes (WAL), so `vigil sessions ...` can delete from it while the service runs;
and it is contentless-capable, which is what keeps the index small. tantivy would rank and tokenize
at least as well (and segments words of languages without spaces better), but it brings a Rust
extension to build or fetch, its own file locking (one writer per directory, no second process), and
no saving in what matters here: p95 and bytes per turn are met with FTS5 (`vigil bench`).

What it holds: the terms of each passage (vigil/recall/passages.py: who said what, when), no text.
FTS5 runs contentless (`content=''`); a hit names (conversation, turn, passage) and the words are
read back from the store, which stays the only copy. Measured on turns of ~1 kB of English: 452
bytes of index per turn contentless against 1,539 with the text kept beside it (external content).
The price: FTS5 (SQLite 3.40 here, no `contentless_delete`) can only take a passage out when given its
words again, so deletions read them from the store first (`RecallIndexer.forget`, called before the
store deletes), and passages whose words are gone are made unfindable at once and purged by a rebuild.

The parts: `passages` (a turn's words), `db` (the file, its tables), `source` (what is read from the
store), `writes` (a table set changed), `index` (the writer: take in, catch up, rebuild, forget),
`indexer` (its thread and queue), `query` (words to FTS5, snippets), `search` (ranked, scoped hits).

May import the store (the only copy of the words) and the records beneath it; the actors and `/search` import this.
"""

from __future__ import annotations

from vigil.recall.index import RecallIndex, reindex
from vigil.recall.indexer import RecallIndexer
from vigil.recall.passages import Passage, passages
from vigil.recall.search import DEFAULT_LIMIT, MAX_LIMIT, RecallHit, RecallResult, Searcher, format_hits
from vigil.recall.source import StoreView, TurnSource

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Passage", "RecallHit", "RecallIndex", "RecallIndexer", "RecallResult",
           "Searcher", "StoreView", "TurnSource", "format_hits", "passages", "reindex"]
