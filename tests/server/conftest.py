"""Fixtures for the server's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.server.store import open_store
from vigil.server.store.base import Store

from tests.conftest import Dropper, MigratedTemplates, new_pg_database


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    s = open_store(migrated_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def migrated_pg_url(migrated_templates: MigratedTemplates, pg_dropper: Dropper) -> Iterator[str]:
    """A PostgreSQL database migrated to head, for tests of PostgreSQL's own paths."""
    name, url = new_pg_database(migrated_templates.pg())
    try:
        yield url
    finally:
        pg_dropper.drop(name)
