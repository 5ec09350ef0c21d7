"""Pollers: SNMP bulk-walk throughput against Net-SNMP's `snmpbulkwalk` in the same run, and the
scheduler's lateness with 10,000 items polled at 60 s.

    python bench/pollers.py [--quick] [--reps 3] [--max-repetitions 50] [--items 10000] [--delay 60]
                            [--seconds 75] [--agent] [--all-walks]

SNMP: starts the test snmpd (tests/peers/snmpd, Debian's snmpd package) on a free loopback port and
walks the whole agent (`.1.3.6.1`, several thousand varbinds) with Vigil's v2c path (its own BER
codec) and with the CLI (process start included), best of `--reps` each. `--all-walks` adds the same
through pysnmp (`fast=False`) and v3 authPriv SHA/AES through pysnmp. Target: the ratio >= 0.30.

Scheduler: `--items` items at `--delay` s for `--seconds` s, how late each poll starts after its slot
(Zabbix's itemid-based nextcheck). By default the poller answers at once (the scheduler's own cost);
with `--agent` every item is a real passive check of a vigil-agent started for the run (agent.ping
over TCP). No database: the configuration is built in memory, values are counted. Target: p99 <= 1 s.

`--quick`: one walk each and 20 s of scheduling (within 60 s in all). Ends with one `name: value unit`
line per figure; the two the issue names are `snmp_walk_ratio_vs_snmpbulkwalk` and
`scheduler_lateness_p99`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.server.config.model import PollSpec  # noqa: E402
from vigil.server.config.repo import PollConfig, PollInterface, PollItem  # noqa: E402
from vigil.server.config.tables import ItemType, ValueType  # noqa: E402
from vigil.server.pollers.agent import poll as agent_poll  # noqa: E402
from vigil.server.pollers.scheduler import PollerSettings, Scheduler  # noqa: E402
from vigil.server.pollers.snmp import SnmpSession, SnmpTarget  # noqa: E402
from vigil.server.store.base import WriteBatch  # noqa: E402

from tests.conftest import free_port, stop_process, vigil_bin, wait_port  # noqa: E402
from tests.peers.snmpd import USERS, Snmpd  # noqa: E402

# --- SNMP walks ----------------------------------------------------------------------------------


async def walk_rate(peer: Snmpd, details: dict[str, Any], fast: bool, reps: int) -> tuple[int, float]:
    """(varbinds, best OIDs/s) of walking the whole agent with Vigil's SNMP session."""
    session = SnmpSession(SnmpTarget.from_interface("127.0.0.1", peer.port, details), fast=fast)
    try:
        await session.get_one("sysName.0")  # v3 discovery and first-use costs out of the figure
        best, count = 0.0, 0
        for _ in range(reps):
            t = time.perf_counter()
            rows = await session.walk("1.3.6.1")
            dt = time.perf_counter() - t
            count = len(rows)
            best = max(best, count / dt)
        return count, best
    finally:
        await session.close()


def cli_rate(peer: Snmpd, max_rep: int, reps: int) -> tuple[int, float]:
    """(varbinds, best OIDs/s) of Net-SNMP's snmpbulkwalk over the same agent, process start included."""
    best, count = 0.0, 0
    for _ in range(reps):
        t = time.perf_counter()
        out = peer.cli("snmpbulkwalk", f"-Cr{max_rep}", ".1.3.6.1", timeout=300)
        dt = time.perf_counter() - t
        count = out.count("\n")
        best = max(best, count / dt)
    return count, best


def walk_figures(reps: int, max_rep: int, all_walks: bool) -> dict[str, tuple[int, float]]:
    """name -> (varbinds, OIDs/s): vigil_v2c and snmpbulkwalk_v2c (and pysnmp's with `all_walks`)."""
    v2c = {"version": 2, "community": "public-ro", "max_repetitions": max_rep}
    peer = Snmpd.start()
    try:
        figures = {"vigil_v2c": asyncio.run(walk_rate(peer, v2c, True, reps))}
        if all_walks:
            v3 = USERS["u-sha-aes"].details(max_repetitions=max_rep)
            figures["pysnmp_v2c"] = asyncio.run(walk_rate(peer, v2c, False, reps))
            figures["pysnmp_v3_authpriv"] = asyncio.run(walk_rate(peer, v3, False, reps))
        figures["snmpbulkwalk_v2c"] = cli_rate(peer, max_rep, reps)
        return figures
    finally:
        peer.stop()


# --- scheduler lateness --------------------------------------------------------------------------


class _NoRepo:
    def version(self) -> int:
        return 1

    def save_item_states(self, rows: list[Any]) -> None:
        pass

    def save_interface_states(self, rows: list[Any]) -> None:
        pass


async def schedule(items: int, delay: int, seconds: float, port: int | None) -> dict[str, float]:
    """Run the scheduler over `items` in-memory items; returns its figures (lateness in seconds)."""
    itf = PollInterface(1, 1, 1, "127.0.0.1", port or 1, {})
    cfg = PollConfig(1, {i: PollItem(i, 1, "bench", ItemType.AGENT, ValueType.UNSIGNED, "agent.ping", delay, itf,
                                     PollSpec()) for i in range(1, items + 1)}, {1: itf}, {})
    stored = 0

    async def submit(b: WriteBatch) -> None:
        nonlocal stored
        stored += len(b)

    async def instant(item: PollItem, timeout: float) -> str:
        return "1"

    starts: Counter[int] = Counter()
    poller = agent_poll if port else instant

    async def counted(item: PollItem, timeout: float) -> str:
        starts[int(time.time())] += 1
        return await poller(item, timeout)

    sched = Scheduler(_NoRepo(), submit, PollerSettings(pollers=100),  # type: ignore[arg-type]
                      pollers={ItemType.AGENT: counted}, timeouts={})
    sched.load(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    late = sorted(sched.stats.lateness)
    out = {"polls": float(sched.stats.polls), "values": float(stored),
           "busiest_second": float(max(starts.values()) if starts else 0), "even_spread": items / delay}
    if late:
        out.update(lateness_p50=statistics.median(late), lateness_p99=late[max(int(len(late) * 0.99) - 1, 0)],
                   lateness_max=late[-1])
    return out


def scheduler_figures(items: int, delay: int, seconds: float, agent: bool) -> dict[str, float]:
    if not agent:
        return asyncio.run(schedule(items, delay, seconds, None))
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        conf = Path(d) / "agent.conf"
        conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\n"
                        f"LogType=console\nPidFile={d}/a.pid\nStartAgents=8\nAllowRoot=1\n")
        proc = subprocess.Popen([vigil_bin("vigil-agent"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 15, proc)
            return asyncio.run(schedule(items, delay, seconds, port))
        finally:
            stop_process(proc)


def print_walks(figures: dict[str, tuple[int, float]]) -> None:
    for name, (count, _) in figures.items():
        print(f"# {name}: {count} varbinds")
    for name, (_, rate) in figures.items():
        print(f"{name}: {rate:.0f} OIDs/s")
    print(f"snmp_walk_ratio_vs_snmpbulkwalk: {figures['vigil_v2c'][1] / figures['snmpbulkwalk_v2c'][1]:.2f} ratio")


def print_schedule(f: dict[str, float]) -> None:
    print(f"# scheduler: busiest second {f['busiest_second']:.0f} polls (even spread: {f['even_spread']:.0f})")
    print(f"scheduler_polls: {f['polls']:.0f} polls")
    print(f"scheduler_values: {f['values']:.0f} values")
    for name in ("lateness_p50", "lateness_p99", "lateness_max"):
        if name in f:
            print(f"scheduler_{name}: {f[name]:.4f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one walk each, 20 s of scheduling")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-repetitions", type=int, default=50)
    ap.add_argument("--all-walks", action="store_true", help="also pysnmp's v2c and v3 authPriv walks")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--delay", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=75)
    ap.add_argument("--agent", action="store_true", help="poll a real vigil-agent")
    a = ap.parse_args()
    reps, seconds = (1, 20.0) if a.quick else (a.reps, a.seconds)
    walks = walk_figures(reps, a.max_repetitions, a.all_walks)
    sched = scheduler_figures(a.items, a.delay, seconds, a.agent)
    print_walks(walks)
    print_schedule(sched)


if __name__ == "__main__":
    main()
