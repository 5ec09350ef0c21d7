"""Fixtures for the server's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.server.store import open_store
from vigil.server.store.base import Store


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    s = open_store(migrated_url)
    try:
        yield s
    finally:
        s.close()
