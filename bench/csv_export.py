"""CSV export and filter tabs: how fast `?format=csv` streams a whole list, and what saved tabs with
counters add to the Problems page.

Fills a temporary PostgreSQL database (VIGIL_BENCH_PG, default 127.0.0.1:5432, dropped at the end)
with H hosts of I items each (default 500 x 40 = 20,000 items; --quick 50 x 20), one value per item,
and an open problem on every host, then through the app in-process (Flask test client, a super admin):

    csv_latest_rows_per_s: 25000 rows/s   (every item of Latest data, streamed)
    csv_latest_first_byte: 40.0 ms        (until the header and first chunk arrive)
    csv_problems_rows_per_s: ...
    problems_page_p50: ... ms             (no saved tabs)
    problems_page_5_counters_p50: ... ms  (five saved tabs with "show counter")

Usage: python bench/csv_export.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    import psycopg
    from vigil.server.config.migrate import engine_for, upgrade
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo
    from vigil.server.config.saved_filters import SavedFilters
    from vigil.server.config.tables import Role
    from vigil.server.config.users import UserRepo
    from vigil.server.settings import Settings
    from vigil.server.store import open_store
    from vigil.server.store.base import WriteBatch
    from vigil.server.store.events import Cycle, EventStore, NewEvent
    from vigil.web.app import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 hosts x 20 items")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    hosts, items = (50, 20) if args.quick else (500, 40)
    name = "vigil_bench_csv_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        engine = engine_for(url)
        upgrade(engine)
        keys = [f"bench.metric[{i}]" for i in range(items)]
        repo = ConfigRepo(engine)
        repo.apply(doc_from_dict({
            "templates": [{"template": "Bench", "items": [{"key": k, "name": f"Metric {i}", "units": "B"}
                                                          for i, k in enumerate(keys)],
                           "triggers": [{"name": "Metric 0 is high", "severity": "average",
                                         "expression": "last(/Bench/bench.metric[0])>50"}]}],
            "hosts": [{"host": f"host-{h:04d}", "groups": [f"Group {h % 20}"], "templates": ["Bench"]}
                      for h in range(hosts)]}))
        now = int(time.time())
        snap = repo.snapshot()
        store = open_store(url)
        store.write(WriteBatch(floats=[(it.itemid, now - 30, 0, float(n % 100))
                                       for n, it in enumerate(snap.items.values())]))
        store.close()
        EventStore(engine).commit(Cycle(events=[NewEvent(0, 0, tr.triggerid, now - 60 * n, 0, 1, tr.name, 3, (),
                                                         problem=True) for n, tr in enumerate(repo.triggers())]))
        users = UserRepo(engine)
        users.create_user("bench", "bench password", Role.SUPER_ADMIN)
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app(Settings.from_env({"VIGIL_DATA_DIR": tmp, "VIGIL_DATABASE_URL": url}), engine=engine)
            c = app.test_client()
            page = c.get("/login").get_data(as_text=True)
            tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            assert c.post("/login", data={"csrf_token": tok, "username": "bench",
                                          "password": "bench password"}).status_code == 302

            def export(path: str) -> tuple[float, float, int]:
                t = time.perf_counter()
                r = c.get(path, buffered=False)
                it = iter(r.response)
                first = next(it)
                t_first = time.perf_counter() - t
                size = len(first) + sum(len(x) for x in it)
                total = time.perf_counter() - t
                r.close()
                return t_first, total, size

            for label, path, n in (("latest", "/latest?format=csv", hosts * items),
                                   ("problems", "/problems?format=csv", hosts)):
                export(path)  # warm
                firsts, totals = [], []
                for _ in range(args.repeat):
                    f, tot, size = export(path)
                    firsts.append(f)
                    totals.append(tot)
                best = statistics.median(totals)
                print(f"# {label}: {n} rows, {size} bytes", file=sys.stderr)
                print(f"csv_{label}_rows_per_s: {n / best:.0f} rows/s")
                print(f"csv_{label}_total: {best * 1000:.0f} ms")
                print(f"csv_{label}_first_byte: {statistics.median(firsts) * 1000:.1f} ms")

            def p50(path: str) -> float:
                c.get(path)
                times = []
                for _ in range(max(10, args.repeat * 4)):
                    t = time.perf_counter()
                    assert c.get(path).status_code == 200
                    times.append((time.perf_counter() - t) * 1000)
                return statistics.median(times)

            print(f"problems_page_p50: {p50('/problems'):.1f} ms")
            sf = SavedFilters(engine)
            uid = users.by_name("bench").userid  # type: ignore[union-attr]
            for n, q in enumerate(["severity=3", "severity=4", "groupid=1", "ack=no", "name=Metric"]):
                sf.create(uid, "problems.index", f"tab {n}", q, show_counter=True)
            print(f"problems_page_5_counters_p50: {p50('/problems'):.1f} ms")
            app.extensions["vigil"].close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
