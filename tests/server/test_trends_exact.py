"""Trends that hold whatever the values (±1e308, sums past the float range, subnormals), late values
merged into hours whose history is gone, and a roll-up that writers never wait behind. Both stores."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store, rollup
from vigil.server.store.base import Retention, Store, WriteBatch

from tests.conftest import VigilServer, wait_until

F, U = ValueType.FLOAT, ValueType.UNSIGNED
DAY = 86400
HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % DAY + 3 * HOUR  # 03:00 UTC on some day
END = 2**31 - 1
MAX = 1.7976931348623157e308
TINY = 5e-324

EXTREME: dict[int, list[float]] = {
    1: [1e308, 1e308],  # the sum is past the float range
    2: [-1e308, -1e308, 1e308],
    3: [1e308, -1e308, 1e308, -1e308],
    4: [MAX, MAX, MAX],
    5: [TINY, TINY],
    6: [TINY, 0.0, 0.0],
    7: [2.2250738585072014e-308, 1e-320, -3e-310],
    8: [1.0, 2.0, 4.0],  # an ordinary item in the same hour
    9: [1e308, 1.0, -2.5, 1e-300],
    10: [-MAX, MAX],
}


def _exact_mean(values: list[float]) -> float:
    return float(sum(Fraction(v) for v in values) / len(values))


def _check_trend(got: tuple, values: list[float]) -> None:
    num, lo, avg, hi = got
    assert (num, lo, hi) == (len(values), min(values), max(values))
    assert math.isfinite(avg) and lo <= avg <= hi
    assert math.isclose(avg, _exact_mean(values), rel_tol=1e-12, abs_tol=TINY), (values, avg)


def _trends(store: Store, itemid: int, vt: ValueType = F) -> dict[int, tuple]:
    return {t.clock: (t.num, t.min, t.avg, t.max) for t in store.trends(itemid, vt, 0, END)}


def test_trend_maths_without_overflow() -> None:
    for values in EXTREME.values():
        agg = rollup.Aggregate.of(values)
        assert agg is not None
        _check_trend((agg.num, agg.min, agg.avg_float(), agg.max), values)
    assert rollup.merge_trends((2, 1e308, 1e308, 1e308), (1, 1e308, 1e308, 1e308)) == (3, 1e308, 1e308, 1e308)
    assert rollup.merge_trends((1, -MAX, -MAX, -MAX), (1, MAX, MAX, MAX)) == (2, -MAX, 0.0, MAX)
    assert rollup.merge_trends((3, TINY, TINY, TINY), (1, TINY, TINY, TINY)) == (4, TINY, TINY, TINY)
    late = rollup.Aggregate.of([2**64 - 1, 2**64 - 1])
    assert late is not None
    assert rollup.merge_uint_trend((2, 2**64 - 2, 2**64 - 2, 2**64 - 2), late) == (4, 2**64 - 2, 2**64 - 2, 2**64 - 1)
    with pytest.raises(ValueError, match="no values"):
        rollup.float_mean(0, 0.0, 0.0, 0.0, 0.0)


def test_extreme_floats_roll_up_on_both_stores(store: Store) -> None:
    batch = WriteBatch()
    for item, values in EXTREME.items():
        batch.floats += [(item, T0 + k, 0, v) for k, v in enumerate(values)]
    batch.uints += [(20, T0, 0, 2**64 - 1), (20, T0 + 1, 0, 2**64 - 2), (20, T0 + 2, 0, 2**64 - 2)]
    store.write(batch)
    assert store.rollup_trends(T0 + 2 * HOUR) == 1
    for item, values in EXTREME.items():
        _check_trend(_trends(store, item)[T0], values)
    assert _trends(store, 8)[T0] == (3, 1.0, 7 / 3, 4.0)  # ordinary values: the plain mean
    assert _trends(store, 4)[T0] == (3, MAX, MAX, MAX)
    assert _trends(store, 5)[T0] == (2, TINY, TINY, TINY)
    assert _trends(store, 20, U)[T0] == (3, 2**64 - 2, (3 * 2**64 - 5) // 3, 2**64 - 1)  # exact, rounded down
    assert store.rollup_trends(T0 + 2 * HOUR) == 0


def test_history_trends_cli_shows_extreme_values(tmp_path: Path, database_url: str) -> None:
    server = VigilServer(tmp_path, database_url)
    server.cli("db", "upgrade")
    server.import_yaml("hosts:\n  - host: big\n    items:\n      - {key: huge, type: trapper, value_type: float}\n")
    from vigil.server.config.migrate import engine_for
    from vigil.server.config.repo import ConfigRepo

    engine = engine_for(database_url)
    try:
        found = ConfigRepo(engine).item("big", "huge")
    finally:
        engine.dispose()
    assert found is not None
    itemid = found[0]
    s = open_store(database_url)
    try:
        s.write(WriteBatch(floats=[(itemid, T0, 0, 1e308), (itemid, T0 + 1, 0, 1e308),
                                   (itemid, T0 + HOUR, 0, TINY), (itemid, T0 + HOUR + 1, 0, TINY)]))
    finally:
        s.close()
    r = server.cli("history", "big", "huge", "--trends", "--from", "0", "--to", str(END), check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.splitlines() == [f"{T0}\t2\t1e+308\t1e+308\t1e+308", f"{T0 + HOUR}\t2\t5e-324\t5e-324\t5e-324"]


# -- late values ----------------------------------------------------------------------------------


def test_a_late_value_past_retention_merges_into_its_trend(store: Store) -> None:
    now = T0 + 10 * DAY
    old = T0  # an hour whose history the housekeeper removes
    recent = now - 2 * HOUR - (now % HOUR)
    store.write(WriteBatch(
        floats=[(1, old + k, 0, float(k)) for k in range(10)] + [(2, old, 0, 7.0), (1, recent, 0, 3.0)],
        uints=[(11, old + k, 0, 2**64 - 1 - k) for k in range(4)]))
    store.rollup_trends(now)
    retention = [Retention(1, F, DAY, 30 * DAY), Retention(2, F, DAY, 30 * DAY), Retention(11, U, DAY, 30 * DAY)]
    store.housekeep(now, retention)
    assert store.history(1, F, old, old + HOUR) == [] and store.history(11, U, old, old + HOUR) == []
    before = _trends(store, 1)[old]
    assert before == (10, 0.0, 4.5, 9.0)
    # Late values for the housekept hour: they join the trend instead of replacing or deleting it.
    store.write(WriteBatch(floats=[(1, old + 100, 0, 100.0)], uints=[(11, old + 5, 0, 0)]))
    store.rollup_trends(now)
    assert _trends(store, 1)[old] == (11, 0.0, pytest.approx(145 / 11), 100.0)
    assert _trends(store, 2)[old] == (1, 7.0, 7.0, 7.0)  # another item's trend of that hour is kept
    u_avg = ((2**64 - 1) * 4 - 6) // 4 * 4 // 5  # the stored average times the count, plus the late 0, over 5
    assert _trends(store, 11, U)[old] == (5, 0, u_avg, 2**64 - 1)
    # Rolling up again (the hour marked again by another late value) counts each value once.
    store.write(WriteBatch(floats=[(1, old + 200, 0, -1.0)]))
    store.rollup_trends(now)
    store.rollup_trends(now)
    assert _trends(store, 1)[old][:2] == (12, -1.0)
    assert _trends(store, 1)[old][2] == pytest.approx(144 / 12)
    # An hour whose history is intact is still recomputed from it, exactly, however often.
    store.write(WriteBatch(floats=[(1, recent + 1, 0, 5.0)]))
    store.rollup_trends(now)
    store.rollup_trends(now)
    assert _trends(store, 1)[recent] == (2, 3.0, 4.0, 5.0)
    store.housekeep(now, retention)
    assert _trends(store, 1)[old][0] == 12


def test_a_late_value_into_a_dropped_partition_merges(migrated_url: str, store: Store) -> None:
    if not migrated_url.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")
    now = T0 + 10 * DAY
    store.write(WriteBatch(floats=[(1, T0, 0, 1.0), (1, T0 + 1, 0, 3.0), (2, T0, 0, 8.0)]))
    store.rollup_trends(now)
    report = store.housekeep(now, [Retention(1, F, DAY, 30 * DAY), Retention(2, F, DAY, 30 * DAY)])
    from vigil.server.store.postgres import PostgresStore, partition_name

    assert partition_name("history", T0 - T0 % DAY) in report.partitions_dropped
    assert _trends(store, 1)[T0] == (2, 1.0, 2.0, 3.0)
    writer = open_store(migrated_url)
    try:
        writer.write(WriteBatch(floats=[(1, T0 + 2, 0, 5.0)]))  # recreates the dropped partition
    finally:
        writer.close()
    store.rollup_trends(now)
    assert _trends(store, 1)[T0] == (3, 1.0, pytest.approx(3.0), 5.0)
    assert _trends(store, 2)[T0] == (1, 8.0, 8.0, 8.0)
    store.rollup_trends(now)
    assert _trends(store, 1)[T0] == (3, 1.0, pytest.approx(3.0), 5.0)
    assert isinstance(store, PostgresStore)


def test_housekeeping_keeps_history_not_yet_in_the_trends(store: Store, migrated_url: str) -> None:
    now = T0 + 10 * DAY
    store.write(WriteBatch(floats=[(1, T0, 0, 1.0), (1, T0 + DAY, 0, 2.0), (2, T0 + DAY, 0, 4.0)]))
    report = store.housekeep(now, [Retention(1, F, DAY, 30 * DAY), Retention(2, F, DAY, 30 * DAY)])
    assert report.history_rows == 0 and report.partitions_dropped == []  # not rolled up yet: kept
    assert len(store.history(1, F, 0, END)) == 2
    store.rollup_trends(now)
    report = store.housekeep(now, [Retention(1, F, DAY, 30 * DAY), Retention(2, F, DAY, 30 * DAY)])
    assert store.history(1, F, 0, END) == [] and store.history(2, F, 0, END) == []
    if migrated_url.startswith("postgresql"):
        assert len(report.partitions_dropped) == 2
    assert [t[:2] for t in _trends(store, 1).values()] == [(1, 1.0), (1, 2.0)]
    assert _trends(store, 2)[T0 + DAY] == (1, 4.0, 4.0, 4.0)


def test_an_hour_left_claimed_by_a_failed_rollup_is_finished_by_the_next(store: Store, migrated_url: str) -> None:
    store.write(WriteBatch(floats=[(1, T0, 0, 1.0), (1, T0 + 1, 0, 3.0)]))
    store.rollup_trends(T0 + HOUR)
    import sqlalchemy as sa
    from vigil.server.config.migrate import engine_for

    engine = engine_for(migrated_url)
    try:
        with engine.begin() as c:  # as a roll-up that died after clearing the mark leaves it
            c.execute(sa.text("DELETE FROM trends"))
            c.execute(sa.text("INSERT INTO trend_rollup (hour, token) VALUES (:h, 12345)"), {"h": T0})
    finally:
        engine.dispose()
    assert store.rollup_trends(T0 + 2 * HOUR) == 1
    assert _trends(store, 1)[T0] == (2, 1.0, 2.0, 3.0)
    assert store.rollup_trends(T0 + 2 * HOUR) == 0


# -- a writer during a slow roll-up ---------------------------------------------------------------


def _pg_waiting_on_lock(url: str, pid: int) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_a_writer_is_not_blocked_by_a_slow_rollup(migrated_url: str) -> None:
    writer, roller = open_store(migrated_url), open_store(migrated_url)
    errors: list[BaseException] = []
    writer.write(WriteBatch(floats=[(1, T0 + k, 0, float(k % 100)) for k in range(3000)]))
    release = threading.Event()
    paused = threading.Event()
    holder = None
    if migrated_url.startswith("postgresql"):
        import psycopg

        # Another session holds the trends table: the roll-up stalls once it writes trends.
        holder = psycopg.connect(migrated_url)
        holder.execute("LOCK TABLE trends IN EXCLUSIVE MODE")
        roller_pid = roller._conn.info.backend_pid  # type: ignore[attr-defined]
        writer_pid = writer._conn.info.backend_pid  # type: ignore[attr-defined]
        is_paused: Callable[[], bool] = lambda: _pg_waiting_on_lock(migrated_url, roller_pid)  # noqa: E731
    else:
        calls = 0

        def progress() -> int:
            # Stall the roll-up's connection part-way through the statement that reads the hour.
            nonlocal calls
            calls += 1
            if calls == 40:
                paused.set()
                release.wait(60)
            return 0

        roller._db.set_progress_handler(progress, 1000)  # type: ignore[attr-defined]
        is_paused = paused.is_set

    def roll() -> None:
        try:
            roller.rollup_trends(T0 + 10 * HOUR)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    rolling = threading.Thread(target=roll)
    rolling.start()
    try:
        wait_until(lambda: is_paused() or not rolling.is_alive(), 30, "the roll-up to stall")
        assert rolling.is_alive(), "the roll-up finished before it could be stalled"
        if holder is None:
            probe = sqlite3.connect(migrated_url[len("sqlite:///"):], timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")  # fails at once if the roll-up holds the write lock
                probe.execute("ROLLBACK")
            finally:
                probe.close()
            writer.write(WriteBatch(floats=[(1, T0 + 3500, 0, 1000.0)]))
        else:
            done = threading.Event()

            def write() -> None:
                try:
                    writer.write(WriteBatch(floats=[(1, T0 + 3500, 0, 1000.0)]))
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                done.set()

            w = threading.Thread(target=write)
            w.start()
            wait_until(lambda: done.is_set() or _pg_waiting_on_lock(migrated_url, writer_pid), 30, "the write")
            assert done.is_set(), "the writer waits on a lock held by the roll-up"
            w.join(30)
        assert rolling.is_alive()
    finally:
        release.set()
        if holder is not None:
            holder.rollback()
            holder.close()
        rolling.join(60)
    try:
        assert errors == []
        roller.rollup_trends(T0 + 10 * HOUR)
        [trend] = roller.trends(1, F, 0, END)
        assert (trend.num, trend.min, trend.max) == (3001, 0.0, 1000.0)
    finally:
        writer.close()
        roller.close()


def test_two_rollups_of_one_hour_keep_the_newer_result(migrated_url: str) -> None:
    """A roll-up stalled part-way while another does the same hour over: the trend is the newer one's."""
    writer, first, second = open_store(migrated_url), open_store(migrated_url), open_store(migrated_url)
    writer.write(WriteBatch(floats=[(1, T0 + k, 0, 1.0) for k in range(3000)]))
    errors: list[BaseException] = []
    release, paused = threading.Event(), threading.Event()
    holder = None
    if migrated_url.startswith("postgresql"):
        import psycopg

        holder = psycopg.connect(migrated_url)
        holder.execute("LOCK TABLE trends IN EXCLUSIVE MODE")
        first_pid = first._conn.info.backend_pid  # type: ignore[attr-defined]
        is_paused: Callable[[], bool] = lambda: _pg_waiting_on_lock(migrated_url, first_pid)  # noqa: E731
    else:
        calls = 0

        def progress() -> int:
            nonlocal calls
            calls += 1
            if calls == 40:
                paused.set()
                release.wait(60)
            return 0

        first._db.set_progress_handler(progress, 1000)  # type: ignore[attr-defined]
        is_paused = paused.is_set

    def roll(store: Store) -> None:
        try:
            store.rollup_trends(T0 + 10 * HOUR)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    a = threading.Thread(target=roll, args=(first,))
    a.start()
    b = threading.Thread(target=roll, args=(second,))
    try:
        wait_until(lambda: is_paused() or not a.is_alive(), 30, "the first roll-up to stall")
        assert a.is_alive()
        writer.write(WriteBatch(floats=[(1, T0 + 3500, 0, 50.0)]))  # after the first one read the hour
        b.start()
        if holder is None:
            b.join(60)  # SQLite: the second one does the hour over while the first is stalled
            assert not b.is_alive()
        else:
            second_pid = second._conn.info.backend_pid  # type: ignore[attr-defined]
            wait_until(lambda: not b.is_alive() or _pg_waiting_on_lock(migrated_url, second_pid), 30,
                       "the second roll-up")
    finally:
        release.set()
        if holder is not None:
            holder.rollback()
            holder.close()
        a.join(60)
        if b.ident is not None:
            b.join(60)
    try:
        assert errors == []
        [trend] = writer.trends(1, F, 0, END)
        assert (trend.num, trend.max) == (3001, 50.0)
    finally:
        for s in (writer, first, second):
            s.close()
