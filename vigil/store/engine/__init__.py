"""The store's engine: journal-first durability on LMDB, apart from what is read and written.

A durable commit is one barrier in the redo `journal` (its `records`), acknowledged by a `future` and
applied to LMDB `behind` it by the `applier`; one `writer` process owns the write transactions under
the `commit_lock`; `checkpoint`s let the journal restart; `opening` and `lmdb_env` open the environment
with room to grow; `keys`, `cursors` and `media_refs` are the byte layouts and indexes every part uses.

May import the records, ports, errors and logs only; `vigil.store`'s modules build on it.
"""
