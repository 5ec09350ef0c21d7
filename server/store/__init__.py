"""The store: history, trends and their housekeeping behind one seam (see base.py for the contract)."""

from __future__ import annotations

from vigil.server.store.base import PgTimeouts, Store, StoreError


def open_store(url: str, pg: PgTimeouts | None = None, defer_index: bool = True) -> Store:
    """The store for a Vigil database URL: `sqlite:///PATH` or `postgresql://…` (also `postgres://…`).

    `pg`: the connection's time-outs on PostgreSQL (Settings.pg_timeouts); `defer_index`
    (VIGIL_PG_DEFER_INDEX): the hours of numeric history it makes are indexed once closed, else at
    once. Both are ignored on SQLite.
    """
    if not isinstance(url, str):
        raise StoreError(f"store URL must be a string, got {url!r}")
    if url.startswith("sqlite:///"):
        from vigil.server.store.sqlite import SQLiteStore

        path = url[len("sqlite:///"):]
        if not path:
            raise StoreError(f"store URL {url!r} names no file: expected sqlite:///PATH")
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from vigil.server.store.postgres import PostgresStore

        return PostgresStore(url, pg, defer_index)
    raise StoreError(f"store URL {url[:80]!r} is neither sqlite:///PATH nor postgresql://…")


__all__ = ["PgTimeouts", "Store", "StoreError", "open_store"]
