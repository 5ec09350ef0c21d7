"""`vigil proxy` throughput: values accepted durably from senders, and the drain after an outage.

    python bench/proxy.py [--quick] [--seconds 10] [--clients 4] [--batch 1000]

Runs a real `vigil server` (SQLite) and a real `vigil proxy` (active) on loopback. With the server
stopped, `--clients` threads send `sender data` of `--batch` values each to the proxy for
`--seconds`; every value counted was committed to the proxy's buffer before the answer. Then the
server starts and the time until the proxy's buffer is empty is the drain. Prints:
  proxy_accept_rate    values/s the proxy answered `processed` for (committed to its buffer)
  proxy_buffered       values buffered through the outage
  proxy_drain_rate     values/s delivered to the server and acknowledged once it is back
  proxy_rss            the proxy's resident memory after the run
Everything shares this machine's CPUs (senders, proxy, server).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402

from tests.conftest import VigilServer, wait_until  # noqa: E402
from tests.vigil_proxy import VigilProxy  # noqa: E402

CONFIG = """
proxies: [{name: bench-proxy, mode: active}]
hosts:
  - host: far1
    proxy: bench-proxy
    items: [{key: trap.a, type: trapper, value_type: unsigned}]
"""


def sender(port: int, batch: int, deadline: float, counts: list[int], i: int) -> None:
    import socket

    clock = int(time.time()) - 60
    n = 0
    while time.monotonic() < deadline:
        data = [{"host": "far1", "key": "trap.a", "value": str(k), "clock": clock, "ns": (n + k) % 999_999_999}
                for k in range(batch)]
        body = zbxd.encode(json.dumps({"request": "sender data", "data": data}).encode(), compress=True)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(body)
            _, reply = zbxd.recv_frame(s)
        info = json.loads(reply).get("info", "")
        if f"processed: {batch};" in info:
            counts[i] += batch
        n += batch


def unsent(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as c:
        return int(c.execute("SELECT count(*) FROM proxy_outbox WHERE sent = 0").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as d:
        tmp = Path(d)
        server = VigilServer(tmp, f"sqlite:///{tmp / 'vigil.db'}").start()
        proxy = VigilProxy(tmp, "bench-proxy", server=f"127.0.0.1:{server.port}", StartPollers="0",
                           ProxyLocalBuffer="0", LogType="file")
        try:
            server.import_yaml(CONFIG)
            proxy.start()
            proxy.wait_for_host("far1")
            server.stop()
            counts = [0] * args.clients
            deadline = time.monotonic() + seconds
            t0 = time.monotonic()
            threads = [threading.Thread(target=sender, args=(proxy.port, args.batch, deadline, counts, i))
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
            buffered = unsent(proxy.db)
            accepted = sum(counts)
            server.start()  # the drain is timed from when it listens (not its migration check)
            t1 = time.monotonic()
            wait_until(lambda: unsent(proxy.db) == 0, 300, "the proxy's buffer to drain", interval=0.05)
            drain = time.monotonic() - t1
            assert proxy.proc is not None
            rss = psutil.Process(proxy.proc.pid).memory_info().rss
        finally:
            proxy.stop()
            server.stop()
    print(f"proxy_accept_rate: {accepted / elapsed:.0f} values/s")
    print(f"proxy_buffered: {buffered} values")
    print(f"proxy_drain_rate: {buffered / drain:.0f} values/s")
    print(f"proxy_rss: {rss / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
