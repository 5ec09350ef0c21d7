"""Poller scheduler lateness: 10,000 items at 60 s, how late each poll starts after its slot.

    python bench/scheduler.py [--items 10000] [--delay 60] [--seconds 75] [--agent]

Prints `name: value unit` lines:
  scheduler_polls            polls started during the run
  scheduler_lateness_p50/p99/max   seconds from an item's slot (Zabbix's itemid-based nextcheck) to the
                             start of its poll (target: p99 <= 1 s)
  scheduler_busiest_second   most polls that started in one second (an even spread: items / delay)

By default the poller answers at once (the scheduler's own cost); with --agent every item is a real
passive check of a vigil-agent started for the run (agent.ping over TCP), so connection handling counts
too. No database: the configuration is built in memory and values are counted, not stored.
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

from vigil.server.config.model import PollSpec
from vigil.server.config.repo import PollConfig, PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers.agent import poll as agent_poll
from vigil.server.pollers.scheduler import PollerSettings, Scheduler
from vigil.server.store.base import WriteBatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import free_port, stop_process, vigil_bin, wait_port  # noqa: E402


async def run(items: int, delay: int, seconds: float, port: int | None) -> None:
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

    sched = Scheduler(None, submit, PollerSettings(pollers=100), pollers={ItemType.AGENT: counted},  # type: ignore[arg-type]
                      timeouts={})
    sched.load(cfg)
    sched.version = 1
    sched.repo = _NoRepo()  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    late = sorted(sched.stats.lateness)
    print(f"scheduler_polls: {sched.stats.polls} polls")
    print(f"scheduler_values: {stored} values")
    if late:
        print(f"scheduler_lateness_p50: {statistics.median(late):.4f} s")
        print(f"scheduler_lateness_p99: {late[int(len(late) * 0.99) - 1]:.4f} s")
        print(f"scheduler_lateness_max: {late[-1]:.4f} s")
    print(f"scheduler_busiest_second: {max(starts.values()) if starts else 0} polls (even spread: "
          f"{items / delay:.0f})")


class _NoRepo:
    def version(self) -> int:
        return 1

    def save_item_states(self, rows: list) -> None:
        pass

    def save_interface_states(self, rows: list) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--delay", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=75)
    ap.add_argument("--agent", action="store_true", help="poll a real vigil-agent")
    a = ap.parse_args()
    if not a.agent:
        asyncio.run(run(a.items, a.delay, a.seconds, None))
        return
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        conf = Path(d) / "agent.conf"
        conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\n"
                        f"LogType=console\nPidFile={d}/a.pid\nStartAgents=8\nAllowRoot=1\n")
        proc = subprocess.Popen([vigil_bin("vigil-agent"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 15, proc)
            asyncio.run(run(a.items, a.delay, a.seconds, port))
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
