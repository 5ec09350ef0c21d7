"""Partitions made ahead by the housekeeper (never on the write path at midnight), with a lock
time-out; latest() bounded by time and answered for 10,000 items in one query on both stores."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store
from vigil.server.store.base import Retention, Store, WriteBatch

from tests.conftest import wait_until

F, U, S, T, L = ValueType.FLOAT, ValueType.UNSIGNED, ValueType.CHAR, ValueType.TEXT, ValueType.LOG
DAY = 86400
NOW = int(time.time())
TABLES = ("history", "history_uint", "history_str", "history_text", "history_log")


@pytest.fixture
def pg_url(migrated_url: str) -> str:
    if not migrated_url.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")
    return migrated_url


@pytest.fixture
def reader(pg_url: str) -> Iterator:
    """A session that holds a lock on history the way a long report would, until the test ends."""
    import psycopg

    c = psycopg.connect(pg_url)
    try:
        yield c
    finally:
        c.rollback()
        c.close()


def _waiting_on_lock(url: str, pid: int) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_housekeeping_makes_the_partitions_of_the_next_days(pg_url: str) -> None:
    from vigil.server.store.postgres import PARTITIONS_AHEAD_DAYS, PostgresStore, partition_name

    keeper = open_store(pg_url)
    try:
        assert isinstance(keeper, PostgresStore)
        report = keeper.housekeep(NOW, [])  # also with nothing to delete
        today = NOW - NOW % DAY
        wanted = {partition_name(t, today + d * DAY) for t in TABLES for d in range(PARTITIONS_AHEAD_DAYS + 1)}
        assert set(report.partitions_created) == wanted
        assert wanted <= set(keeper.partitions())
        again = keeper.housekeep(NOW, [Retention(1, F, DAY, DAY)])
        assert again.partitions_created == [] and again.partitions_dropped == []
        later = keeper.housekeep(NOW + DAY, [Retention(1, F, DAY, DAY)])
        assert set(later.partitions_created) == {partition_name(t, today + (PARTITIONS_AHEAD_DAYS + 1) * DAY)
                                                 for t in TABLES}
    finally:
        keeper.close()


def test_a_writer_at_midnight_uses_the_partition_made_ahead(pg_url: str, reader) -> None:  # noqa: ANN001
    writer = open_store(pg_url)  # opened before the partitions were made: its list of them is old
    keeper = open_store(pg_url)
    errors: list[BaseException] = []
    done = threading.Event()
    tomorrow = NOW - NOW % DAY + DAY
    try:
        writer.write(WriteBatch(floats=[(1, NOW, 0, 1.0)]))
        keeper.housekeep(NOW, [])
        # A long read of history: creating a partition would wait for it (and stop every writer).
        reader.execute("LOCK TABLE history IN ACCESS SHARE MODE")

        def write() -> None:
            try:
                writer.write(WriteBatch(floats=[(1, tomorrow, 0, 2.0), (1, tomorrow + 1, 0, 3.0)]))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            done.set()

        pid = writer._conn.info.backend_pid  # type: ignore[attr-defined]
        t = threading.Thread(target=write)
        t.start()
        wait_until(lambda: done.is_set() or _waiting_on_lock(pg_url, pid), 30, "the write")
        assert done.is_set(), "the writer waits for a lock: it is creating a partition on the write path"
        t.join(30)
        assert errors == []
        reader.rollback()
        assert [v for _, _, v in writer.history(1, F, tomorrow, tomorrow + 10)] == [2.0, 3.0]
    finally:
        reader.rollback()
        writer.close()
        keeper.close()


def test_making_and_dropping_partitions_give_up_on_a_held_lock(pg_url: str, reader) -> None:  # noqa: ANN001
    from vigil.server.store.postgres import PostgresStore, partition_name

    keeper = open_store(pg_url)
    assert isinstance(keeper, PostgresStore)
    old = NOW - 40 * DAY
    keeper.write(WriteBatch(floats=[(1, old, 0, 1.0)], uints=[(2, old, 0, 1)]))
    keeper.rollup_trends(NOW)
    reader.execute("LOCK TABLE ONLY history IN ACCESS SHARE MODE")
    result: list = []

    def housekeep() -> None:
        try:
            result.append(keeper.housekeep(NOW, [Retention(1, F, DAY, DAY), Retention(2, U, DAY, DAY)]))
        except BaseException as e:  # noqa: BLE001 - reported below
            result.append(e)

    t = threading.Thread(target=housekeep)
    t.start()
    try:
        t.join(60)
        assert not t.is_alive(), "housekeeping waits for the lock instead of timing out"
    finally:
        reader.rollback()
        t.join(30)
    try:
        [report] = result
        assert not isinstance(report, BaseException), report
        today = NOW - NOW % DAY
        assert partition_name("history", today) not in report.partitions_created
        assert partition_name("history_uint", today) in report.partitions_created
        assert partition_name("history_uint", old - old % DAY) in report.partitions_dropped
        assert partition_name("history", old - old % DAY) not in report.partitions_dropped
        assert partition_name("history", old - old % DAY) in keeper.partitions()  # its rows went one by one
        again = keeper.housekeep(NOW, [Retention(1, F, DAY, DAY)])  # the next run, the lock released
        assert partition_name("history", today) in again.partitions_created
        assert again.partitions_dropped == [partition_name("history", old - old % DAY)]
    finally:
        keeper.close()


# -- latest() -------------------------------------------------------------------------------------


def _count_statements(store: Store, call: Callable[[], object]) -> tuple[object, int]:
    """What call() returns and how many SQL statements the store sent for it."""
    if hasattr(store, "_db"):
        seen: list[str] = []
        store._db.set_trace_callback(seen.append)  # type: ignore[attr-defined]
        try:
            out = call()
        finally:
            store._db.set_trace_callback(None)  # type: ignore[attr-defined]
        return out, len(seen)
    pgconn = store._conn.pgconn  # type: ignore[attr-defined]
    with tempfile.NamedTemporaryFile() as f:
        pgconn.trace(f.fileno())
        try:
            out = call()
        finally:
            pgconn.untrace()
        with open(f.name) as r:
            lines = [ln.split("\t") for ln in r.read().splitlines()]
    return out, sum(1 for ln in lines if len(ln) > 3 and ln[1] == "F" and ln[3] in ("Query", "Execute"))


def test_latest_for_10000_items_in_one_query_bounded_by_time(store: Store) -> None:
    base = NOW - 3600
    kinds = [(F, 4000), (U, 2000), (S, 2000), (T, 1000), (L, 1000)]
    batch = WriteBatch()
    wanted: dict[int, ValueType] = {}
    expect: dict[int, tuple] = {}
    itemid = 1
    for vt, n in kinds:
        for _ in range(n):
            newest = (base + itemid % 600, itemid % 7 + 1)
            rows = [(itemid, newest[0] - 5, 0), (itemid, newest[0], newest[1]), (itemid, newest[0], 0)]
            for i, c, ns in rows:
                v: object
                if vt == F:
                    v = itemid + ns / 10
                    batch.floats.append((i, c, ns, v))
                elif vt == U:
                    v = 2**64 - 1 - ns
                    batch.uints.append((i, c, ns, v))
                elif vt == L:
                    v = f"log {i} {ns}"
                    batch.logs.append((i, c, ns, 0, "src", 1, v, 0))
                else:
                    v = f"{vt.name} {i} {ns}"
                    (batch.strs if vt == S else batch.texts).append((i, c, ns, v))
                if (c, ns) == newest:
                    expect[itemid] = (c, ns, v)
            wanted[itemid] = vt
            itemid += 1
    store.write(batch)
    store.maintain(force=True)  # SQLite: half of the values moved from staging into history
    store.write(WriteBatch(floats=[(1, base + 3000, 0, -1.0)], uints=[(4001, base + 3000, 0, 5)]))
    expect[1], expect[4001] = (base + 3000, 0, -1.0), (base + 3000, 0, 5)
    store.write(WriteBatch(floats=[(20_000, NOW - 400 * DAY, 0, 9.0)]))  # a dead item
    wanted |= {20_000: F, 20_001: F, 20_002: S}  # 20_001 and 20_002 have no values
    assert len(wanted) == 10_003
    # PostgreSQL's store looks up which hours are unindexed at most every few seconds (apart from
    # the values' query, which reads those hours once for all items): that look is made here first.
    store.latest({1: F})
    got, statements = _count_statements(store, lambda: store.latest(wanted, since=NOW - DAY))
    assert statements == 1
    assert got == expect
    assert store.latest(wanted)[20_000] == (NOW - 400 * DAY, 0, 9.0)  # no bound: found however old
    assert store.latest({}, since=NOW) == {}
