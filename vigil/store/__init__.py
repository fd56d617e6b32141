"""The LMDB store: `vigil.store.store` is its face (`LmdbStore`, `open_store`), `schema` its records.

Empty on purpose: the store's parts import each other by module, and `vigil.ports` must reach
`vigil.records.schema` without opening LMDB.
"""
