"""`vigil proxy`'s memory with 10,000 items (issue 16: RSS <= 80 MB; the real zabbix_proxy: 51.7 MB).

    python bench/proxy_rss.py [--quick] [--rounds R] [--importtime]

On loopback: a `vigil server` (SQLite) with one active proxy and a host of 10,000 trapper items and
a few passive agent items polled from a real zabbix_agentd; a `vigil proxy` (4 pollers) that takes
that configuration; then R rounds of one value for every trapper item (1000-value `sender data`
batches), each round waited for until the server stored it. The proxy's memory is read from
/proc/PID/status once its configuration is loaded and again after the values:
  vigil_proxy_rss_loaded   VmRSS with the configuration loaded, before any value
  vigil_proxy_hwm          VmHWM (the peak RSS) at the end
  vigil_proxy_pss          Pss (/proc/PID/smaps_rollup) at the end, what bench/proxy.py reports
  vigil_proxy_rss          VmRSS at the end
--importtime: the proxy runs with PYTHONPROFILEIMPORTTIME=1; the slowest imports are printed to stderr.
--quick: 2 rounds, within 60 s; the default is 10 rounds. The machine may be shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402

from tests.conftest import VigilServer, free_port, require, stop_process, wait_port  # noqa: E402
from tests.vigil_proxy import VigilProxy  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from proxy_estate import copy_trap_items  # noqa: E402

HOST, PROXY, ITEMS, BATCH = "rss-host", "rss-proxy", 10_000, 1000
AGENT_KEYS = ["agent.ping", "system.uptime", "system.cpu.num", "vfs.fs.size[/,free]", "proc.num[]"]

CONFIG = """
proxies:
  - {name: %(proxy)s, mode: active, allowed_addresses: [127.0.0.1]}
hosts:
  - host: %(host)s
    proxy: %(proxy)s
    interfaces: [{type: agent, address: 127.0.0.1, port: %(agent_port)d}]
    items:
      - {key: trap.0, type: trapper, value_type: unsigned}
%(agent_items)s
"""


def provision(server: VigilServer, agent_port: int) -> None:
    """trap.1... are copies of trap.0's row made by SQL (as bench/proxy.py: importing 10,000 items
    through `vigil config import` takes minutes on a loaded machine)."""
    server.cli("db", "upgrade")
    agent_items = "\n".join(f"      - {{key: '{k}', type: agent, value_type: float, delay: 5s}}" for k in AGENT_KEYS)
    server.import_yaml(CONFIG % {"proxy": PROXY, "host": HOST, "agent_port": agent_port, "agent_items": agent_items})
    copy_trap_items(server.database_url, ITEMS).close()


def send(port: int, values: list[dict]) -> int:
    body = json.dumps({"request": "sender data", "data": values}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(zbxd.encode(body))
        _, reply = zbxd.recv_frame(s)
    info = json.loads(reply).get("info", "")
    return int(info.split("processed: ")[1].split(";")[0]) if "processed: " in info else 0


def server_count(server: VigilServer, table: str) -> int:
    db = sqlite3.connect(f"file:{server.database_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def start_agentd(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "zabbix_agentd.conf"
    conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname={HOST}\n"
                    f"LogType=console\nPidFile={tmp}/zabbix_agentd.pid\nStartAgents=2\nAllowRoot=1\n")
    proc = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    return proc, port


def importtime_report(text: str, top: int = 25) -> None:
    rows = []
    for line in text.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:"):].split("|")
            try:
                rows.append((int(parts[1]), parts[2].rstrip()))
            except ValueError:
                continue
    rows.sort(reverse=True)
    print(f"  {len(rows)} modules imported; slowest (cumulative us):", file=sys.stderr)
    for us, name in rows[:top]:
        print(f"  {us:>9} {name}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds of values, within 60 s")
    ap.add_argument("--rounds", type=int, default=10, help="values per trapper item (default 10; --quick 2)")
    ap.add_argument("--config-frequency", type=int, default=3600,
                    help="the proxy's ConfigFrequency (default 3600, Zabbix's; each reply holds all 10,000 items)")
    ap.add_argument("--importtime", action="store_true", help="print the proxy's slowest imports")
    args = ap.parse_args()
    rounds = 2 if args.quick else args.rounds
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-proxy-rss-") as d:
        tmp = Path(d)
        agentd, agent_port = start_agentd(tmp)
        server = VigilServer(tmp, f"sqlite:///{tmp / 'vigil.db'}")
        proxy = VigilProxy(tmp, PROXY, server=f"127.0.0.1:{server.port}", ConfigFrequency=str(args.config_frequency))
        if args.importtime:
            os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
        try:
            provision(server, agent_port)
            server.start()
            proxy.start()
            os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
            assert proxy.proc is not None
            pid = proxy.proc.pid
            last = f"trap.{ITEMS - 1}"
            wait_for(lambda: send(proxy.port, [{"host": HOST, "key": last, "value": "0"}]) == 1, 120,
                     "the proxy to load its 10,000 items")
            wait_for(lambda: server_count(server, "history") >= 1, 60, "an agent value to reach the server")
            print(f"  configuration loaded after {time.monotonic() - began:.1f} s", file=sys.stderr)
            loaded = status_kb(pid, "VmRSS")
            stored = server_count(server, "history_uint")
            clock = int(time.time())
            for r in range(rounds):
                sent = 0
                for b in range(0, ITEMS, BATCH):
                    sent += send(proxy.port, [{"host": HOST, "key": f"trap.{i}", "value": str(r * ITEMS + i),
                                               "clock": clock + r, "ns": i} for i in range(b, b + BATCH)])
                if sent != ITEMS:
                    raise SystemExit(f"round {r}: {sent} of {ITEMS} values processed")
                stored += ITEMS
                wait_for(lambda s=stored: server_count(server, "history_uint") >= s, 120,
                         f"round {r}'s values to reach the server")
            print(f"  {rounds} rounds of {ITEMS} values stored after {time.monotonic() - began:.1f} s",
                  file=sys.stderr)
            rss, hwm, pss = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"), pss_kb(pid)
            threads = status_kb(pid, "Threads")
        finally:
            proxy.stop()
            server.stop()
            stop_process(agentd)
        if args.importtime:
            importtime_report(proxy.log.with_suffix(".out").read_text(errors="replace"))
    print(f"  the proxy had {threads} threads", file=sys.stderr)
    print(f"vigil_proxy_rss_loaded: {loaded / 1024:.1f} MB")
    print(f"vigil_proxy_hwm: {hwm / 1024:.1f} MB")
    print(f"vigil_proxy_pss: {pss / 1024:.1f} MB")
    print(f"vigil_proxy_rss: {rss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
