"""More channels: JMX values/s through one real Zabbix Java gateway, Nagios plugin checks/s, and the
scheduler's lateness while both run in one scheduler.

    python bench/channels.py [--seconds 30] [--jmx-items 1000] [--nagios-items 100] [--quick]

Prints `name: value unit` lines:
  channels_jmx_values_per_s       JMX values stored per second, --jmx-items of one endpoint at 1 s (more
                                  than it takes) through one gateway (its own JVM as the target) with
                                  VIGIL_JAVA_POLLERS=5
  channels_jmx_requests_per_s     gateway requests per second (up to 32 keys each)
  channels_nagios_checks_per_s    Nagios plugin checks per second, --nagios-items check_load items at 1 s
  channels_mixed_*                both at once, each offered half of what it took alone (JMX items at 5 s,
                                  the 100 Nagios items at the interval that halves their rate)
  channels_lateness_p99           seconds from an item's slot to its poll's start in the mixed run
                                  (target: <= 1 s)
and then the figures of the other channels in CHANNELS (bench/channels_ssh.py: SSH checks/s over one
reused connection). No database: the configuration is built in memory, values are counted, not stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vigil.server.config.model import JMX_DEFAULT_ENDPOINT, PollSpec
from vigil.server.config.repo import PollConfig, PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import jmx, nagios
from vigil.server.pollers.scheduler import PollerSettings, Scheduler
from vigil.server.store.base import WriteBatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.peers.java_gateway import JavaGateway  # noqa: E402

Figure = tuple[str, float, str]  # name, value, unit
JMX_KEYS = ('jmx["java.lang:type=Memory",HeapMemoryUsage.used]', "jmx[java.lang:type=Threading,ThreadCount]",
            "jmx[java.lang:type=Runtime,Uptime]", "jmx[java.lang:type=ClassLoading,LoadedClassCount]")


class _NoRepo:
    def version(self) -> int:
        return 1

    def save_item_states(self, rows: list) -> None:
        pass

    def save_interface_states(self, rows: list) -> None:
        pass


@dataclass
class Run:
    values_per_s: float
    jmx_values_per_s: float
    jmx_requests_per_s: float
    checks_per_s: float
    not_supported: int
    lateness_p99: float


async def _run(gw: JavaGateway, jmx_items: int, jmx_delay: int, nagios_items: int, nagios_delay: int,
               seconds: float) -> Run:
    """One scheduler (VIGIL_POLLERS=100) polling both kinds for `seconds` after a short warm-up."""
    jmx.configure(gw.address, 5)  # VIGIL_JAVA_POLLERS=5
    nagios.configure("/usr/lib/nagios/plugins")
    jitf = PollInterface(1, 1, 4, "127.0.0.1", gw.jmx_port, {})
    aitf = PollInterface(2, 1, 1, "127.0.0.1", 10050, {})
    endpoint = JMX_DEFAULT_ENDPOINT.replace("{HOST.CONN}", "127.0.0.1").replace("{HOST.PORT}", str(gw.jmx_port))
    items: dict[int, PollItem] = {}
    for i in range(1, jmx_items + 1):  # many items asking for the same few attributes: the gateway's cost
        items[i] = PollItem(i, 1, "java", ItemType.JMX, ValueType.FLOAT, JMX_KEYS[i % len(JMX_KEYS)], jmx_delay,
                            jitf, PollSpec(jmx_endpoint=endpoint))
    for i in range(jmx_items + 1, jmx_items + nagios_items + 1):
        items[i] = PollItem(i, 1, "nagios", ItemType.NAGIOS, ValueType.UNSIGNED,
                            "nagios.check[check_load,-w,1000,1000,1000,-c,2000,2000,2000]", nagios_delay, aitf,
                            PollSpec())

    async def submit(b: WriteBatch) -> None:
        pass

    jpoller = jmx.JmxPoller()
    npoller = nagios.NagiosPoller()
    checks = 0

    async def counted_nagios(item: PollItem, timeout: float) -> object:
        nonlocal checks
        out = await npoller(item, timeout)
        checks += 1
        return out

    sched = Scheduler(None, submit, PollerSettings(pollers=100, timeout=3),  # type: ignore[arg-type]
                      pollers={ItemType.JMX: jpoller, ItemType.NAGIOS: counted_nagios}, timeouts={})
    sched.load(PollConfig(1, items, {1: jitf, 2: aitf}, {}))
    sched.repo = _NoRepo()  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(2)  # the first RMI connections and plugin runs warm up
    base_values, base_requests, base_checks = sched.stats.values, jpoller.requests, checks
    sched.stats.lateness.clear()
    await asyncio.sleep(seconds)
    late = sorted(sched.stats.lateness)
    r = Run((sched.stats.values - base_values) / seconds, 0.0, (jpoller.requests - base_requests) / seconds,
            (checks - base_checks) / seconds, sched.stats.not_supported,
            late[max(int(len(late) * 0.99) - 1, 0)] if late else 0.0)
    r.jmx_values_per_s = r.values_per_s - r.checks_per_s  # a Nagios check stores one value
    stop.set()
    await task
    return r


def jmx_and_nagios(a: argparse.Namespace) -> list[Figure]:
    """Each channel alone at more than it can take (its capacity), then both together at half of it (the
    scheduler's lateness while they run)."""
    with tempfile.TemporaryDirectory() as d:
        gw = JavaGateway.start(Path(d), pollers=5)
        try:
            j = asyncio.run(_run(gw, a.jmx_items, 1, 0, 1, a.seconds))
            n = asyncio.run(_run(gw, 0, 1, a.nagios_items, 1, a.seconds))
            delay = 5
            both = asyncio.run(_run(gw, max(int(j.jmx_values_per_s * delay / 2), 1), delay, a.nagios_items,
                                    max(round(2 * a.nagios_items / max(n.checks_per_s, 1)), 1), a.seconds))
        finally:
            gw.stop()
    return [("channels_jmx_values_per_s", j.jmx_values_per_s, "values/s"),
            ("channels_jmx_requests_per_s", j.jmx_requests_per_s, "requests/s"),
            ("channels_nagios_checks_per_s", n.checks_per_s, "checks/s"),
            ("channels_mixed_jmx_values_per_s", both.jmx_values_per_s, "values/s"),
            ("channels_mixed_nagios_checks_per_s", both.checks_per_s, "checks/s"),
            ("channels_mixed_not_supported", float(both.not_supported), "items"),
            ("channels_lateness_p99", both.lateness_p99, "s")]


def ssh_checks(a: argparse.Namespace) -> list[Figure]:
    """SSH checks/s over one reused connection, from bench/channels_ssh.py."""
    import channels_ssh  # bench/channels_ssh.py, beside this file

    return [(name, value, unit) for name, (value, unit) in channels_ssh.run(a.quick).items()]


# Each channel's figures: a function taking the parsed arguments.
CHANNELS: list[Callable[[argparse.Namespace], list[Figure]]] = [jmx_and_nagios, ssh_checks]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--jmx-items", type=int, default=1000)
    ap.add_argument("--nagios-items", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="a short run (well within 60 s)")
    a = ap.parse_args()
    if a.quick:
        a.seconds = min(a.seconds, 8)
    for figures in CHANNELS:
        for name, value, unit in figures(a):
            print(f"{name}: {value:.4g} {unit}")


if __name__ == "__main__":
    main()
