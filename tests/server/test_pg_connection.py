"""The PostgreSQL store's connection: time-outs from VIGIL_PG_* (a write that waits on a held lock
fails after the lock time-out instead of hanging its writer and every client behind it), and a
connection the server ended is replaced by the next write or read, without storing anything twice.

A restarted or stopped server is tested in test_pg_restart.py, on a cluster of the test's own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.settings import Settings
from vigil.server.store import open_store
from vigil.server.store.base import StoreError, WriteBatch

from tests.conftest import drop_pg_database, new_pg_database

T0 = 1_700_000_000
GUARD = 30.0  # a write still blocked after this is hanging: the lock time-out below is 1 s


@pytest.fixture
def pg_url() -> Iterator[str]:
    name, url = new_pg_database()
    try:
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        drop_pg_database(name)


def settings(url: str, **env: str) -> Settings:
    return Settings.from_env({"VIGIL_DATABASE_URL": url, **env})


def test_a_write_blocked_by_a_held_lock_fails_after_the_lock_timeout(pg_url: str) -> None:
    s = settings(pg_url, VIGIL_PG_LOCK_TIMEOUT="1")
    store = open_store(pg_url, s.pg_timeouts)
    # Day partition made first, so the write below needs no DDL of its own, only the table lock.
    store.write(WriteBatch(floats=[(1, T0, 0, 1.0)]))
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.write(WriteBatch(floats=[(1, T0 + 1, 0, 2.0)]))
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            outcome.append(e)

    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE history IN ACCESS EXCLUSIVE MODE")
        t = threading.Thread(target=write, daemon=True)
        t.start()
        t.join(GUARD)
        blocked = t.is_alive()
        holder.rollback()
    t.join(GUARD)
    try:
        assert not blocked, "the write waited on the lock past the lock time-out"
        assert isinstance(outcome[0], StoreError), outcome
        assert "lock timeout" in str(outcome[0])
        # The store is usable afterwards and stored nothing of the failed batch.
        store.write(WriteBatch(floats=[(1, T0 + 2, 0, 3.0)]))
        assert [v for _, _, v in store.history(1, 0, 0, 2**31 - 1)] == [1.0, 3.0]
    finally:
        store.close()


def test_the_timeouts_reach_every_connection_of_the_server(pg_url: str) -> None:
    s = settings(pg_url, VIGIL_PG_CONNECT_TIMEOUT="4", VIGIL_PG_STATEMENT_TIMEOUT="7.5",
                 VIGIL_PG_LOCK_TIMEOUT="2")
    store = open_store(pg_url, s.pg_timeouts)
    try:
        conn = store._conn  # type: ignore[attr-defined]
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7500ms",)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("2s",)
        params = conn.info.get_parameters()
        assert params["connect_timeout"] == "4"
        assert params["tcp_user_timeout"] == "4000"  # what was sent on a connection: acknowledged within it
    finally:
        store.close()
    engine = engine_for(pg_url, s.pg_timeouts)
    try:
        with engine.connect() as c:
            assert c.execute(sa.text("SHOW statement_timeout")).scalar_one() == "7500ms"
            assert c.execute(sa.text("SHOW lock_timeout")).scalar_one() == "2s"
    finally:
        engine.dispose()


def test_a_statement_past_the_statement_timeout_is_cancelled(pg_url: str) -> None:
    s = settings(pg_url, VIGIL_PG_STATEMENT_TIMEOUT="0.2")
    store = open_store(pg_url, s.pg_timeouts)
    try:
        with pytest.raises(StoreError, match="statement timeout"):
            store._query("SELECT pg_sleep(30)", ())  # type: ignore[attr-defined]
        assert store.sessions() == {}
    finally:
        store.close()


def terminate(url: str, store: object) -> None:
    pid = store._conn.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        c.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


def test_a_store_whose_connection_was_ended_writes_and_reads_again(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        store.write(WriteBatch(floats=[(1, T0, 0, 1.0)], sessions={"s1": 5}))
        terminate(pg_url, store)
        # Ended before the write began: nothing of it was sent, so a fresh connection takes it.
        store.write(WriteBatch(floats=[(1, T0 + 1, 0, 2.0)], sessions={"s1": 9}))
        terminate(pg_url, store)
        assert store.sessions() == {"s1": 9}
        assert [v for _, _, v in store.history(1, 0, 0, 2**31 - 1)] == [1.0, 2.0]
    finally:
        store.close()


def test_a_store_that_cannot_reconnect_fails_fast_and_waits_before_trying_again(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        store.write(WriteBatch(floats=[(1, T0, 0, 1.0)]))
        good_url = store.url  # type: ignore[attr-defined]
        store.url = good_url.rsplit("/", 1)[0] + "/vigil_no_such_database"  # type: ignore[attr-defined]
        terminate(pg_url, store)
        with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
            store.write(WriteBatch(floats=[(1, T0 + 1, 0, 2.0)]))
        # Within the pause after a failed attempt: no new attempt, an error that says when the next one is.
        with pytest.raises(StoreError, match="unreachable; next connection attempt in"):
            store.write(WriteBatch(floats=[(1, T0 + 2, 0, 3.0)]))
        store.url = good_url  # type: ignore[attr-defined]
        store._retry_at = 0.0  # type: ignore[attr-defined]  # the pause is over
        store.write(WriteBatch(floats=[(1, T0 + 3, 0, 4.0)]))
        assert [v for _, _, v in store.history(1, 0, 0, 2**31 - 1)] == [1.0, 4.0]
    finally:
        store.close()


def test_the_timeouts_are_settings_with_bounds() -> None:
    s = Settings.from_env({})
    assert (s.pg_connect_timeout, s.pg_statement_timeout, s.pg_lock_timeout) == (10, 300, 10)
    with pytest.raises(ValueError, match="VIGIL_PG_LOCK_TIMEOUT"):
        Settings.from_env({"VIGIL_PG_LOCK_TIMEOUT": "-1"})
    with pytest.raises(ValueError, match="VIGIL_PG_CONNECT_TIMEOUT"):
        Settings.from_env({"VIGIL_PG_CONNECT_TIMEOUT": "0"})
