"""SQLite's staged numeric history: committed values are readable, rolled up and housekept wherever
they are (staging table or history), and moving them changes nothing a reader sees.

PostgreSQL has no staging; the roll-up tests at the end run on both backends because the roll-up
no longer has an index on clock alone to read an hour by (migration 0003).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store, sqlite
from vigil.server.store.base import Retention, Store, StoreError, WriteBatch

F, U = ValueType.FLOAT, ValueType.UNSIGNED
DAY = 86400
T0 = 1_700_000_000 - 1_700_000_000 % DAY + 3 * 3600  # 03:00 UTC on some day
END = 2**31 - 1


@pytest.fixture
def lite(migrated_url: str) -> Iterator[sqlite.SQLiteStore]:
    if not migrated_url.startswith("sqlite"):
        pytest.skip("staging is SQLite's")
    s = open_store(migrated_url)
    assert isinstance(s, sqlite.SQLiteStore)
    try:
        yield s
    finally:
        s.close()


def _rows(s: sqlite.SQLiteStore, table: str) -> int:
    return s._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_values_are_staged_then_moved_and_read_the_same(lite: sqlite.SQLiteStore) -> None:
    lite.write(WriteBatch(floats=[(1, T0 + k, 0, float(k)) for k in range(0, 10, 2)],
                          uints=[(2, T0 + k, 0, 2**64 - 1 - k) for k in range(3)]))
    assert (_rows(lite, "history_stage"), _rows(lite, "history")) == (5, 0)
    lite.move_staged()
    assert (_rows(lite, "history_stage"), _rows(lite, "history_uint_stage"), _rows(lite, "history")) == (0, 0, 5)
    lite.write(WriteBatch(floats=[(1, T0 + k, 0, float(k)) for k in range(1, 10, 2)]))
    # Half of item 1's values are in history, half staged: one ordered series, limit applied after merging.
    assert lite.history(1, F, 0, END) == [(T0 + k, 0, float(k)) for k in range(10)]
    assert lite.history(1, F, T0 + 3, T0 + 6, limit=3) == [(T0 + k, 0, float(k)) for k in (3, 4, 5)]
    assert lite.history(2, U, 0, END) == [(T0 + k, 0, 2**64 - 1 - k) for k in range(3)]
    assert lite.latest({1: F, 2: U}) == {1: (T0 + 9, 0, 9.0), 2: (T0 + 2, 0, 2**64 - 3)}


def test_latest_takes_the_newer_of_history_and_staging(lite: sqlite.SQLiteStore) -> None:
    lite.write(WriteBatch(floats=[(1, T0 + 100, 0, 1.0), (2, T0, 5, 2.0)]))
    lite.move_staged()
    # Item 1 gets an older value staged (a late sender), item 2 a newer one in the same second.
    lite.write(WriteBatch(floats=[(1, T0 + 50, 0, 9.0), (2, T0, 6, 3.0), (3, T0, 0, 4.0)]))
    assert lite.latest({1: F, 2: F, 3: F, 4: F}) == {1: (T0 + 100, 0, 1.0), 2: (T0, 6, 3.0), 3: (T0, 0, 4.0)}


def test_maintain_moves_at_the_threshold_or_once_values_waited(lite: sqlite.SQLiteStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "STAGE_MOVE_ROWS", 10)
    monkeypatch.setattr(sqlite, "STAGE_MAX_AGE", 3600.0)
    lite.write(WriteBatch(floats=[(1, T0 + k, 0, 1.0) for k in range(9)]))
    lite.maintain()
    assert _rows(lite, "history_stage") == 9
    lite.write(WriteBatch(uints=[(2, T0, 0, 7)]))
    lite.maintain()
    assert (_rows(lite, "history_stage"), _rows(lite, "history_uint_stage"), _rows(lite, "history")) == (0, 0, 9)
    monkeypatch.setattr(sqlite, "STAGE_MAX_AGE", 0.0)
    lite.write(WriteBatch(floats=[(1, T0 + 100, 0, 1.0)]))
    lite.maintain()
    assert (_rows(lite, "history_stage"), _rows(lite, "history")) == (0, 10)


def test_a_store_moves_what_another_process_staged(lite: sqlite.SQLiteStore, migrated_url: str) -> None:
    other = open_store(migrated_url)
    try:
        other.write(WriteBatch(floats=[(1, T0, 0, 1.0)]))
    finally:
        other.close()
    fresh = open_store(migrated_url)
    try:
        assert isinstance(fresh, sqlite.SQLiteStore)
        assert fresh._staged == 1  # counted on opening, so the age rule moves it
        fresh.move_staged()
    finally:
        fresh.close()
    assert (_rows(lite, "history_stage"), _rows(lite, "history")) == (0, 1)


def test_a_bad_value_fails_its_batch_before_staging(lite: sqlite.SQLiteStore) -> None:
    # The staging tables carry history's CHECKs: a move can never fail on a row that got in.
    with pytest.raises(StoreError, match="nothing was stored"):
        lite.write(WriteBatch(floats=[(1, T0, 0, 1.0), (1, T0 + 1, 0, float("inf"))]))
    with pytest.raises(sqlite3.IntegrityError):
        lite._db.execute("INSERT INTO history_uint_stage VALUES (1, 1, 0, 1.5)")
    assert _rows(lite, "history_stage") == 0


def test_a_failed_move_keeps_the_values_staged_and_readable(lite: sqlite.SQLiteStore, migrated_url: str) -> None:
    lite.write(WriteBatch(floats=[(1, T0, 0, 1.0)]))
    blocker = sqlite3.connect(migrated_url[len("sqlite:///"):], isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    lite._db.execute("PRAGMA busy_timeout=50")
    try:
        with pytest.raises(StoreError, match="stay staged"):
            lite.move_staged()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert lite.history(1, F, 0, END) == [(T0, 0, 1.0)]
    lite.move_staged()
    assert lite.history(1, F, 0, END) == [(T0, 0, 1.0)]


def test_housekeeping_deletes_old_staged_values(lite: sqlite.SQLiteStore) -> None:
    lite.write(WriteBatch(floats=[(1, T0 - 10 * DAY, 0, 1.0), (1, T0, 0, 2.0)]))
    lite.rollup_trends(T0)  # history goes only once it is in the trends
    report = lite.housekeep(T0, [Retention(1, F, 7 * DAY, 0)])
    assert report.history_rows == 1
    assert lite.history(1, F, 0, END) == [(T0, 0, 2.0)]


def test_rollup_counts_values_in_history_and_staged(store: Store) -> None:
    """On SQLite half the hour is moved into history first; on PostgreSQL it is one partition."""
    hour = T0 - T0 % 3600
    store.write(WriteBatch(floats=[(i, hour + k, 0, float(k)) for i in (1, 2) for k in range(10)],
                           uints=[(3, hour + k, 0, 2**64 - 1 - k) for k in range(4)]))
    if isinstance(store, sqlite.SQLiteStore):
        store.move_staged()
    store.write(WriteBatch(floats=[(1, hour + 3599, 0, 100.0), (1, hour + 3600, 0, -5.0)],
                           uints=[(3, hour + 10, 0, 0)]))
    assert store.rollup_trends(hour + 2 * 3600 + 1) == 2
    [t1] = store.trends(1, F, hour, hour)
    assert (t1.num, t1.min, t1.max) == (11, 0.0, 100.0)
    [t2] = store.trends(2, F, hour, hour)
    assert (t2.num, t2.min, t2.max) == (10, 0.0, 9.0)
    [t3] = store.trends(3, U, hour, hour)
    assert (t3.num, t3.min, t3.max) == (5, 0, 2**64 - 1)
    assert [t.num for t in store.trends(1, F, hour + 3600, hour + 3600)] == [1]
    # An item whose values are all in other hours gets no trend for this one.
    store.write(WriteBatch(floats=[(4, hour + 7200, 0, 1.0)]))
    store.rollup_trends(hour + 4 * 3600)
    assert store.trends(4, F, hour, hour) == []
