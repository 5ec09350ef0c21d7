"""PostgreSQL's numeric history by hour (migration 0024): the hours being written have no index, an
hour's index is built once it closed, and reads give the same answers across indexed and unindexed
hours, many items in one query."""

from __future__ import annotations

import time

import psycopg
import pytest
from vigil.server.config.tables import ValueType
from vigil.server.settings import Settings
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch
from vigil.server.store.postgres import INDEX_AFTER, PostgresStore, hour_partition_name

F, U = ValueType.FLOAT, ValueType.UNSIGNED
HOUR = 3600
NOW = int(time.time())
THIS_HOUR = NOW - NOW % HOUR


@pytest.fixture
def pg(migrated_url: str):  # noqa: ANN201
    if not migrated_url.startswith("postgresql"):
        pytest.skip("hour partitions are PostgreSQL's")
    store = open_store(migrated_url)
    assert isinstance(store, PostgresStore)
    try:
        yield store
    finally:
        store.close()


def _indexed(url: str, table: str, hour: int) -> bool:
    with psycopg.connect(url) as c:
        return bool(c.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
                              (hour_partition_name(table, hour),)).fetchone()[0])


def test_the_open_hour_is_unindexed_and_indexed_once_closed(pg: PostgresStore) -> None:
    pg.make_partitions_ahead(NOW)
    pg.write(WriteBatch(floats=[(1, NOW, 0, 1.5)], uints=[(2, NOW, 0, 7)]))
    for table in ("history", "history_uint"):
        assert not _indexed(pg.url, table, THIS_HOUR)
        assert _indexed(pg.url, table, THIS_HOUR - 2 * HOUR) or THIS_HOUR - 2 * HOUR < NOW - NOW % 86400
    assert pg.index_closed_hours(THIS_HOUR + HOUR + INDEX_AFTER - 1) == []  # closed, but not long enough
    done = pg.index_closed_hours(THIS_HOUR + HOUR + INDEX_AFTER)
    assert hour_partition_name("history", THIS_HOUR) in done
    assert hour_partition_name("history_uint", THIS_HOUR) in done
    assert _indexed(pg.url, "history", THIS_HOUR) and _indexed(pg.url, "history_uint", THIS_HOUR)
    assert pg.history(1, F, NOW, NOW) == [(NOW, 0, 1.5)]
    assert pg.index_closed_hours(THIS_HOUR + HOUR + INDEX_AFTER) == []  # nothing left to do


def test_a_late_day_is_made_with_its_closed_hours_indexed(pg: PostgresStore) -> None:
    old = NOW - 5 * 86400
    pg.write(WriteBatch(floats=[(1, old, 0, 2.0)]))
    day = old - old % 86400
    assert all(_indexed(pg.url, "history", day + h * HOUR) for h in range(24))
    assert pg.latest({1: F}) == {1: (old, 0, 2.0)}


def test_reads_agree_across_indexed_and_unindexed_hours(pg: PostgresStore) -> None:
    pg.make_partitions_ahead(NOW)
    older = NOW - 3 * HOUR  # an hour indexed when its partition was made (closed long ago)
    batch = WriteBatch()
    for i in range(1, 201):
        batch.floats.append((i, older, 0, float(i)))
        if i % 2:  # odd items have recent values too, in the hour being written
            batch.floats += [(i, NOW - 1, 5, -float(i)), (i, NOW, 0, -2.0 * i)]
        batch.uints.append((1000 + i, older, 0, 2**64 - i))
    pg.write(batch)
    assert pg._hot_from("history") is not None and pg._hot_from("history") <= THIS_HOUR
    items = {i: F for i in range(1, 201)} | {1000 + i: U for i in range(1, 201)} | {5000: F}
    got = pg.latest(items)
    assert got[1] == (NOW, 0, -2.0) and got[2] == (older, 0, 2.0) and got[1001] == (older, 0, 2**64 - 1)
    assert 5000 not in got and len(got) == 400
    assert pg.latest(items, since=NOW - 60).keys() == {i for i in range(1, 201, 2)}
    windows = {i: (F, older, NOW) for i in range(1, 201)}
    whole = pg.histories(windows)
    assert whole[1] == [(older, 0, 1.0), (NOW - 1, 5, -1.0), (NOW, 0, -2.0)]
    assert whole[2] == [(older, 0, 2.0)]
    assert pg.histories(windows, 2)[3] == [(older, 0, 3.0), (NOW - 1, 5, -3.0)]
    assert pg.histories({3: (F, NOW - 1, NOW)}, 1) == {3: [(NOW - 1, 5, -3.0)]}
    for i in (1, 2, 3):
        assert pg.history(i, F, older, NOW) == whole[i]
    # The same answers once every hour is indexed.
    pg.index_closed_hours(NOW + 2 * HOUR + INDEX_AFTER)
    pg._hot_checked = -1e9
    assert pg.latest(items) == got
    assert pg.histories(windows) == whole


def test_trends_of_an_hour_partition(pg: PostgresStore) -> None:
    hour = THIS_HOUR - 2 * HOUR
    pg.write(WriteBatch(floats=[(1, hour + 10, 0, 1.0), (1, hour + 20, 0, 3.0), (1, hour + HOUR, 0, 9.0)],
                        uints=[(2, hour + 5, 0, 2**64 - 1), (2, hour + 6, 0, 2**64 - 3)]))
    pg.rollup_trends(NOW)
    (t,) = pg.trends(1, F, hour, hour)
    assert (t.num, t.min, t.avg, t.max) == (2, 1.0, 2.0, 3.0)
    (u,) = pg.trends(2, U, hour, hour)
    assert (u.num, u.min, u.avg, u.max) == (2, 2**64 - 3, 2**64 - 2, 2**64 - 1)


def test_without_defer_index_every_hour_is_indexed(pg: PostgresStore, migrated_url: str) -> None:
    pg.make_partitions_ahead(NOW)  # deferred: the open hour has no index
    pg.write(WriteBatch(floats=[(1, NOW, 0, 1.5)]))
    assert not _indexed(pg.url, "history", THIS_HOUR)
    s = Settings.from_env({"VIGIL_DATABASE_URL": migrated_url, "VIGIL_PG_DEFER_INDEX": "0"})
    eager = open_store(s.database_url, s.pg_timeouts, s.pg_defer_index)
    assert isinstance(eager, PostgresStore) and not eager.defer_index
    try:
        eager.rollup_trends(NOW)  # the open hours made before are indexed at its first roll-up
        assert _indexed(pg.url, "history", THIS_HOUR) and _indexed(pg.url, "history_uint", THIS_HOUR + HOUR)
        assert eager._hot_from("history") is None
        later = NOW + 20 * 86400  # a day it makes itself comes with every hour indexed, the open ones too
        eager.write(WriteBatch(floats=[(1, later, 0, 2.5)]))
        assert _indexed(pg.url, "history", later - later % HOUR)
        assert eager.latest({1: F}) == {1: (later, 0, 2.5)}
        assert eager.history(1, F, NOW, later) == [(NOW, 0, 1.5), (later, 0, 2.5)]
    finally:
        eager.close()
    with pytest.raises(ValueError, match="VIGIL_PG_DEFER_INDEX"):
        Settings.from_env({"VIGIL_PG_DEFER_INDEX": "2"})
