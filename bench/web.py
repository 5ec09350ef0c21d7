"""Web UI latency: p50/p95 of the main pages and a 7-day graph's data, and the bytes a page loads.

Fills a temporary PostgreSQL database (VIGIL_BENCH_PG, default 127.0.0.1:5432, dropped at the end)
with H hosts linked to a template of I items and one trigger (default 1,000 x 100; --quick 50 x 20),
an open problem on every fifth host, an hour of
1-minute values for every item of the first host and 7 days of them for one item (rolled up into
trends), then times requests through the app in-process (Flask test client, signed in as a super
admin), N times each:

    web_dashboard_p50: 12.0 ms
    web_dashboard_p95: 15.1 ms
    web_graph_7d_p95: 8.2 ms
    web_page_js_bytes: 2000 B      (our script; plotly.js apart, below)

Usage: python bench/web.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import gzip
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
    from vigil.server.config.tables import Role
    from vigil.server.config.users import UserRepo
    from vigil.server.settings import Settings
    from vigil.server.store import open_store
    from vigil.server.store.base import WriteBatch
    from vigil.web.app import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 hosts x 20 items")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    hosts, items = (50, 20) if args.quick else (1000, 100)
    name = "vigil_bench_web_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        engine = engine_for(url)
        upgrade(engine)
        t = time.perf_counter()
        keys = [f"bench.metric[{i}]" for i in range(items)]
        doc = {"templates": [{"template": "Bench", "items": [
            {"key": k, "name": f"Metric {i}", "units": "%" if i % 3 == 0 else "B", "type": "agent_active",
             "delay": "1m", "tags": {"component": f"c{i % 10}"}} for i, k in enumerate(keys)],
            "triggers": [{"name": "Metric 0 is high", "expression": "last(/Bench/bench.metric[0])>50",
                          "severity": "average", "manual_close": True}]}],
            "hosts": [{"host": f"host-{h:04d}", "groups": [f"Group {h % 20}"], "templates": ["Bench"]}
                      for h in range(hosts)]}
        repo = ConfigRepo(engine)
        repo.apply(doc_from_dict(doc))
        print(f"# configured {hosts} hosts x {items} items in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        now = int(time.time())
        store = open_store(url)
        first = [repo.item("host-0000", k) for k in keys]
        batch = WriteBatch(floats=[(it[0], now - 3600 + 60 * m, 0, (m * 7 + i) % 100 * 1.0)  # type: ignore[index]
                                   for i, it in enumerate(first) for m in range(60)])
        graph_item = first[0][0]  # type: ignore[index]
        batch.floats += [(graph_item, now - 7 * 86400 + 60 * m, 0, m % 100 * 1.0) for m in range(7 * 1440 - 60)]
        store.write(batch)
        store.rollup_trends(now)
        store.close()
        # an open problem on every fifth host's trigger copy (200 of 1,000), with tags, for the Problems page
        from vigil.server.store.events import Cycle, EventStore, NewEvent

        refs = repo.triggers()
        EventStore(engine).commit(Cycle(events=[
            NewEvent(0, 0, tr.triggerid, now - 60 * n, 0, 1, tr.name, 3, (("component", "c0"),), problem=True)
            for n, tr in enumerate(refs) if n % 5 == 0]))
        UserRepo(engine).create_user("bench", "bench password", Role.SUPER_ADMIN)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.from_env({"VIGIL_DATA_DIR": tmp, "VIGIL_DATABASE_URL": url})
            app = create_app(settings, engine=engine)
            c = app.test_client()
            page = c.get("/login").get_data(as_text=True)
            tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            assert c.post("/login", data={"csrf_token": tok, "username": "bench",
                                          "password": "bench password"}).status_code == 302
            hostid = repo.snapshot().hosts["host-0000"].hostid
            targets = {
                "dashboard": "/",
                "hosts": "/hosts",
                "latest_data": "/latest",
                "latest_data_host": f"/latest?hostid={hostid}",
                "graph_7d": f"/api/v1/graph?itemid={graph_item}&from=now-7d",
                "graph_1h_page": f"/graphs?itemid={graph_item}",
                "problems": "/problems",
                "problems_api": "/api/v1/problems?limit=100",
            }
            for label, path in targets.items():
                c.get(path)  # warm
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    r = c.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (path, r.status_code)
                times.sort()
                print(f"web_{label}_p50: {statistics.median(times):.1f} ms")
                print(f"web_{label}_p95: {times[int(len(times) * 0.95) - 1]:.1f} ms")
            static = Path(__file__).resolve().parents[1] / "web" / "static"
            js, css = (static / "vigil.js").read_bytes(), (static / "vigil.css").read_bytes()
            print(f"web_page_js_bytes: {len(js)} B")
            print(f"web_page_js_gzip_bytes: {len(gzip.compress(js))} B")
            print(f"web_page_css_bytes: {len(css)} B")
            print(f"web_page_css_gzip_bytes: {len(gzip.compress(css))} B")
            plotly = c.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"}).data
            print(f"web_plotly_js_gzip_bytes: {len(plotly)} B")
            html = c.get("/latest").data
            print(f"web_latest_html_bytes: {len(html)} B")
            app.extensions["vigil"].close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
