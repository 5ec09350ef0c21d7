"""Ingest throughput: K sender processes push N values in batches of B into a running `vigil server`.

For each backend it starts a real server on a fresh store, provisions hosts and trapper items,
and times the senders (each batch one connection, as zabbix_sender does). "acknowledged" counts
values the server replied `processed` for; then the server is SIGKILLed and the values found in
the store give "durable". Prints one `name: value unit` line per figure at the end, including the
server's CPU use while the senders ran (100% = one core busy).

    python bench/ingest.py [--quick] [--backend sqlite|postgresql|both] [-K 4] [-N 1000000] [-B 250]
                           [--profile DIR]

--profile records the server with py-spy (from the same venv) during the run, into
DIR/ingest-<backend>.txt (py-spy's raw collapsed stacks, one line per stack with its sample count).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402
from vigil.agent.protocol.messages import ProcessedInfo, SenderData, SenderValue, parse_response  # noqa: E402

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HOSTS, ITEMS = 10, 100


def vigil() -> str:
    here = Path(sys.executable).parent / "vigil"
    return str(here) if here.exists() else (shutil.which("vigil") or "vigil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(worker: int, n: int, batch: int, base_clock: int) -> list[bytes]:
    out = []
    for start in range(0, n, batch):
        values = []
        for i in range(start, min(n, start + batch)):
            j = worker * n + i
            values.append(SenderValue(f"bench-{j % HOSTS}", f"bench.k[{(j // HOSTS) % ITEMS}]", f"{j}.5",
                                      base_clock + j // 1000, j % 1000))
        out.append(zbxd.encode(SenderData(values, base_clock, 0).to_json()))
    return out


def sender(port: int, payloads: list[bytes], start: mp.Event, result: mp.Queue) -> None:  # type: ignore[type-arg]
    start.wait()
    acked = failed = 0
    for p in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(p)
            _, body = zbxd.recv_frame(s)
        info = ProcessedInfo.parse(parse_response(body).info or "")
        acked += info.processed
        failed += info.failed
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


def run(backend: str, k: int, n: int, batch: int, profile: Path | None = None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    dbname = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'vigil.db'}"
    else:
        import psycopg

        dbname = "vigil_bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {dbname}")
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    port = free_port()
    env = dict(os.environ, VIGIL_DATABASE_URL=url, VIGIL_DATA_DIR=str(tmp), VIGIL_LISTEN=f"127.0.0.1:{port}",
               VIGIL_LOCAL_AGENT="0", VIGIL_LOG_LEVEL="warning")
    proc = None
    try:
        provision(env, tmp)
        proc = subprocess.Popen([vigil(), "server"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("vigil server did not start") from None
                time.sleep(0.1)
        per = n // k
        base_clock = int(time.time()) - 3 * 86400
        payloads = [frames(w, per, batch, base_clock) for w in range(k)]
        start, results = mp.Event(), mp.Queue()
        procs = [mp.Process(target=sender, args=(port, payloads[w], start, results)) for w in range(k)]
        for p in procs:
            p.start()
        time.sleep(0.5)
        spy = None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid),
                                    "-f", "raw", "-r", "200", "-o", str(profile / f"ingest-{backend}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu0 = cpu_seconds(proc.pid)
        busy0, _ = machine_busy()
        t0 = time.perf_counter()
        start.set()
        acked = failed = 0
        t_end = t0
        for _ in procs:
            a, f, t = results.get(timeout=600)
            acked, failed, t_end = acked + a, failed + f, max(t_end, t)
        for p in procs:
            p.join()
        elapsed = t_end - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        machine = machine_busy()[0] - busy0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = None
        durable = count_rows(url)
        print(f"  {backend}: {acked} acknowledged, {failed} failed, {durable} found after SIGKILL, "
              f"{elapsed:.2f} s, CPU: server {cpu:.2f} s, whole machine {machine:.2f} s", file=sys.stderr)
        return {"acked": acked / elapsed, "durable": min(durable, acked) / elapsed, "lost": acked - durable,
                "cpu": 100 * cpu / elapsed, "machine": 100 * machine / elapsed}
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if dbname:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (within 60 s)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("-K", type=int, default=4, help="concurrent sender processes (default 4)")
    ap.add_argument("-N", type=int, help="values in all (default 1,000,000; --quick 200,000)")
    ap.add_argument("-B", type=int, default=250, help="values per batch/connection (default 250)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="record the server with py-spy into DIR")
    args = ap.parse_args()
    n = args.N or (200_000 if args.quick else 1_000_000)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"ingest: {args.K} senders x {args.B}-value batches, {n} values, {HOSTS * ITEMS} items", file=sys.stderr)
    figures = {}
    for b in backends:
        figures[b] = run(b, args.K, n, args.B, args.profile)
    for b in backends:
        name = "postgres" if b == "postgresql" else b
        print(f"ingest_{name}_acknowledged: {figures[b]['acked']:.0f} values/s")
        print(f"ingest_{name}_durable: {figures[b]['durable']:.0f} values/s")
        print(f"ingest_{name}_lost_after_sigkill: {figures[b]['lost']:.0f} values")
        print(f"ingest_{name}_server_cpu: {figures[b]['cpu']:.0f} %")
        print(f"ingest_{name}_machine_cpu: {figures[b]['machine']:.0f} % (of {os.cpu_count() or 1}00 %)")


if __name__ == "__main__":
    main()
