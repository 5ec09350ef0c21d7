"""Web UI latency: p50/p95 of the main pages and a 7-day graph's data, and the bytes a page loads.

Fills a temporary PostgreSQL database (VIGIL_BENCH_PG, default 127.0.0.1:5432, dropped at the end)
with H hosts linked to a template of I items and one trigger (default 1,000 x 100; --quick 100 x 20):
the template and the first host go through ConfigRepo.apply, the other hosts are copies of the first
made with set-based inserts (bench/web_estate.py), in 20 host groups. Values: every item's last
hour every 6 minutes, the first host's items every minute, 7 days of one item (rolled up into trends);
an open problem on every fifth host. It then times requests through the app in-process (Flask test
client, signed in as a super admin), N times each, and weighs what each page loads.

Under load (--load, or --clients/--ingest): while the pages are timed, C other signed-in clients
(threads of the same process, as waitress's threads serve a real `vigil web`) fetch the dashboard,
problems, hosts and latest data pages back to back, and a separate ingest process writes R float
values a second into the history of the estate's items (a 1-minute interval over every item:
hosts x items / 60). The figures then include what that traffic costs:


    web_dashboard_p50: 12.0 ms
    web_dashboard_p95: 15.1 ms
    web_graph_7d_p95: 8.2 ms
    web_latest_data_js_bytes: 2000 B   (the page's own scripts, gzipped; plotly.js apart, below)

Usage: python bench/web.py [--quick] [--repeat N] [--load | --clients C --ingest R]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    import psycopg
    from vigil.server.config.migrate import engine_for, upgrade
    from vigil.server.config.repo import ConfigRepo
    from vigil.server.settings import Settings
    from vigil.web.app import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 hosts x 20 items, 8 requests a page")
    ap.add_argument("--repeat", type=int, default=None, help="requests a page (default 30; --quick 8)")
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed) for profiling")
    ap.add_argument("--database", help="time the pages on a database a --keep run left (no fill, not dropped)")
    ap.add_argument("--load", action="store_true", help="4 clients and ingest at hosts x items / 60 a second")
    ap.add_argument("--clients", type=int, default=None, help="concurrent clients fetching pages meanwhile")
    ap.add_argument("--ingest", type=int, default=None, help="float values a second written by an ingest process")
    ap.add_argument("--ingest-worker", nargs=2, metavar=("URL", "RATE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ingest_worker:
        return ingest_worker(args.ingest_worker[0], int(args.ingest_worker[1]))
    hosts, items = (100, 20) if args.quick else (1000, 100)
    clients = args.clients if args.clients is not None else (4 if args.load else 0)
    rate = args.ingest if args.ingest is not None else (hosts * items // 60 if args.load else 0)
    repeat = args.repeat or (8 if args.quick else 30)
    name = args.database or "vigil_bench_web_" + uuid.uuid4().hex[:8]
    if not args.database:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        engine = engine_for(url)
        upgrade(engine)
        if not args.database:
            fill(engine, url, hosts, items)
        repo = ConfigRepo(engine)
        snap = repo.snapshot()
        graph_item = repo.item("host-0000", "bench.metric[0]")[0]  # type: ignore[index]
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.from_env({"VIGIL_DATA_DIR": tmp, "VIGIL_DATABASE_URL": url})
            app = create_app(settings, engine=engine)
            c = app.test_client()
            sign_in(c)
            hostid = snap.hosts["host-0000"].hostid
            groupid = next(g for g, n in app.extensions["vigil"].browse.host_groups() if n == "Group 7")
            load = Load(app, clients, rate, url, [
                "/", "/problems", "/hosts", "/latest", "/latest?page=5", f"/latest?hostid={hostid}"])
            load.start()
            print(f"# load: {clients} concurrent clients, ingest {rate} values/s, "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
            targets = {
                "dashboard": "/",
                "hosts": "/hosts",
                "latest_data": "/latest",
                "latest_data_page_10": "/latest?page=10",
                "latest_data_host": f"/latest?hostid={hostid}",
                "latest_data_group": f"/latest?groupid={groupid}",
                "latest_data_search": "/latest?search=metric+1",
                "latest_data_tag": "/latest?tag=component:c3",
                "graph_7d": f"/api/v1/graph?itemid={graph_item}&from=now-7d",
                "graph_1h_page": f"/graphs?itemid={graph_item}",
                "problems": "/problems",
                "problems_api": "/api/v1/problems?limit=100",
            }
            # what a request costs apart from waiting: its own thread's CPU time (the test client answers
            # in the calling thread) and its round trips to the configuration database (statements and
            # pool check-outs, each of which pings); history store reads are not counted
            me = threading.get_ident()
            trips = [0]

            def count(*_: object) -> None:
                if threading.get_ident() == me:
                    trips[0] += 1

            sa.event.listen(engine, "before_cursor_execute", count)
            sa.event.listen(engine, "checkout", count)
            for label, path in targets.items():
                c.get(path)  # warm
                times, cpu = [], []
                trips[0] = 0
                for _ in range(repeat):
                    t, tc = time.perf_counter(), time.thread_time()
                    r = c.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    cpu.append((time.thread_time() - tc) * 1000)
                    assert r.status_code == 200, (path, r.status_code)
                times.sort()
                print(f"web_{label}_p50: {statistics.median(times):.1f} ms")
                print(f"web_{label}_p95: {times[max(0, -(-len(times) * 95 // 100) - 1)]:.1f} ms")
                print(f"web_{label}_cpu_p50: {statistics.median(cpu):.1f} ms")
                print(f"web_{label}_db_round_trips: {trips[0] / repeat:.1f} trips")
            sa.event.remove(engine, "before_cursor_execute", count)
            sa.event.remove(engine, "checkout", count)
            load.stop()
            if clients or rate:
                print(f"web_load_client_requests: {load.requests} requests")
                print(f"web_load_ingest_rate: {load.ingested / max(load.elapsed, 1e-9):.0f} values/s")
                print(f"web_load_average: {os.getloadavg()[0]:.1f} load")
            # the first view after a configuration change, when no per-host item count is cached
            times = []
            for _ in range(max(3, repeat // 3)):
                with engine.begin() as conn:
                    conn.exec_driver_sql("UPDATE config_version SET version = version + 1")
                t = time.perf_counter()
                assert c.get("/latest").status_code == 200
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            print(f"web_latest_data_after_config_change_p50: {statistics.median(times):.1f} ms")
            print(f"web_latest_data_after_config_change_max: {times[-1]:.1f} ms")
            for label in ("dashboard", "latest_data", "problems", "hosts", "graph_1h_page"):
                js, css, plotly = page_weight(c, targets[label])
                print(f"web_{label}_js_gzip_bytes: {js} B")
                print(f"web_{label}_css_gzip_bytes: {css} B")
                print(f"web_{label}_plotly_gzip_bytes: {plotly} B")
            print(f"web_latest_html_bytes: {len(c.get('/latest').data)} B")
            app.extensions["vigil"].close()
    finally:
        if args.keep or args.database:
            print(f"# database kept: {name}", file=sys.stderr)
        else:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


def sign_in(c: object) -> None:
    page = c.get("/login").get_data(as_text=True)  # type: ignore[attr-defined]
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"csrf_token": tok, "username": "bench",  # type: ignore[attr-defined]
                                  "password": "bench password"}).status_code == 302


class Load:
    """The concurrent traffic the pages are timed under: client threads and an ingest process."""

    def __init__(self, app: object, clients: int, rate: int, url: str, paths: list[str]) -> None:
        self.app, self.clients, self.rate, self.url, self.paths = app, clients, rate, url, paths
        self.requests = self.ingested = 0
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._errors: list[str] = []

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if self.rate:
            self._proc = subprocess.Popen([sys.executable, __file__, "--ingest-worker", self.url, str(self.rate)],
                                          stdout=subprocess.PIPE, text=True)
            assert self._proc.stdout is not None
            self._proc.stdout.readline()  # "ready": the worker's store is open
        for n in range(self.clients):
            c = self.app.test_client()  # type: ignore[attr-defined]
            sign_in(c)
            th = threading.Thread(target=self._client, args=(c, n), daemon=True)
            th.start()
            self._threads.append(th)

    def _client(self, c: object, n: int) -> None:
        k = n
        while not self._stop.is_set():
            path = self.paths[k % len(self.paths)]
            r = c.get(path)  # type: ignore[attr-defined]
            if r.status_code != 200:
                self._errors.append(f"{path}: {r.status_code}")
                return
            k += 1
            with self._lock:
                self.requests += 1

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(60)
        if self._proc is not None:
            self._proc.terminate()
            out, _ = self._proc.communicate(timeout=30)
            lines = out.split()
            self.ingested = int(lines[-1]) if lines else 0
        self.elapsed = time.perf_counter() - self._t0
        assert not self._errors, self._errors


def ingest_worker(url: str, rate: int) -> int:
    """Write `rate` float values a second, round-robin over every item, until terminated; print the
    count written after each second."""
    import signal

    import sqlalchemy as sa
    from vigil.server.config import tables as t
    from vigil.server.config.migrate import engine_for
    from vigil.server.store import open_store
    from vigil.server.store.base import WriteBatch

    engine = engine_for(url)
    with engine.connect() as c:
        ids = [int(i) for i in c.execute(sa.select(t.items.c.itemid).join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                                          .where(t.hosts.c.status == 0, t.items.c.value_type == 0)).scalars()]
    engine.dispose()
    store = open_store(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    written, k = 0, 0
    next_t = time.monotonic()
    while not stop.is_set():
        now = int(time.time())
        chunk = [ids[(k + j) % len(ids)] for j in range(rate)]
        k += rate
        store.write(WriteBatch(floats=[(i, now, (written + j) % 1_000_000_000, float((written + j) % 100))
                                       for j, i in enumerate(chunk)]))
        written += len(chunk)
        print(written, flush=True)
        next_t += 1.0
        stop.wait(max(0.0, next_t - time.monotonic()))
    store.close()
    return 0


def fill(engine: Engine, url: str, hosts: int, items: int) -> None:
    """The estate: configuration, values, trends, problems and the bench user."""
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo
    from vigil.server.config.tables import Role
    from vigil.server.config.users import UserRepo
    from vigil.server.store import open_store
    from vigil.server.store.base import WriteBatch
    from vigil.server.store.events import Cycle, EventStore, NewEvent
    from web_estate import clone_host

    t = time.perf_counter()
    keys = [f"bench.metric[{i}]" for i in range(items)]
    doc = {"templates": [{"template": "Bench", "items": [
        {"key": k, "name": f"Metric {i}", "units": "%" if i % 3 == 0 else "B", "type": "agent_active",
         "delay": "1m", "tags": {"component": f"c{i % 10}"}} for i, k in enumerate(keys)],
        "triggers": [{"name": "Metric 0 is high", "expression": "last(/Bench/bench.metric[0])>50",
                      "severity": "average", "manual_close": True}]}],
        "hosts": [{"host": "host-0000", "groups": ["Group 0"], "templates": ["Bench"]}]}
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(doc))
    clone_host(engine, "host-0000", [f"host-{h:04d}" for h in range(1, hosts)],
               [f"Group {h % 20}" for h in range(1, hosts)])
    snap = repo.snapshot()
    assert len(snap.hosts) == hosts, len(snap.hosts)
    print(f"# configured {hosts} hosts x {items} items in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    t = time.perf_counter()
    now = int(time.time())
    store = open_store(url)
    first = [repo.item("host-0000", k) for k in keys]
    ids = [it[0] for it in first]  # type: ignore[index]
    graph_item = ids[0]
    all_ids = sorted({i.itemid for i in snap.items.values()})
    mine = set(ids)
    for part in range(0, len(all_ids), 20000):  # every other item: its last hour, every 6 minutes
        store.write(WriteBatch(floats=[(i, now - 3600 + 360 * m + i % 60, 0, float((i + m) % 100))
                                       for i in all_ids[part:part + 20000] if i not in mine for m in range(10)]))
    batch = WriteBatch(floats=[(i, now - 3600 + 60 * m, 0, (m * 7 + n) % 100 * 1.0)
                               for n, i in enumerate(ids) if i != graph_item for m in range(60)])
    batch.floats += [(graph_item, now - 7 * 86400 + 60 * m, 0, m % 100 * 1.0) for m in range(7 * 1440)]
    store.write(batch)
    store.rollup_trends(now)
    store.close()
    # an open problem on every fifth host's trigger copy (200 of 1,000), with tags, for the Problems page
    refs = repo.triggers()
    EventStore(engine).commit(Cycle(events=[
        NewEvent(0, 0, tr.triggerid, now - 60 * n, 0, 1, tr.name, 3, (("component", "c0"),), problem=True)
        for n, tr in enumerate(refs) if n % 5 == 0]))
    UserRepo(engine).create_user("bench", "bench password", Role.SUPER_ADMIN)
    with engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
    print(f"# values and problems in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def page_weight(client: object, path: str) -> tuple[int, int, int]:
    """Gzipped bytes of the scripts (our own; plotly.js apart) and stylesheets the page at `path` loads."""
    html = client.get(path).get_data(as_text=True)  # type: ignore[attr-defined]
    js = css = plotly = 0
    for tag, ref in re.findall(r'<(script|link)[^>]*?(?:src|href)="([^"]+)"', html):
        if tag == "link" and not ref.endswith(".css"):
            continue
        body = client.get(ref).data  # type: ignore[attr-defined]
        size = len(gzip.compress(body))
        if "plotly" in ref:
            plotly += size
        elif tag == "script":
            js += size
        else:
            css += size
    return js, css, plotly


if __name__ == "__main__":
    sys.exit(main())
