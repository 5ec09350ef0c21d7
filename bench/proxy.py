"""Proxy figures (issue 16): the real zabbix_proxy 6.0 as the anchor and `vigil proxy`, measured in one run.

For each proxy, in one run, on loopback: a `vigil server` on SQLite with one active proxy and a host
of 10,000 trapper items, a relay between the proxy and the server that forwards or, for the outage,
closes every connection (tests/proxyfaults.py's fault front, here without decoding what it forwards),
then

1. accept: with the front closing every connection (an outage), K concurrent sender-protocol clients
   send N values in 1000-value batches to the proxy's trapper port. "durable" is N over the time until
   all N are in the proxy's buffer: for zabbix_proxy the rows in its SQLite proxy_history (it answers
   senders from its history cache, before writing); for the Vigil proxy the acknowledged values (it
   commits before it answers, issue 16);
2. drain: the front passes again; the N buffered values over the time until the server stores them all;
3. lag: one value every 0.1 s with its clock, sender -> visible in the server's store (its history or,
   not yet moved there, its staging table: the store reads both), p50/p99;
4. RSS: the proxy's memory with the 10,000 items loaded, as the sum of the proportional set size
   (Pss, /proc/PID/smaps_rollup) of its processes (zabbix_proxy forks ~30 sharing memory: summing
   their RSS would count the shared pages many times).

    python bench/proxy.py [--quick] [-N VALUES] [-K CLIENTS] [--only zabbix|vigil] [--keep DIR]

--quick: N=30,000 and 6 s of lag samples; the full run buffers 1,000,000. Both proxies run with
DataSenderFrequency=1, ConfigFrequency=3600 (the default: they take the configuration once at start;
the tests' 1 s would have the server build the 10,000 items' configuration every second) and keep no
sent values (ProxyLocalBuffer=0, zabbix_proxy's default).
`--keep DIR` leaves the servers' and proxies' files and logs there (for profiling: py-spy on the
pids printed). The machine may be shared with other work: figures are approximate, compare the two
proxies of one run. Ends with `name: value unit` lines, for KIND zabbix and vigil:
KIND_proxy_accept (values/s), KIND_proxy_drain (values/s), KIND_proxy_lag_p50 and KIND_proxy_lag_p99 (s),
KIND_proxy_rss (MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402
from vigil.server.config.migrate import engine_for  # noqa: E402
from vigil.server.config.repo import ConfigRepo  # noqa: E402

from tests.conftest import VigilServer  # noqa: E402
from tests.proxyfaults import FaultFront, Mode, _read_frame  # noqa: E402
from tests.vigil_proxy import VigilProxy, missing  # noqa: E402
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from proxy_estate import copy_trap_items  # noqa: E402

HOST, PROXY, ITEMS, BATCH = "bench-host", "bench-proxy", 10_000, 1000


class Relay(FaultFront):
    """The fault front in PASS or CLOSE only, relaying frames without decompressing and parsing them
    (which would cost the bench's own CPU, shared with the proxy and the server, per batch)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, frame = await _read_frame(reader)
            if self.mode is Mode.PASS:
                reply = await self._forward(frame)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, zbxd.FrameError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


CONFIG = f"""
proxies:
  - {{name: {PROXY}, mode: active, allowed_addresses: [127.0.0.1]}}
hosts:
  - host: {HOST}
    proxy: {PROXY}
    items:
      - {{key: trap.0, type: trapper, value_type: unsigned}}
      - {{key: lag, type: trapper, value_type: unsigned}}
"""


def provision(server: VigilServer) -> None:
    """The configuration with ITEMS trapper items, before the server starts. `vigil config import` of
    10,000 items takes minutes on a loaded machine, so trap.1... are copies of trap.0's row made by SQL."""
    server.cli("db", "upgrade")
    server.import_yaml(CONFIG)
    db = copy_trap_items(server.database_url, ITEMS)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is then copied for each run
    finally:
        db.close()


def send(port: int, values: list[dict]) -> int:
    """One `sender data` request; how many values the proxy said it processed (the reply is printed
    when it is not all of them)."""
    body = json.dumps({"request": "sender data", "data": values}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(zbxd.encode(body))
        _, reply = zbxd.recv_frame(s)
    info = json.loads(reply).get("info", "")
    done = int(info.split("processed: ")[1].split(";")[0]) if "processed: " in info else 0
    if done != len(values) and len(values) > 1:
        print(f"  {done} of {len(values)} values processed: {reply[:300]!r}", file=sys.stderr)
    return done


def batches(n: int, start: int) -> list[list[dict]]:
    clock = int(time.time())
    out = []
    for b in range(start, start + n, BATCH):
        out.append([{"host": HOST, "key": f"trap.{i % ITEMS}", "value": str(i), "clock": clock, "ns": i}
                    for i in range(b, min(b + BATCH, start + n))])
    return out


# The server's SQLite store commits numeric values into a staging table and moves them into history
# within a second or so; every read looks at both (server/store/sqlite.py), so both count as stored.
# One statement: one snapshot, in which a value being moved is in exactly one of the two.
VISIBLE_COUNT = "SELECT (SELECT count(*) FROM history_uint) + (SELECT count(*) FROM history_uint_stage)"
VISIBLE_VALUES = ("SELECT value FROM history_uint WHERE itemid = ? "
                  "UNION ALL SELECT value FROM history_uint_stage WHERE itemid = ?")


def server_count(server: VigilServer) -> int:
    db = sqlite3.connect(f"file:{server.database_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute(VISIBLE_COUNT).fetchone()[0])
    finally:
        db.close()


def pss_mb(pid: int) -> float:
    """Sum of Pss over `pid`'s process group (the proxy and the processes it forked)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pid:
                continue
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def run(kind: str, tmp: Path, n: int, clients: int, lag_seconds: float, proxy_db: Path | None,
        options: dict[str, str], server_db: Path) -> dict[str, float]:
    shutil.copyfile(server_db, tmp / "vigil.db")  # provisioned once for both proxies
    server = VigilServer(tmp, f"sqlite:///{tmp / 'vigil.db'}")
    front = Relay(0).start()
    proxy: ZabbixProxy | VigilProxy
    if kind == "zabbix":
        proxy = ZabbixProxy(tmp, PROXY, server=f"127.0.0.1:{front.port}", database=proxy_db,
                            **{"StartPollers": "1", "StartTrappers": "4", "ConfigFrequency": "3600", **options})
    else:
        proxy = VigilProxy(tmp, PROXY, server=f"127.0.0.1:{front.port}",
                           **{"StartPollers": "1", "ProxyLocalBuffer": "0", "ConfigFrequency": "3600", **options})
    figures: dict[str, float] = {}
    began = time.monotonic()
    try:
        server.start()
        front.upstream = server.port
        proxy.start()
        print(f"  {kind}: server and proxy started after {time.monotonic() - began:.1f} s (server pid "
              f"{server.proc.pid}, proxy pid {proxy.proc.pid})", file=sys.stderr)  # type: ignore[union-attr]
        wait_for(lambda: send(proxy.port, [{"host": HOST, "key": "trap.0", "value": "0", "clock": int(time.time()),
                                            "ns": 0}]) == 1, 120, f"{kind} proxy to load its configuration", 0.5)
        wait_for(lambda: server_count(server) >= 1, 60, "the first value to reach the server")
        print(f"  {kind}: ready after {time.monotonic() - began:.1f} s", file=sys.stderr)
        figures["rss"] = pss_mb(proxy.proc.pid)  # type: ignore[union-attr]

        # 1. accept during an outage
        front.set(Mode.CLOSE)
        time.sleep(1.5)  # let a batch in flight finish
        work = batches(n, 1)
        acked = [0] * clients

        def client(c: int) -> None:
            for batch in work[c::clients]:
                acked[c] += send(proxy.port, batch)
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_acked = time.monotonic()
        if sum(acked) != n:
            raise SystemExit(f"{kind}: {sum(acked)} of {n} values acknowledged")
        if isinstance(proxy, ZabbixProxy):
            zp = proxy
            t_durable = wait_for(lambda: zp.query("SELECT count(*) FROM proxy_history")[0][0] >= n + 1, 300,
                                 "zabbix_proxy to write the values to its database", 0.02)
        else:
            t_durable = t_acked
        figures["accept"] = n / (t_durable - t0)
        print(f"  {kind}: {n} values acknowledged in {t_acked - t0:.2f} s, durable in {t_durable - t0:.2f} s",
              file=sys.stderr)

        # 2. drain
        before = server_count(server)
        t1 = time.monotonic()
        front.set(Mode.PASS)
        t_drained = wait_for(lambda: server_count(server) >= before + n, 600, "the server to store the buffer", 0.1)
        figures["drain"] = n / (t_drained - t1)
        print(f"  {kind}: drained in {t_drained - t1:.2f} s", file=sys.stderr)

        # 3. lag in steady state
        engine = engine_for(server.database_url)
        itemid = ConfigRepo(engine).item(HOST, "lag")[0]  # type: ignore[index]
        engine.dispose()
        sent: dict[int, float] = {}
        seen: dict[int, float] = {}
        stop = threading.Event()

        def watch() -> None:
            db = sqlite3.connect(f"file:{server.database_url.removeprefix('sqlite:///')}?mode=ro", uri=True,
                                 timeout=30)
            while not stop.is_set() or len(seen) < len(sent):
                now = time.monotonic()
                for (v,) in db.execute(VISIBLE_VALUES, (itemid, itemid)):
                    seen.setdefault(int(v), now)
                if stop.is_set() and time.monotonic() > stop_at + 30:
                    break
                time.sleep(0.02)
            db.close()
        stop_at = 0.0
        watcher = threading.Thread(target=watch)
        watcher.start()
        seq = 0
        end = time.monotonic() + lag_seconds
        while time.monotonic() < end:
            seq += 1
            sent[seq] = time.monotonic()
            send(proxy.port, [{"host": HOST, "key": "lag", "value": str(seq), "clock": int(time.time()), "ns": seq}])
            time.sleep(0.1)
        stop_at = time.monotonic()
        stop.set()
        watcher.join()
        lags = sorted(seen[s] - sent[s] for s in sent if s in seen)
        if len(lags) < len(sent):
            print(f"  {kind}: WARNING: {len(sent) - len(lags)} lag values not seen", file=sys.stderr)
        figures["lag_p50"] = statistics.median(lags)
        figures["lag_p99"] = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        return figures
    finally:
        proxy.stop()
        front.stop()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run, within 60 s")
    ap.add_argument("-N", type=int, help="values buffered through the outage (default 1,000,000; --quick 30,000)")
    ap.add_argument("-K", type=int, default=4, help="concurrent sender clients (default 4)")
    ap.add_argument("--only", choices=("zabbix", "vigil"), help="measure one proxy only")
    ap.add_argument("--keep", type=Path, help="a directory to leave the processes' files and logs in")
    ap.add_argument("-o", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a proxy configuration option (e.g. DebugLevel=4), for the proxies measured")
    args = ap.parse_args()
    n = args.N or (30_000 if args.quick else 1_000_000)
    lag_seconds = 6 if args.quick else 30
    kinds = [args.only] if args.only else ["zabbix", "vigil"]
    options = dict(o.split("=", 1) for o in args.options)
    if "vigil" in kinds and missing() is not None:
        raise SystemExit(f"vigil proxy cannot run: {missing()}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as scratch:
        tmp = Path(scratch) if args.keep is None else args.keep
        tmp.mkdir(parents=True, exist_ok=True)
        proxy_db = None
        if "zabbix" in kinds:
            t = time.monotonic()
            proxy_db = empty_proxy_database(tmp / "schema")
            print(f"  zabbix_proxy's empty database made in {time.monotonic() - t:.1f} s", file=sys.stderr)
        t = time.monotonic()
        (tmp / "provision").mkdir()
        template = VigilServer(tmp / "provision", f"sqlite:///{tmp / 'provision' / 'vigil.db'}")
        provision(template)
        print(f"  the server's configuration written in {time.monotonic() - t:.1f} s", file=sys.stderr)
        for kind in kinds:
            d = tmp / kind
            d.mkdir()
            results[kind] = run(kind, d, n, args.K, lag_seconds, proxy_db, options, tmp / 'provision' / 'vigil.db')
    print("  figures are approximate: the machine is shared with other work", file=sys.stderr)
    for kind in kinds:
        r = results[kind]
        print(f"{kind}_proxy_accept: {r['accept']:.0f} values/s")
        print(f"{kind}_proxy_drain: {r['drain']:.0f} values/s")
        print(f"{kind}_proxy_lag_p50: {r['lag_p50']:.3f} s")
        print(f"{kind}_proxy_lag_p99: {r['lag_p99']:.3f} s")
        print(f"{kind}_proxy_rss: {r['rss']:.1f} MB")


if __name__ == "__main__":
    main()
