"""Ingest throughput: K sender processes push N values in batches of B into a running `vigil server`.

For each backend it starts a real server on a fresh store, provisions hosts and trapper items,
and times the senders (each batch one connection, as zabbix_sender does). "acknowledged" counts
values the server replied `processed` for; then the server is SIGKILLed and the values found in
the store give "durable". Prints one `name: value unit` line per figure at the end, including the
server's CPU use while the senders ran (100% = one core busy).

    python bench/ingest.py [--quick] [--backend sqlite|postgresql|both] [-K 4] [-N 1000000] [-B 250]
                           [--profile DIR] [--vs-zabbix PATH [--rounds 3]]

--profile records the server with py-spy (from the same venv) during the run, into
DIR/ingest-<backend>.txt (py-spy's raw collapsed stacks, one line per stack with its sample count).

--vs-zabbix PATH runs the real zabbix_server at PATH (e.g. /tmp/zbx-server-pkg/usr/sbin/zabbix_server,
unpacked by ../shared/peers/zabbix-server/setup.sh) beside `vigil server`, both on PostgreSQL, with the
same load in the same run: K real `zabbix_sender -T -i FILE` processes (250 values a connection,
fixed in zabbix_sender), N values a round, rounds interleaved (vigil, zabbix, vigil, ...), history
truncated before each round. The bench makes the zabbix database and role, loads the schema, inserts
the same hosts and float trapper items by SQL, writes the server's configuration (5 trappers, 4 DB
syncers, 3 preprocessors, as ../shared/peers/zabbix-server/start.sh) into a temporary directory, and
stops the server and drops its database at the end (bench/zabbix_peer.py). zabbix_server acknowledges
values from its cache before writing them, so "durable" is, for both servers alike, the rows in
`history` over the wall time from the senders' start until the first count that found all the values
the server processed. Figures are the BEST round of each server (throughput, and the ratio of the two
bests); CPU per 100k values is the MEDIAN round, of the server's processes and, separately, of the
PostgreSQL backends serving it. The median ratio is printed to stderr too. Prints:

    ingest_postgres_durable, ingest_zabbix_durable (values/s), ingest_ratio_vs_zabbix,
    ingest_cpu_per_100k_values (vigil server), ingest_zabbix_cpu_per_100k_values,
    ingest_{postgres,zabbix}_db_cpu_per_100k_values, ingest_{postgres,zabbix}_acknowledged,
    ingest_{postgres,zabbix}_values_per_transaction (rows over the database's commits, median round),
    ingest_senders_cpu_per_100k_values (the zabbix_sender processes, median of vigil's rounds),
    ingest_server_cpu_budget_for_2x_per_100k_values

The budget is the most CPU per 100k values `vigil server` could take and still reach twice zabbix_server's
best round on this machine: all its cores busy for 100k values at that rate, less the senders' CPU and
that of vigil's PostgreSQL backends for them (as measured). Compare it with ingest_cpu_per_100k_values:
a budget below it means 2x needs a server that costs less per value, whatever its latency; and no run
keeps every core busy (the senders wait for each reply), so the real margin is smaller still.

With --profile, py-spy records `vigil server` over all rounds into DIR/ingest-vs-zabbix-vigil.txt
(sampling slows it down: take the ratio from a run without it). zabbix_server's history syncers
write about once a second, so short rounds (--quick: 200,000 values, a few seconds) favour vigil;
and on a machine shared with other work the figures of one run vary by 2x: compare ratios, repeated.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402
from vigil.agent.protocol.messages import ProcessedInfo, SenderData, SenderValue, parse_response  # noqa: E402

from bench.zabbix_peer import ZabbixPeer  # noqa: E402

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HOSTS, ITEMS = 10, 100


def vigil() -> str:
    here = Path(sys.executable).parent / "vigil"
    return str(here) if here.exists() else (shutil.which("vigil") or "vigil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RECENT_PER_SECOND = 10  # --clocks recent: values per item and second (ns apart)


def recent_base(n: int) -> int:
    """The first clock of a load of n values with recent clocks: they end now, all in the current hour
    (if the hour began less than their span ago they start with it, up to a minute or two ahead)."""
    span = n // (HOSTS * ITEMS) // RECENT_PER_SECOND + 1
    now = int(time.time())
    return max(now - span, now // 3600 * 3600)


def clock_ns(base_clock: int, j: int, per_second: int) -> tuple[int, int]:
    """Clock and ns of the j-th value: the 1000 items in turn, per_second values of each a second."""
    tick = j // (HOSTS * ITEMS)
    return base_clock + tick // per_second, (tick % per_second) * (1_000_000_000 // per_second) + j % 1000


def frames(worker: int, n: int, batch: int, base_clock: int, per_second: int) -> list[bytes]:
    out = []
    for start in range(0, n, batch):
        values = []
        for i in range(start, min(n, start + batch)):
            j = worker * n + i
            values.append(SenderValue(f"bench-{j % HOSTS}", f"bench.k[{(j // HOSTS) % ITEMS}]", f"{j}.5",
                                      *clock_ns(base_clock, j, per_second)))
        out.append(zbxd.encode(SenderData(values, base_clock, 0).to_json()))
    return out


def sender(port: int, payloads: list[bytes], start: mp.Event, result: mp.Queue) -> None:  # type: ignore[type-arg]
    acked = failed = 0
    try:
        if not start.wait(300):
            raise TimeoutError("the bench never gave the start signal")
        for p in payloads:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(p)
                _, body = zbxd.recv_frame(s)
            info = ProcessedInfo.parse(parse_response(body).info or "")
            acked += info.processed
            failed += info.failed
    except Exception as e:  # the parent must hear of it, not wait for a result that never comes
        result.put(e)
        return
    result.put((acked, failed, time.perf_counter()))


def provision(env: dict[str, str], tmp: Path) -> None:
    lines = ["hosts:"]
    for h in range(HOSTS):
        lines.append(f"  - host: bench-{h}\n    groups: [Bench]\n    items:")
        for i in range(ITEMS):
            lines.append(f"      - {{key: 'bench.k[{i}]', type: trapper, value_type: float}}")
    (tmp / "bench.yaml").write_text("\n".join(lines) + "\n")
    subprocess.run([vigil(), "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([vigil(), "config", "import", str(tmp / "bench.yaml")], env=env, check=True, capture_output=True)


def count_rows(url: str) -> int:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as c:
            # Values not yet moved out of the staging table are committed too (see server/store/sqlite.py).
            return sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("history", "history_stage"))
    import psycopg

    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM history").fetchone()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (Linux)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


class VigilServer:
    """`vigil server` on a fresh store with the bench's hosts and items; stopped and removed on exit."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
        self.dbname: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    def __enter__(self) -> VigilServer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.tmp / 'vigil.db'}"
        else:
            import psycopg

            self.dbname = "vigil_bench_" + uuid.uuid4().hex[:8]
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {self.dbname}")
            self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.dbname
        self.port = free_port()
        env = dict(os.environ, VIGIL_DATABASE_URL=self.url, VIGIL_DATA_DIR=str(self.tmp),
                   VIGIL_LISTEN=f"127.0.0.1:{self.port}", VIGIL_LOCAL_AGENT="0", VIGIL_LOG_LEVEL="warning")
        provision(env, self.tmp)
        self.proc = subprocess.Popen([vigil(), "server"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("vigil server did not start") from None
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.kill()
        if self.dbname:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
            self.dbname = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                             "-f", "raw", "-r", "200", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def run(backend: str, k: int, n: int, batch: int, profile: Path | None = None,
        recent: bool = True) -> dict[str, float]:
    with VigilServer(backend) as server:
        assert server.proc is not None
        pid, port, url = server.proc.pid, server.port, server.url
        per = n // k
        base_clock = recent_base(n) if recent else int(time.time()) - 3 * 86400
        payloads = [frames(w, per, batch, base_clock, RECENT_PER_SECOND if recent else 1) for w in range(k)]
        start, results = mp.Event(), mp.Queue()
        procs = [mp.Process(target=sender, args=(port, payloads[w], start, results)) for w in range(k)]
        for p in procs:
            p.start()
        time.sleep(0.5)
        spy = None
        if profile is not None:
            spy = start_profiler(pid, profile / f"ingest-{backend}.txt")
            time.sleep(1)
        cpu0 = cpu_seconds(pid)
        busy0, _ = machine_busy()
        t0 = time.perf_counter()
        start.set()
        acked = failed = 0
        t_end = t0
        for _ in procs:
            got = results.get(timeout=600)
            if isinstance(got, Exception):
                for p in procs:
                    p.kill()
                stop_profiler(spy)
                raise SystemExit(f"a sender failed: {got!r}")
            a, f, t = got
            acked, failed, t_end = acked + a, failed + f, max(t_end, t)
        for p in procs:
            p.join()
        elapsed = t_end - t0
        cpu = cpu_seconds(pid) - cpu0
        machine = machine_busy()[0] - busy0
        stop_profiler(spy)
        server.kill()
        durable = count_rows(url)
        print(f"  {backend}: {acked} acknowledged, {failed} failed, {durable} found after SIGKILL, "
              f"{elapsed:.2f} s, CPU: server {cpu:.2f} s, whole machine {machine:.2f} s", file=sys.stderr)
        return {"acked": acked / elapsed, "durable": min(durable, acked) / elapsed, "lost": acked - durable,
                "cpu": 100 * cpu / elapsed, "machine": 100 * machine / elapsed}


# --- against the real zabbix_server -----------------------------------------------------------------

RESPONSE = re.compile(rb"processed: (\d+); failed: (\d+)")
ZABBIX_BATCH = 250  # values per connection, fixed in zabbix_sender


def sender_files(tmp: Path, k: int, n: int, base_clock: int, tag: str, per_second: int = 1) -> list[Path]:
    """zabbix_sender -T -N input, one file per sender: host, key, clock, ns, value; per_second values of
    each item a second."""
    per = n // k
    files = []
    for w in range(k):
        path = tmp / f"{tag}-{w}.txt"
        path.write_text("".join(f"bench-{j % HOSTS} bench.k[{(j // HOSTS) % ITEMS}] "
                                "{} {} ".format(*clock_ns(base_clock, j, per_second)) + f"{j}.5\n"
                                for j in range(w * per, (w + 1) * per)))
        files.append(path)
    return files


def send_all(port: int, files: list[Path]) -> tuple[int, int]:
    """Runs one zabbix_sender per file at once; returns the values the server processed and failed."""
    sender_bin = shutil.which("zabbix_sender") or "zabbix_sender"
    outs = [f.with_suffix(".out") for f in files]
    procs = []
    try:
        for f, out in zip(files, outs, strict=True):
            with out.open("wb") as o:  # a file, not a pipe: a full pipe would stall a sender
                procs.append(subprocess.Popen([sender_bin, "-z", "127.0.0.1", "-p", str(port), "-T", "-N", "-v",
                                               "-i", str(f)], stdout=o, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait(600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    processed = failed = 0
    for out in outs:
        for m in RESPONSE.finditer(out.read_bytes()):
            processed, failed = processed + int(m[1]), failed + int(m[2])
    return processed, failed


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _children_cpu() -> float:
    """CPU of the child processes waited for so far (the senders; the servers are waited for only at the end)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Target:
    """One server under test: where to send, how to count its rows, whose CPU to read."""

    def __init__(self, name: str, port: int, url: str, server_pids: Callable[[], list[int]]) -> None:
        import psycopg

        self.name, self.port, self.server_pids = name, port, server_pids
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET max_parallel_workers_per_gather = 0")  # counting must not take both cores
        self.rounds: list[dict[str, float]] = []

    def rows(self) -> int:
        return self.conn.execute("SELECT count(*) FROM history").fetchone()[0]

    def commits(self) -> int:
        """Transactions committed in this server's database so far (PostgreSQL's statistics, which
        lag up to a second: read after the rows are in, they count the round's; the bench's own
        counts add a few)."""
        return self.conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                                 ).fetchone()[0]

    def db_pids(self) -> list[int]:
        """The PostgreSQL backends serving this server (not the bench's own connection)."""
        return [r[0] for r in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]

    def wait_rows(self, expected: int, timeout: float) -> tuple[int, float]:
        """(rows, when): `when` is the start of the first count that saw them all (the rows were in by then).

        A count of a million rows takes a core for ~50 ms, taken from the server being measured: the
        wait between counts is half the time left at the rate seen so far (a few counts in all, then
        one every ~20 ms near the end), never less than a count takes.
        """
        deadline = time.perf_counter() + timeout
        first: tuple[float, int] | None = None
        while True:
            t = time.perf_counter()
            rows = self.rows()
            took = time.perf_counter() - t
            if rows >= expected or t > deadline:
                return rows, t
            if first is None or rows <= first[1]:
                first = (t, rows) if first is None else first
                wait = 0.1
            else:
                wait = 0.5 * (expected - rows) * (t - first[0]) / (rows - first[1])
            time.sleep(min(1.0, max(0.02, took, wait)))

    def measure(self, files: list[Path]) -> dict[str, float]:
        self.conn.execute("TRUNCATE history")
        pids, db = self.server_pids(), self.db_pids()
        cpu0, db0 = cpu_of(pids), cpu_of(db)
        commits0 = self.commits()
        busy0, total0 = machine_busy()
        senders0 = _children_cpu()
        t0 = time.perf_counter()
        processed, failed = send_all(self.port, files)
        t_acked = time.perf_counter()
        senders = _children_cpu() - senders0
        rows, t_durable = self.wait_rows(processed, 120)
        cpu, db_cpu = cpu_of(pids) - cpu0, cpu_of(db) - db0
        time.sleep(1.1)  # the statistics' flush
        commits = self.commits() - commits0
        busy, total = machine_busy()
        machine = 100 * (busy - busy0) / (total - total0)
        r = {"acked": processed / (t_acked - t0), "durable": min(rows, processed) / (t_durable - t0),
             "cpu_100k": 1e5 * cpu / max(rows, 1), "db_cpu_100k": 1e5 * db_cpu / max(rows, 1),
             "senders_100k": 1e5 * senders / max(rows, 1), "per_tx": rows / max(commits, 1)}
        print(f"  {self.name}: {processed} processed, {failed} failed, {rows} rows; acknowledged in "
              f"{t_acked - t0:.2f} s, durable in {t_durable - t0:.2f} s ({r['durable']:.0f} values/s); CPU: server "
              f"{cpu:.2f} s, its PostgreSQL backends {db_cpu:.2f} s, senders {senders:.2f} s; "
              f"machine {machine:.0f}% busy; {commits} transactions ({r['per_tx']:.0f} values each)",
              file=sys.stderr)
        if failed or rows < processed:
            print(f"  {self.name}: WARNING: {failed} values failed, {processed - rows} processed values not in the "
                  "database after 120 s", file=sys.stderr)
        self.rounds.append(r)
        return r

    def warm_up(self, tmp: Path, base_clock: int) -> None:
        """A small load first: proves hosts and items are known and warms the server up."""
        self.conn.execute("TRUNCATE history")
        files = sender_files(tmp, 1, 1000, base_clock, f"warm-{self.name}")
        processed, failed = send_all(self.port, files)
        rows, _ = self.wait_rows(1000, 30)
        if processed != 1000 or rows != 1000:
            raise RuntimeError(f"{self.name}: warm-up: {processed} of 1000 values processed, {failed} failed, "
                               f"{rows} rows stored")

    def close(self) -> None:
        self.conn.close()


def versus_zabbix(binary: Path, k: int, n: int, rounds: int, profile: Path | None, recent: bool = True) -> None:
    hosts = [f"bench-{h}" for h in range(HOSTS)]
    keys = [f"bench.k[{i}]" for i in range(ITEMS)]
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-load-"))
    targets: list[Target] = []
    spy = None
    try:
        with VigilServer("postgresql") as vs, ZabbixPeer(binary, PG_ADMIN, hosts, keys) as zs:
            assert vs.proc is not None
            vpid = vs.proc.pid
            targets = [Target("vigil", vs.port, vs.url, lambda: [vpid]), Target("zabbix", zs.port, zs.url, zs.pids)]
            # --clocks late: each round in past hours of its own (a round spans N/1000 s): when rounds
            # shared a past hour, zabbix_server merged into the trends the previous round left (an UPDATE
            # per item) and its PostgreSQL backends took 2-3x their usual CPU in that round. Recent values
            # share the current hour, whose trends zabbix_server keeps in its cache until the hour ends.
            hour = 3600
            base_clock = (int(time.time()) - 3 * 86400) // hour * hour
            span = -(-(n // 1000 + 1) // hour) * hour
            for t in targets:
                t.warm_up(tmp, base_clock - 86400)
            if profile is not None:
                spy = start_profiler(vpid, profile / "ingest-vs-zabbix-vigil.txt")
                time.sleep(1)
            for r in range(rounds):
                files = (sender_files(tmp, k, n, recent_base(n), f"round-{r}", RECENT_PER_SECOND) if recent
                         else sender_files(tmp, k, n, base_clock + r * span, f"round-{r}"))
                for t in targets:
                    t.measure(files)
                for f in files:
                    f.unlink()
            stop_profiler(spy)
            spy = None
    finally:
        stop_profiler(spy)
        for t in targets:
            t.close()
        shutil.rmtree(tmp, ignore_errors=True)
    v, z = targets
    best_v, best_z = (max(r["durable"] for r in t.rounds) for t in targets)
    med_v, med_z = (statistics.median(r["durable"] for r in t.rounds) for t in targets)
    print(f"  median of rounds: vigil {med_v:.0f}, zabbix {med_z:.0f} values/s, ratio {med_v / med_z:.2f}",
          file=sys.stderr)
    print(f"ingest_postgres_acknowledged: {max(r['acked'] for r in v.rounds):.0f} values/s")
    print(f"ingest_zabbix_acknowledged: {max(r['acked'] for r in z.rounds):.0f} values/s")
    print(f"ingest_postgres_durable: {best_v:.0f} values/s")
    print(f"ingest_zabbix_durable: {best_z:.0f} values/s")
    print(f"ingest_ratio_vs_zabbix: {best_v / best_z:.2f}")
    print(f"ingest_cpu_per_100k_values: {statistics.median(r['cpu_100k'] for r in v.rounds):.2f} s")
    print(f"ingest_zabbix_cpu_per_100k_values: {statistics.median(r['cpu_100k'] for r in z.rounds):.2f} s")
    print(f"ingest_postgres_db_cpu_per_100k_values: {statistics.median(r['db_cpu_100k'] for r in v.rounds):.2f} s")
    print(f"ingest_zabbix_db_cpu_per_100k_values: {statistics.median(r['db_cpu_100k'] for r in z.rounds):.2f} s")
    print(f"ingest_postgres_values_per_transaction: {statistics.median(r['per_tx'] for r in v.rounds):.0f} values")
    print(f"ingest_zabbix_values_per_transaction: {statistics.median(r['per_tx'] for r in z.rounds):.0f} values")
    senders = statistics.median(r["senders_100k"] for r in v.rounds)
    print(f"ingest_senders_cpu_per_100k_values: {senders:.2f} s")
    # What 2x would leave the server: every core busy for 100k values at twice zabbix_server's best rate,
    # less what the senders and vigil's PostgreSQL backends took for them.
    db = statistics.median(r["db_cpu_100k"] for r in v.rounds)
    budget = 1e5 * (os.cpu_count() or 1) / (2 * best_z) - senders - db
    print(f"ingest_server_cpu_budget_for_2x_per_100k_values: {budget:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (within 60 s, with --vs-zabbix too)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"],
                    help="default both; postgresql with --vs-zabbix")
    ap.add_argument("-K", type=int, default=4, help="concurrent sender processes (default 4)")
    ap.add_argument("-N", type=int, help="values in all (default 1,000,000; --quick 200,000; a round's with "
                                         "--vs-zabbix)")
    ap.add_argument("-B", type=int, default=250, help="values per batch/connection (default 250)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="record the server with py-spy into DIR")
    ap.add_argument("--vs-zabbix", type=Path, metavar="PATH",
                    help="also run the zabbix_server binary at PATH on PostgreSQL, rounds interleaved")
    ap.add_argument("--rounds", type=int, help="rounds per server with --vs-zabbix (default 3)")
    ap.add_argument("--clocks", choices=["recent", "late"], default="recent",
                    help="recent (default): values of the last seconds, as agents send them; late: values "
                         "of three days ago, as a backlog brings them")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers started here are stopped and their databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.vs_zabbix is not None:
        if args.backend not in (None, "postgresql"):
            ap.error("--vs-zabbix runs on PostgreSQL only")
        if args.B != ZABBIX_BATCH:
            ap.error(f"--vs-zabbix: zabbix_sender sends {ZABBIX_BATCH} values per connection, -B must be that")
        if not os.access(args.vs_zabbix, os.X_OK):
            ap.error(f"--vs-zabbix: {args.vs_zabbix} is not an executable file")
        n = args.N or (200_000 if args.quick else 1_000_000)
        rounds = args.rounds or 3
        print(f"ingest vs zabbix_server: {args.K} zabbix_sender x {ZABBIX_BATCH}-value batches, {n} values a round, "
              f"{rounds} rounds each, {HOSTS * ITEMS} items, {args.clocks} clocks", file=sys.stderr)
        versus_zabbix(args.vs_zabbix, args.K, n, rounds, args.profile, args.clocks == "recent")
        return
    n = args.N or (200_000 if args.quick else 1_000_000)
    backends = ["sqlite", "postgresql"] if args.backend in (None, "both") else [args.backend]
    print(f"ingest: {args.K} senders x {args.B}-value batches, {n} values, {HOSTS * ITEMS} items, {args.clocks} clocks",
          file=sys.stderr)
    figures = {}
    for b in backends:
        figures[b] = run(b, args.K, n, args.B, args.profile, args.clocks == "recent")
    for b in backends:
        name = "postgres" if b == "postgresql" else b
        print(f"ingest_{name}_acknowledged: {figures[b]['acked']:.0f} values/s")
        print(f"ingest_{name}_durable: {figures[b]['durable']:.0f} values/s")
        print(f"ingest_{name}_lost_after_sigkill: {figures[b]['lost']:.0f} values")
        print(f"ingest_{name}_server_cpu: {figures[b]['cpu']:.0f} %")
        print(f"ingest_{name}_machine_cpu: {figures[b]['machine']:.0f} % (of {os.cpu_count() or 1}00 %)")

if __name__ == "__main__":
    main()
