"""The event loop's own writes on PostgreSQL (Batcher `on_loop`, PostgresStore.write_on_loop), on a
real database: a value batch is committed before submit returns; whatever the loop's store cannot do
— a partition it does not know, a broken connection, a bad row, sessions — goes to the writer threads
with nothing lost or stored twice, and the loop's stores come back by themselves."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.tables import ValueType
from vigil.server.ingest.batcher import Batcher
from vigil.server.store import open_store
from vigil.server.store.base import StoreError, WriteBatch
from vigil.server.store.postgres import LOOP_MAX_VALUES

T0 = 1_700_000_000 - 1_700_000_000 % 3600
END = 2**31 - 1
GUARD = 20.0  # seconds for any condition below


def batch(itemid: int, *values: float, at: int = T0) -> WriteBatch:
    return WriteBatch(floats=[(itemid, at + i, 0, v) for i, v in enumerate(values)])


def stored(url: str, itemid: int) -> list[float]:
    s = open_store(url)
    try:
        return [v for _, _, v in s.history(itemid, ValueType.FLOAT, 0, END)]
    finally:
        s.close()


async def until(cond: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(GUARD):
        while not cond():
            await asyncio.sleep(0.02)


def run(b: Batcher, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        b.start()
        try:
            await body()
        finally:
            await asyncio.to_thread(b.stop, GUARD)

    asyncio.run(main())


async def ready(b: Batcher, url: str, n: int = 2) -> None:
    """The day's partition made (by a first batch, on a thread) and every store of the loop's writing."""
    k = 0

    async def write_one() -> bool:
        nonlocal k
        k += 1
        before = b.written_on_loop
        await b.submit(batch(999, 0.0, at=T0 - k))
        return b.written_on_loop > before

    async with asyncio.timeout(GUARD):
        while True:
            await until(lambda: b.idle_loop_stores == n, f"{n} stores for the loop's writes")
            if all(await asyncio.gather(*(write_one() for _ in range(n)))):
                return


def test_value_batches_are_written_from_the_loop_and_committed_before_submit_returns(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=2)

    async def body() -> None:
        await ready(b, migrated_pg_url)
        start = b.written_values

        async def one(itemid: int) -> None:
            await b.submit(batch(itemid, *(itemid + k / 10 for k in range(50))))
            # acknowledged means committed: another connection sees every value at once
            assert await asyncio.to_thread(stored, migrated_pg_url, itemid) == [itemid + k / 10 for k in range(50)]

        on_loop = b.written_on_loop
        for i in range(1, 11):  # one at a time: an idle store of the loop's takes each
            await one(i)
        assert b.written_on_loop - on_loop == 50 * 10
        # more at once than the loop has stores: the rest go to the writer thread, all are stored once
        await asyncio.gather(*(one(i) for i in range(11, 51)))
        assert b.written_values - start == 50 * 50
        assert b.written_on_loop - on_loop >= 50 * 12

    run(b, body)


def test_a_partition_the_loop_does_not_know_is_made_on_a_thread_then_the_loop_writes_into_it(
        migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)
    later = T0 + 40 * 86400  # a day no partition exists for

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        before = b.written_on_loop
        await b.submit(batch(1, 1.5, at=later))
        assert b.written_on_loop == before  # handed to the writer thread, which made the partition
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, refreshed")
        await b.submit(batch(1, 2.5, at=later + 10))  # the refresh came after the thread's write
        assert b.written_on_loop == before + 1
        assert await asyncio.to_thread(stored, migrated_pg_url, 1) == [1.5, 2.5]

    run(b, body)


def _terminate_others(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_a_broken_connection_hands_the_batch_to_the_writers_once_and_the_loop_reconnects(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=2)

    async def body() -> None:
        await ready(b, migrated_pg_url)
        assert await asyncio.to_thread(_terminate_others, migrated_pg_url) >= 3  # both loop stores and the writer's
        before = b.written_on_loop
        await b.submit(batch(7, 1.0, 2.0, 3.0))
        assert b.written_on_loop == before  # the loop's store found its connection gone: nothing sent twice
        assert await asyncio.to_thread(stored, migrated_pg_url, 7) == [1.0, 2.0, 3.0]
        await until(lambda: b.idle_loop_stores == 2, "the loop's stores, reconnected")
        await b.submit(batch(7, 4.0, at=T0 + 10))
        assert b.written_on_loop == before + 1
        assert await asyncio.to_thread(stored, migrated_pg_url, 7) == [1.0, 2.0, 3.0, 4.0]

    run(b, body)


def test_a_bad_row_fails_its_batch_with_the_stores_message_and_the_loop_goes_on(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        with pytest.raises(StoreError, match="history"):
            await b.submit(batch(3, 1.0, math.nan))
        assert await asyncio.to_thread(stored, migrated_pg_url, 3) == []  # all or nothing
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, back")
        before = b.written_on_loop
        await b.submit(batch(3, 5.0))
        assert b.written_on_loop == before + 1
        assert await asyncio.to_thread(stored, migrated_pg_url, 3) == [5.0]

    run(b, body)


def test_sessions_texts_logs_and_big_batches_go_to_the_writer_threads(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 100_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        before = b.written_on_loop
        with_session = batch(4, 1.0)
        with_session.sessions = {"s1": 12}
        await b.submit(with_session)
        assert b.committed_sessions() == {"s1": 12}
        await b.submit(WriteBatch(texts=[(8, T0, 0, "x" * 1000)]))
        await b.submit(WriteBatch(logs=[(9, T0, 0, 0, "", 0, "line", 0)]))
        await b.submit(batch(10, *range(LOOP_MAX_VALUES + 1)))
        assert b.written_on_loop == before
        assert b.idle_loop_stores == 1  # declining sent nothing: the store stays ready
        assert await asyncio.to_thread(stored, migrated_pg_url, 4) == [1.0]
        assert len(await asyncio.to_thread(stored, migrated_pg_url, 10)) == LOOP_MAX_VALUES + 1
        await b.submit(batch(11, *range(LOOP_MAX_VALUES)))  # at the limit: the loop's
        assert b.written_on_loop == before + LOOP_MAX_VALUES

    run(b, body)


def test_a_write_cancelled_on_the_loop_leaves_a_store_that_comes_back(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        task = asyncio.create_task(b.submit(batch(5, *range(LOOP_MAX_VALUES))))
        await asyncio.sleep(0)  # inside the exchange with PostgreSQL
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, reconnected")
        n = len(await asyncio.to_thread(stored, migrated_pg_url, 5))
        assert n in (0, LOOP_MAX_VALUES)  # whole or not at all
        before = b.written_on_loop
        await b.submit(batch(6, 1.0))
        assert b.written_on_loop == before + 1

    run(b, body)


def test_sqlite_has_no_loop_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    b = Batcher(lambda: open_store(url), 10_000, writers=1, on_loop=2)

    async def body() -> None:
        await b.submit(batch(1, 1.0))
        await asyncio.sleep(0.5)  # time enough for a store to be opened and handed to the loop
        assert b.idle_loop_stores == 0 and b.written_on_loop == 0
        await b.submit(batch(1, 2.0, at=T0 + 5))
        assert b.written_values == 2

    run(b, body)


class HeldHistory:
    """Another connection holds a lock on `history` that COPY into it waits for: a loop store's write
    stays in flight until release(), so what other batches do meanwhile is not left to timing."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url)
        self._conn.execute("LOCK TABLE history IN SHARE MODE")

    def release(self) -> None:
        try:
            self._conn.rollback()
        except psycopg.OperationalError:
            pass  # terminated by the test: the lock went with it
        self._conn.close()


async def waiting_on_lock(url: str, n: int) -> None:
    def count() -> int:
        with psycopg.connect(url, autocommit=True) as c:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'").fetchone()[0]

    async with asyncio.timeout(GUARD):
        while await asyncio.to_thread(count) < n:
            await asyncio.sleep(0.02)


def test_batches_that_find_the_loop_stores_busy_go_in_one_transaction_when_one_comes_back(
        migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        tx, on_loop = b.transactions, b.written_on_loop
        held = await asyncio.to_thread(HeldHistory, migrated_pg_url)
        first = asyncio.create_task(b.submit(batch(100, 1.0)))
        await waiting_on_lock(migrated_pg_url, 1)  # the loop's only store is out writing
        waiting = [asyncio.create_task(b.submit(batch(i, *(i + k / 10 for k in range(50))))) for i in range(101, 121)]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in [first, *waiting])  # none acknowledged before its commit
        held.release()
        await asyncio.gather(first, *waiting)
        assert b.transactions - tx == 2  # the first alone, then the 20 that waited for its store
        assert b.written_on_loop - on_loop == 1 + 20 * 50
        for i in range(101, 121):
            assert await asyncio.to_thread(stored, migrated_pg_url, i) == [i + k / 10 for k in range(50)]
        assert b.idle_loop_stores == 1

    run(b, body)


def test_a_bad_row_in_a_group_fails_every_batch_of_it_and_stores_none(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        held = await asyncio.to_thread(HeldHistory, migrated_pg_url)
        first = asyncio.create_task(b.submit(batch(200, 1.0)))
        await waiting_on_lock(migrated_pg_url, 1)
        group = [asyncio.create_task(b.submit(batch(201, 1.0))), asyncio.create_task(b.submit(batch(202, math.nan)))]
        await asyncio.sleep(0.05)
        held.release()
        await first
        for t in group:  # one transaction: its clients all hear its error (the writer threads' way too)
            with pytest.raises(StoreError, match="history"):
                await t
        assert await asyncio.to_thread(stored, migrated_pg_url, 201) == []
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, back")
        before = b.written_on_loop
        await b.submit(batch(201, 2.0))
        assert b.written_on_loop == before + 1
        assert await asyncio.to_thread(stored, migrated_pg_url, 201) == [2.0]

    run(b, body)


def test_a_group_whose_store_went_away_goes_to_the_writer_threads_and_is_stored_once(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        held = await asyncio.to_thread(HeldHistory, migrated_pg_url)
        before = b.written_on_loop
        first = asyncio.create_task(b.submit(batch(300, 1.0)))
        await waiting_on_lock(migrated_pg_url, 1)
        group = [asyncio.create_task(b.submit(batch(i, float(i)))) for i in range(301, 306)]
        await asyncio.sleep(0.05)
        # the loop's store loses its connection mid-write (and the writer thread's: it reconnects)
        assert await asyncio.to_thread(_terminate_others, migrated_pg_url) >= 2
        held.release()
        outcomes = await asyncio.gather(first, *group, return_exceptions=True)
        # the first batch's commit was in flight: its outcome is unknown, so it may fail; it is whole or absent
        assert all(o is None for o in outcomes[1:]), outcomes
        assert await asyncio.to_thread(stored, migrated_pg_url, 300) in ([], [1.0])
        for i in range(301, 306):
            assert await asyncio.to_thread(stored, migrated_pg_url, i) == [float(i)]
        assert b.written_on_loop == before  # the group went to the writer thread, none of it twice
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, reconnected")

    run(b, body)


def test_a_waiter_cancelled_before_its_group_is_written_is_left_out(migrated_pg_url: str) -> None:
    b = Batcher(lambda: open_store(migrated_pg_url), 10_000, writers=1, on_loop=1)

    async def body() -> None:
        await ready(b, migrated_pg_url, 1)
        held = await asyncio.to_thread(HeldHistory, migrated_pg_url)
        first = asyncio.create_task(b.submit(batch(400, 1.0)))
        await waiting_on_lock(migrated_pg_url, 1)
        gone = asyncio.create_task(b.submit(batch(401, 1.0)))
        await asyncio.sleep(0.05)
        gone.cancel()  # its client went away (or timed out) before the loop's store came back
        with pytest.raises(asyncio.CancelledError):
            await gone
        held.release()
        await first
        await until(lambda: b.idle_loop_stores == 1, "the loop's store, idle again")
        assert await asyncio.to_thread(stored, migrated_pg_url, 401) == []
        assert await asyncio.to_thread(stored, migrated_pg_url, 400) == [1.0]

    run(b, body)
