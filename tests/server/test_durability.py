"""Acknowledged means on disk: the settings that make a commit durable, read back from the connections.

A SIGKILL of the server cannot show a missing fsync (the operating system still writes the page
cache out), so these read the settings themselves: PostgreSQL's synchronous_commit on the
connection the store writes with, SQLite's synchronous=FULL and WAL on the store's connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch
from vigil.server.store.postgres import PostgresStore
from vigil.server.store.sqlite import SQLiteStore

from tests.conftest import drop_pg_database, new_pg_database

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


@pytest.fixture
def pg_async_by_default() -> Iterator[str]:
    """A migrated PostgreSQL database whose administrator made asynchronous commit its default."""
    name, url = new_pg_database()
    try:
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        with psycopg.connect(url) as c:  # the default applies to every new session
            assert c.execute("SHOW synchronous_commit").fetchone() == ("off",)
        yield url
    finally:
        drop_pg_database(name)


def _a_write(store: PostgresStore | SQLiteStore) -> None:
    store.write(WriteBatch(floats=[(1, 1_700_000_000, 0, 1.5)], sessions={"s" * 32: 1}))


def test_postgres_store_commits_synchronously_even_when_the_database_default_is_off(
        pg_async_by_default: str) -> None:
    store = open_store(pg_async_by_default)
    try:
        assert isinstance(store, PostgresStore)
        assert store._conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        _a_write(store)
        assert store._conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        store.close()


def test_postgres_configuration_writes_commit_synchronously(pg_async_by_default: str) -> None:
    # `vigil config import` and log positions written through SQLAlchemy must be as durable.
    engine = engine_for(pg_async_by_default)
    try:
        for _ in range(2):  # a fresh connection and one back from the pool (after its reset)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        engine.dispose()


def test_sqlite_store_writes_with_wal_and_synchronous_full(tmp_path: Path) -> None:
    path = tmp_path / "vigil.db"
    engine = engine_for(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as c:  # someone turned WAL off in the file; the store turns it back on
        assert c.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    store = open_store(f"sqlite:///{path}")
    try:
        assert isinstance(store, SQLiteStore)
        _a_write(store)
        assert store._db.execute("PRAGMA synchronous").fetchone() == (FULL,)
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()


def test_sqlite_configuration_writes_with_wal_and_synchronous_full(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'vigil.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == FULL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
