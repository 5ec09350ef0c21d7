"""Store read latency and raw write throughput on a fresh database of each backend.

Fills a new database (PostgreSQL: a temporary database on 127.0.0.1:5432, dropped at the end;
SQLite: a temporary directory) through the store's own write(): N items x 7 days of 1-minute float
values, plus a year of hourly trends per item; rolls the 7 days up; then times each read and prints
the median:

    query_history_7d_postgres: 12.3 ms      (10,080 values of one item)
    query_trends_1y_postgres: 8.1 ms        (8,760 hourly trends of one item)
    query_latest_100_postgres: 4.2 ms       (newest value of every item, one call)
    write_batch1000_postgres: 210000 values/s   (durable commits, batches of 1,000)

On PostgreSQL it then fills the hour now open (1,000 items x 3,600 values, 600 with --quick) and
times the reads that hour's missing index makes dearer (VIGIL_PG_DEFER_INDEX=1), then the same reads
once the hour is indexed (what VIGIL_PG_DEFER_INDEX=0 gives):

    query_open_hour_history_1_item_deferred_postgres: 38.2 ms   (10 minutes of one item)
    query_open_hour_history_1_item_indexed_postgres: 1.0 ms

Usage: python bench/query.py [--quick] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vigil.server.config.migrate import engine_for, upgrade  # noqa: E402
from vigil.server.config.tables import ValueType  # noqa: E402
from vigil.server.store import open_store  # noqa: E402
from vigil.server.store.base import Store, WriteBatch  # noqa: E402
from vigil.server.store.postgres import PostgresStore  # noqa: E402

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY, HOUR, YEAR_HOURS = 86400, 3600, 8760
NOW = 1_735_689_600  # 2025-01-01 00:00 UTC: a fixed clock so runs are comparable


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and prepared statements
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def fill_history(store: Store, items: int, days: int) -> tuple[int, float]:
    """items x days of 1-minute values, in time order as ingest would write them, batches of 10,000."""
    start = NOW - days * DAY
    batch, n, elapsed = WriteBatch(), 0, 0.0
    for minute in range(days * 1440):
        clock = start + minute * 60
        batch.floats.extend((item, clock, 0, (item * 7 + minute) % 1000 / 10) for item in range(1, items + 1))
        if len(batch.floats) >= 10_000:
            t = time.perf_counter()
            store.write(batch)
            store.maintain()  # as the server's history writer does after every transaction
            elapsed += time.perf_counter() - t
            n += len(batch.floats)
            batch = WriteBatch()
    if batch.floats:
        t = time.perf_counter()
        store.write(batch)
        store.maintain(force=True)  # what an idle server's writer does within a second
        elapsed += time.perf_counter() - t
        n += len(batch.floats)
    return n, elapsed


def write_throughput(store: Store, batch_size: int, total: int) -> float:
    rows = [(10_000 + i % 500, NOW + i // 500, i, float(i)) for i in range(total)]
    t = time.perf_counter()
    for k in range(0, total, batch_size):
        store.write(WriteBatch(floats=rows[k:k + batch_size]))
        store.maintain()
    store.maintain(force=True)
    return total / (time.perf_counter() - t)


def fill_trends(url: str, items: int) -> None:
    """A year of hourly trends per item, straight into the table (they are what roll-ups produce)."""
    first = NOW - 365 * DAY
    rows = [(item, first + h * HOUR, 60, 1.0, 50.0 + item, 99.0) for item in range(1, items + 1)
            for h in range(YEAR_HOURS)]
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url[len("sqlite:///"):])
        with db:
            db.execute("DELETE FROM trends")
            db.executemany("INSERT INTO trends VALUES (?,?,?,?,?,?)", rows)
        db.close()
        return
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM trends")
        with cur.copy("COPY trends (itemid, clock, num, value_min, value_avg, value_max) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        cur.execute("ANALYZE")


OPEN_ITEMS = 1000


def open_hour_reads(store: Store, name: str, per_item: int, repeat: int) -> None:
    """Reads of the hour being written, with its partition unindexed and then indexed."""
    assert isinstance(store, PostgresStore)
    now = int(time.time())
    hour = now - now % HOUR
    for k in range(0, per_item, 50):  # batches of 50 seconds x 1,000 items
        store.write(WriteBatch(floats=[(10_000 + i, hour + t % HOUR, t // HOUR, float(t))
                                       for t in range(k, min(per_item, k + 50)) for i in range(OPEN_ITEMS)]))
    print(f"open hour: {OPEN_ITEMS} items x {per_item} values", file=sys.stderr, flush=True)
    one = 10_000 + OPEN_ITEMS // 2
    hundred = {10_000 + i: (ValueType.FLOAT, hour + per_item - 600, hour + per_item) for i in range(100)}
    every = {10_000 + i: ValueType.FLOAT for i in range(OPEN_ITEMS)}
    reads: dict[str, Callable[[], object]] = {
        "history_1_item": lambda: store.history(one, ValueType.FLOAT, hour + per_item - 600, hour + per_item),
        "latest_1_item": lambda: store.latest({one: ValueType.FLOAT}),
        f"latest_{OPEN_ITEMS}_items": lambda: store.latest(every),
        "histories_100_items": lambda: store.histories(hundred),
    }
    for state in ("deferred", "indexed"):
        if state == "indexed":
            store.defer_index = False
            store.index_closed_hours(now)
            store._hot_checked = -1e9  # the reader's look at the catalog is due now, not in 5 s
        for read, fn in reads.items():
            print(f"query_open_hour_{read}_{state}_{name}: {median_ms(fn, repeat):.2f} ms", flush=True)


def run_backend(kind: str, quick: bool) -> None:
    items = 20 if quick else 100
    repeat = 15 if quick else 40
    name = "postgres" if kind == "postgresql" else "sqlite"
    tmp: str | None = None
    dbname: str | None = None
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="vigil-bench-")
        url = f"sqlite:///{tmp}/vigil.db"
    else:
        import psycopg

        dbname = "vigil_bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {dbname}")
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    try:
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        store = open_store(url)
        try:
            n, secs = fill_history(store, items, 7)
            print(f"write_batch10000_{name}: {n / secs:.0f} values/s", flush=True)
            print(f"write_batch1000_{name}: {write_throughput(store, 1000, 50_000 if quick else 200_000):.0f} values/s",
                  flush=True)
            t = time.perf_counter()
            hours = store.rollup_trends(NOW + HOUR)
            print(f"rollup_{hours}h_{items}items_{name}: {(time.perf_counter() - t) * 1000:.0f} ms", flush=True)
            fill_trends(url, items)
            if kind == "postgresql":
                import psycopg

                with psycopg.connect(url, autocommit=True) as c:
                    c.execute("ANALYZE")
            mid = items // 2 + 1
            pts = len(store.history(mid, ValueType.FLOAT, NOW - 7 * DAY, NOW))
            trs = len(store.trends(mid, ValueType.FLOAT, NOW - 365 * DAY, NOW))
            assert pts == 7 * 1440 and trs == YEAR_HOURS, (pts, trs)
            ms = median_ms(lambda: store.history(mid, ValueType.FLOAT, NOW - 7 * DAY, NOW), repeat)
            print(f"query_history_7d_{name}: {ms:.1f} ms ({pts} values)", flush=True)
            ms = median_ms(lambda: store.trends(mid, ValueType.FLOAT, NOW - 365 * DAY, NOW), repeat)
            print(f"query_trends_1y_{name}: {ms:.1f} ms ({trs} hours)", flush=True)
            ms = median_ms(lambda: store.history(mid, ValueType.FLOAT, NOW - HOUR, NOW), repeat)
            print(f"query_history_1h_{name}: {ms:.2f} ms", flush=True)
            wanted = {i: ValueType.FLOAT for i in range(1, items + 1)}
            ms = median_ms(lambda: store.latest(wanted), repeat)
            print(f"query_latest_{items}_{name}: {ms:.1f} ms", flush=True)
            if kind == "postgresql":
                open_hour_reads(store, name, 600 if quick else 3600, 5 if quick else 15)
        finally:
            store.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if dbname is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer items and repeats (under a minute)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args(argv)
    for kind in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        run_backend(kind, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
