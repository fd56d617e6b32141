"""Shared fixtures: a real LMDB store in a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.store.store import LmdbStore, open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet (the store creates it)."""
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[LmdbStore]:
    """The process's store for `data_dir`, on real LMDB; closed after the test."""
    opened = open_store(data_dir)
    try:
        yield opened
    finally:
        opened.close()
