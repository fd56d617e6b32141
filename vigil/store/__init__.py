"""The LMDB store: `vigil.store.store` is its face (`LmdbStore`, `open_store`).

The modules here are what is read and written (`reads`, `writes`, `deletes`, `scans`, `summaries`, the
`inbox`, the `media_index`, the schema `upgrade`), each a part `LmdbStore` composes over `core`; the
durability machinery they stand on is `engine/`. The records themselves are `vigil.records`.

Empty on purpose: the store's parts import each other by module, and `vigil.ports` must reach the
records without opening LMDB. May import the engine, the records, the ports and the media store.
"""
