"""The store seam: the same assertions on SQLite and PostgreSQL (the migrated_url fixture runs both)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store
from vigil.server.store.base import LogEntry, Retention, Store, StoreError, WriteBatch

F, U, S, T, L = ValueType.FLOAT, ValueType.UNSIGNED, ValueType.CHAR, ValueType.TEXT, ValueType.LOG
DAY = 86400
T0 = 1_700_000_000 - 1_700_000_000 % DAY + 3 * 3600  # 03:00 UTC on some day
END = 2**31 - 1
ROOT = Path(__file__).resolve().parents[2]


def _count(url: str, table: str) -> int:
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return int(c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _dirty_hours(url: str) -> list[int]:
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return [r[0] for r in c.execute(sa.text("SELECT hour FROM trend_dirty ORDER BY hour"))]
    finally:
        engine.dispose()


# -- round trips ----------------------------------------------------------------------------------


def test_every_value_type_round_trips(store: Store) -> None:
    strs = ["plain", "tab\there", "back\\slash", "new\nline\r\n", "ünïcødé ✓", "x" * 255, ""]
    text = "big text\t\\ with specials\n" * 3000
    uints = [0, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1]
    store.write(WriteBatch(
        floats=[(1, T0, 0, -1.5), (1, T0 + 1, 0, 1e300), (1, T0 + 2, 0, 0.1), (1, T0 + 3, 0, 7)],
        uints=[(2, T0 + k, 0, v) for k, v in enumerate(uints)],
        strs=[(3, T0 + k, 0, v) for k, v in enumerate(strs)],
        texts=[(4, T0, 0, text)],
        logs=[(5, T0, 9, 1_699_999_999, "Application", 4, "disk\tfull\\n", 1001),
              (5, T0 + 1, 0, 0, "", 0, "", 0)],
    ))
    assert store.history(1, F, 0, END) == [(T0, 0, -1.5), (T0 + 1, 0, 1e300), (T0 + 2, 0, 0.1), (T0 + 3, 0, 7.0)]
    assert [v for _, _, v in store.history(2, U, 0, END)] == uints
    assert [v for _, _, v in store.history(3, S, 0, END)] == strs
    assert store.history(4, T, 0, END) == [(T0, 0, text)]
    assert store.history(5, L, 0, END) == [(T0, 9, "disk\tfull\\n"), (T0 + 1, 0, "")]
    assert store.log_history(5, 0, END) == [
        LogEntry(T0, 9, 1_699_999_999, "Application", 4, "disk\tfull\\n", 1001),
        LogEntry(T0 + 1, 0, 0, "", 0, "", 0),
    ]
    # a type holds only its own item's values
    assert store.history(1, U, 0, END) == []


def test_a_batch_of_several_megabytes_is_stored_whole(store: Store) -> None:
    # PostgreSQL hands COPY data to libpq 1 MiB at a time: ~4.6 MB of floats, ~1.3 MB of text
    floats = [(1 + k % 50, T0 + k // 50, k % 50, k + 0.5) for k in range(120_000)]
    texts = [(4, T0 + k, 0, f"{k}:" + "t\tx" * 16_000) for k in range(20)]
    store.write(WriteBatch(floats=floats, texts=texts))
    assert sum(len(store.history(i, F, 0, END)) for i in range(1, 51)) == 120_000
    assert store.history(7, F, 0, END)[-1] == floats[-44][1:]
    assert store.history(4, T, 0, END) == [r[1:] for r in texts]


def test_order_is_clock_then_ns_and_bounds_are_inclusive(store: Store) -> None:
    rows = [(7, T0 + c, ns, float(c * 10 + ns % 7)) for c in range(5) for ns in (999_999_999, 0, 500)]
    random.Random(1).shuffle(rows)
    store.write(WriteBatch(floats=rows))
    got = store.history(7, F, T0 + 1, T0 + 3)
    assert [(c, n) for c, n, _ in got] == [(T0 + c, ns) for c in (1, 2, 3) for ns in (0, 500, 999_999_999)]
    assert store.history(7, F, T0 + 1, T0 + 3, limit=4) == got[:4]
    assert store.history(7, F, T0 + 4, T0 + 4, limit=0) == []
    assert store.history(7, F, T0 + 5, END) == []
    with pytest.raises(StoreError, match="limit"):
        store.history(7, F, 0, END, limit=-1)
    with pytest.raises(StoreError, match="value_type"):
        store.history(7, 9, 0, END)  # type: ignore[arg-type]


def test_latest_for_many_items_at_once(store: Store) -> None:
    batch = WriteBatch()
    for item in range(100, 160):
        for k in range(3):
            batch.floats.append((item, T0 + k, 5 - k, item + k / 10))
    batch.floats.append((100, T0 + 2, 999, -1.0))  # same clock as the newest, later ns: this one wins
    batch.uints.append((200, T0, 0, 2**64 - 1))
    batch.strs.append((300, T0 + 5, 0, "s"))
    batch.texts.append((400, T0 + 5, 0, "t"))
    batch.logs.append((500, T0 + 5, 0, 0, "src", 1, "log line", 0))
    store.write(batch)
    store.write(WriteBatch(floats=[(101, T0 - 100, 0, 42.0)]))  # older value written later
    wanted: dict[int, ValueType] = {i: F for i in range(100, 170)}  # 160-169 have nothing
    wanted |= {200: U, 201: U, 300: S, 400: T, 500: L}
    got = store.latest(wanted)
    assert set(got) == set(range(100, 160)) | {200, 300, 400, 500}
    assert got[100] == (T0 + 2, 999, -1.0)
    assert got[101] == (T0 + 2, 3, 101.2)
    assert got[200] == (T0, 0, 2**64 - 1)
    assert got[300] == (T0 + 5, 0, "s") and got[400] == (T0 + 5, 0, "t") and got[500] == (T0 + 5, 0, "log line")
    assert store.latest({}) == {}


# -- failures store nothing -----------------------------------------------------------------------


def _good_part(sessions: dict[str, int] | None = None) -> WriteBatch:
    return WriteBatch(floats=[(1, T0, 0, 1.0)], uints=[(2, T0, 0, 5)], strs=[(3, T0, 0, "ok")],
                      texts=[(4, T0, 0, "ok")], logs=[(5, T0, 0, 0, "", 0, "ok", 0)],
                      sessions={"sess": 10} if sessions is None else sessions)


@pytest.mark.parametrize("bad, match", [
    (WriteBatch(strs=[(3, T0, 1, "x" * 256)]), "history_str"),
    (WriteBatch(floats=[(1, T0, 1, float("nan"))]), "history"),
    (WriteBatch(floats=[(1, T0, 1, float("inf"))]), "history"),
    (WriteBatch(floats=[(1, T0, 1, "abc")]), "history"),  # type: ignore[list-item]
    (WriteBatch(uints=[(2, T0, 1, -1)]), "history_uint"),
    (WriteBatch(uints=[(2, T0, 1, 2**64)]), "history_uint"),
    (WriteBatch(uints=[(2, T0, 1, "7")]), "history_uint"),  # type: ignore[list-item]
    (WriteBatch(floats=[(1, -5, 0, 1.0)]), "clock -5"),
    (WriteBatch(texts=[(4, 2**31, 0, "late")]), "clock 2147483648"),
    (WriteBatch(logs=[(5, T0, 1, 0, "s" * 65, 0, "line", 0)]), "history_log"),
])
# Without sessions or log positions PostgreSQL writes the batch as one query (COPYs and COMMIT in it).
@pytest.mark.parametrize("sessions", [None, {}], ids=["with-sessions", "values-only"])
def test_a_bad_row_fails_the_whole_batch(store: Store, migrated_url: str, bad: WriteBatch, match: str,
                                         sessions: dict[str, int] | None) -> None:
    batch = _good_part(sessions)
    batch.extend(bad)
    with pytest.raises(StoreError, match=match):
        store.write(batch)
    for table in ("history", "history_uint", "history_str", "history_text", "history_log", "agent_sessions",
                  "trend_dirty"):
        assert _count(migrated_url, table) == 0, table
    store.write(_good_part(sessions))  # the store is usable afterwards
    assert store.history(3, S, 0, END) == [(T0, 0, "ok")]
    assert store.history(1, F, 0, END) == [(T0, 0, 1.0)]
    assert store.log_history(5, 0, END) == [LogEntry(T0, 0, 0, "", 0, "ok", 0)]
    assert store.sessions() == ({"sess": 10} if sessions is None else {})


def test_open_store_rejects_bad_urls_and_unmigrated_databases(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="mysql"):
        open_store("mysql://localhost/db")
    with pytest.raises(StoreError, match="no database"):
        open_store(f"sqlite:///{tmp_path / 'missing.db'}")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreError, match="not a migrated"):
        open_store(f"sqlite:///{tmp_path / 'empty.db'}")


# -- sessions and log positions -------------------------------------------------------------------


def test_sessions_keep_the_highest_id(store: Store) -> None:
    store.write(WriteBatch(sessions={"a": 5, "b": 1}))
    store.write(WriteBatch(floats=[(1, T0, 0, 1.0)], sessions={"a": 3}))
    store.write(WriteBatch(sessions={"b": 9}))
    assert store.sessions() == {"a": 5, "b": 9}


def test_log_positions_upserted_for_known_items_only(store: Store, migrated_url: str) -> None:
    engine = engine_for(migrated_url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO hosts (hostid, host) VALUES (1, 'h')"))
        c.execute(sa.text("INSERT INTO items (itemid, hostid, key_, type, value_type) "
                          "VALUES (10, 1, 'log[/var/log/x]', 7, 2)"))
    engine.dispose()
    store.write(WriteBatch(logs=[(10, T0, 0, 0, "", 0, "a", 0)], logpos={10: (100, 5), 99: (1, 1)}))
    store.write(WriteBatch(logpos={10: (2**40, 6)}))
    assert store.log_positions() == {10: (2**40, 6)}
    assert store.history(10, L, 0, END) == [(T0, 0, "a")]


# -- trends ---------------------------------------------------------------------------------------


def _expected(values: dict[tuple[int, int], list[float]], uint: bool = False) -> dict:
    out = {}
    for (item, hour), vs in values.items():
        avg = sum(vs) // len(vs) if uint else sum(vs) / len(vs)
        out[(item, hour)] = (len(vs), min(vs), avg, max(vs))
    return out


def _trends(store: Store, items: list[int], vt: ValueType) -> dict:
    return {(i, t.clock): (t.num, t.min, t.avg, t.max) for i in items for t in store.trends(i, vt, 0, END)}


def test_rollup_matches_python_and_is_idempotent(store: Store, migrated_url: str) -> None:
    rnd = random.Random(7)
    floats: dict[tuple[int, int], list[float]] = {}
    uints: dict[tuple[int, int], list[int]] = {}
    batch = WriteBatch()
    for item in (1, 2, 3):
        for _ in range(300):
            clock = T0 + rnd.randrange(3 * 3600)
            f = rnd.uniform(-1e6, 1e6)
            u = rnd.choice([0, 1, rnd.randrange(2**64), 2**64 - 1])
            batch.floats.append((item, clock, 0, f))
            batch.uints.append((item + 10, clock, 0, u))
            floats.setdefault((item, clock - clock % 3600), []).append(f)
            uints.setdefault((item + 10, clock - clock % 3600), []).append(u)
    store.write(batch)
    now = T0 + 2 * 3600 + 1800  # in the middle of the third hour
    assert _dirty_hours(migrated_url) == [T0, T0 + 3600, T0 + 7200]
    assert store.rollup_trends(now) == 3
    got_f, got_u = _trends(store, [1, 2, 3], F), _trends(store, [11, 12, 13], U)
    want_f = _expected(floats)
    assert got_f.keys() == want_f.keys()
    for k, (num, lo, avg, hi) in want_f.items():
        assert got_f[k][0] == num and got_f[k][1] == lo and got_f[k][3] == hi
        assert got_f[k][2] == pytest.approx(avg, rel=1e-9, abs=1e-6)
    assert got_u == _expected(uints, uint=True)  # exact, even around 2**64
    assert _dirty_hours(migrated_url) == [T0 + 7200]  # the current hour stays dirty
    assert store.rollup_trends(now) == 1
    assert _trends(store, [1, 2, 3], F) == got_f and _trends(store, [11, 12, 13], U) == got_u
    # a late value recomputes its (complete) hour
    store.write(WriteBatch(floats=[(1, T0 + 5, 0, 5e6)], uints=[(11, T0 + 5, 0, 2**64 - 1)]))
    assert _dirty_hours(migrated_url) == [T0, T0 + 7200]
    assert store.rollup_trends(T0 + 4 * 3600) == 2
    assert _dirty_hours(migrated_url) == []
    num, _, avg, hi = _trends(store, [1], F)[(1, T0)]
    vs = floats[(1, T0)] + [5e6]
    assert (num, hi) == (len(vs), 5e6) and avg == pytest.approx(sum(vs) / len(vs))
    assert _trends(store, [11], U)[(11, T0)] == _expected({(11, T0): uints[(11, T0)] + [2**64 - 1]}, True)[(11, T0)]
    assert store.rollup_trends(T0 + 4 * 3600) == 0


def test_trends_range_and_types(store: Store) -> None:
    store.write(WriteBatch(floats=[(1, T0 + h * 3600, 0, float(h)) for h in range(5)]))
    store.rollup_trends(T0 + 10 * 3600)
    assert [t.clock for t in store.trends(1, F, T0 + 3600, T0 + 3 * 3600)] == [T0 + 3600, T0 + 7200, T0 + 10800]
    with pytest.raises(StoreError, match="no trends"):
        store.trends(1, S, 0, END)


# -- housekeeping ---------------------------------------------------------------------------------


def test_housekeeping_by_item_retention(store: Store, migrated_url: str) -> None:
    now = T0 + 20 * DAY
    ages = [15 * DAY, 10 * DAY, 3 * DAY, 3600, 0]
    batch = WriteBatch()
    for age in ages:
        batch.floats += [(1, now - age, 0, 1.0), (2, now - age, 0, 2.0), (9, now - age, 0, 9.0)]
        batch.strs += [(3, now - age, 0, "s")]
    store.write(batch)
    store.rollup_trends(now)
    retention = [Retention(1, F, 1 * DAY, 5 * DAY), Retention(2, F, 7 * DAY, 30 * DAY), Retention(3, S, 2 * DAY, 0)]
    report = store.housekeep(now, retention)
    assert [c for c, _, _ in store.history(1, F, 0, END)] == [now - 3600, now]
    assert [c for c, _, _ in store.history(2, F, 0, END)] == [now - 3 * DAY, now - 3600, now]
    assert [c for c, _, _ in store.history(3, S, 0, END)] == [now - 3600, now]
    assert [t.clock for t in store.trends(1, F, 0, END)] == [(now - a) - (now - a) % 3600 for a in ages[2:]]
    assert len(store.trends(2, F, 0, END)) == 5
    if migrated_url.startswith("postgresql"):
        # Partitions of days wholly older than the longest float retention (7 days) went, with the unlisted
        # item 9's rows in them; the char table's only item keeps 2 days.
        day = lambda age: (now - age) - (now - age) % DAY  # noqa: E731
        from vigil.server.store.postgres import partition_name

        assert sorted(report.partitions_dropped) == sorted([
            partition_name("history", day(15 * DAY)), partition_name("history", day(10 * DAY)),
            partition_name("history_str", day(15 * DAY)), partition_name("history_str", day(10 * DAY)),
            partition_name("history_str", day(3 * DAY))])
        assert [c for c, _, _ in store.history(9, F, 0, END)] == [now - 3 * DAY, now - 3600, now]
        assert report.history_rows == 1  # item 1's 3-day-old row; the rest went with their partitions
    else:
        assert report.partitions_dropped == []
        assert len(store.history(9, F, 0, END)) == 5  # not listed: left alone
        assert report.history_rows == 3 + 2 + 3
    assert report.trend_rows == 2
    again = store.housekeep(now, retention)
    assert (again.history_rows, again.trend_rows, again.partitions_dropped) == (0, 0, [])


def test_housekeeping_zero_history_keeps_nothing_once_in_trends(store: Store) -> None:
    now = T0 + DAY
    store.write(WriteBatch(uints=[(1, now - 10, 0, 1), (1, now, 0, 2)]))
    store.housekeep(now + 1, [Retention(1, U, 0, DAY)])
    # Not rolled up yet: the values stay until they are in the trends.
    assert [v for _, _, v in store.history(1, U, 0, END)] == [1, 2]
    store.rollup_trends(now + 3600)
    store.housekeep(now + 3600, [Retention(1, U, 0, DAY)])
    assert store.history(1, U, 0, END) == []
    assert [(t.clock, t.num, t.avg) for t in store.trends(1, U, 0, END)] == [(now - 3600, 1, 1), (now, 1, 2)]


# -- durability and partitions --------------------------------------------------------------------


def test_write_is_durable_when_it_returns(migrated_url: str) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from vigil.server.store import open_store
        from vigil.server.store.base import WriteBatch
        s = open_store({migrated_url!r})
        s.write(WriteBatch(floats=[(77, {T0}, 1, 3.25)], sessions={{"dur": 4}}))
        print("written", flush=True)
        time.sleep(60)  # alive, not waiting on anything: the test SIGKILLs it right after "written"
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    s = open_store(migrated_url)
    try:
        assert s.history(77, F, 0, END) == [(T0, 1, 3.25)]
        assert s.sessions() == {"dur": 4}
    finally:
        s.close()


def test_values_across_a_day_boundary(store: Store, migrated_url: str) -> None:
    midnight = T0 - T0 % DAY + DAY
    clocks = [midnight - 2, midnight - 1, midnight, midnight + 1]
    store.write(WriteBatch(floats=[(1, c, 0, float(c % 10)) for c in clocks],
                           logs=[(2, c, 0, 0, "", 0, "l", 0) for c in clocks]))
    assert [c for c, _, _ in store.history(1, F, 0, END)] == clocks
    assert [c for c, _, _ in store.history(2, L, midnight - 1, midnight)] == [midnight - 1, midnight]
    if migrated_url.startswith("postgresql"):
        from vigil.server.store.postgres import PostgresStore, partition_name

        assert isinstance(store, PostgresStore)
        assert sorted(store.partitions()) == sorted(
            partition_name(t, d) for t in ("history", "history_log") for d in (midnight - DAY, midnight))
        assert partition_name("history", midnight) == "history_p" + _ymd(midnight)


def _ymd(clock: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(clock, datetime.UTC).strftime("%Y%m%d")


def test_two_writers_creating_the_same_partitions(migrated_url: str) -> None:
    stores = [open_store(migrated_url) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(s: Store, item: int) -> None:
        try:
            barrier.wait(5)
            for d in range(5):
                s.write(WriteBatch(floats=[(item, T0 + d * DAY, 0, 1.0)], strs=[(item, T0 + d * DAY, 0, "x")]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert errors == []
    s = open_store(migrated_url)
    try:
        assert [len(s.history(i, F, 0, END)) for i in (0, 1)] == [5, 5]
    finally:
        s.close()


def test_a_partition_dropped_by_another_process_is_recreated(migrated_url: str) -> None:
    if not migrated_url.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")
    writer, keeper = open_store(migrated_url), open_store(migrated_url)
    try:
        writer.write(WriteBatch(floats=[(1, T0, 0, 1.0)]))
        keeper.rollup_trends(T0 + 40 * DAY)  # a day goes only once its hours are in the trends
        report = keeper.housekeep(T0 + 40 * DAY, [Retention(1, F, 31 * DAY, 0)])
        assert len(report.partitions_dropped) == 1
        writer.write(WriteBatch(floats=[(1, T0 + 1, 0, 2.0)]))  # its cache still names the dropped one
        assert writer.history(1, F, 0, END) == [(T0 + 1, 0, 2.0)]
    finally:
        writer.close()
        keeper.close()


def test_rollup_running_alongside_a_writer_counts_every_value(migrated_url: str) -> None:
    writer, roller = open_store(migrated_url), open_store(migrated_url)
    done = threading.Event()
    errors: list[BaseException] = []

    def roll() -> None:
        try:
            while not done.is_set():
                roller.rollup_trends(T0 + 10 * 3600)  # the hour is complete: marks get cleared
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=roll)
    t.start()
    try:
        for k in range(60):
            writer.write(WriteBatch(floats=[(1, T0 + k, j, float(k)) for j in range(5)]))
    finally:
        done.set()
        t.join(30)
    roller.rollup_trends(T0 + 10 * 3600)
    try:
        assert errors == []
        [trend] = roller.trends(1, F, 0, END)
        assert (trend.num, trend.min, trend.max) == (300, 0.0, 59.0)
    finally:
        writer.close()
        roller.close()


def test_sqlite_is_opened_durable(migrated_url: str) -> None:
    if not migrated_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas")
    from vigil.server.store.sqlite import SQLiteStore

    s = open_store(migrated_url)
    try:
        assert isinstance(s, SQLiteStore)
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()
