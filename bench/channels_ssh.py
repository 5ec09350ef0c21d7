"""SSH checks per second with one connection per host reused: 100 ssh.run items on one real sshd.

    python bench/channels_ssh.py [--quick]

Starts the tests' OpenSSH sshd (tests/peers/sshd: Debian's openssh-server, on a free loopback port,
key authentication) and measures two things with Vigil's SshPoller:
  ssh_checks_per_s        100 items (`echo N`) run round robin as fast as they complete by 8 workers (the
                          channels one connection takes at once, MAX_SESSIONS), for a few seconds
  ssh_connections         connections made for all of them (1: the connection is reused)
  ssh_sched_lateness_p99  the same 100 items through the Scheduler at a 1 s interval: seconds from each
                          item's slot to the start of its poll (target <= 1 s)
  ssh_sched_not_supported polls in that run that did not give a value

`run(quick)` returns them as {name: (value, unit)} for bench/channels.py; run alone, the script ends
with one `name: value unit` line each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vigil.server.config.model import PollSpec  # noqa: E402
from vigil.server.config.repo import PollConfig, PollInterface, PollItem  # noqa: E402
from vigil.server.config.tables import ItemType, ValueType  # noqa: E402
from vigil.server.pollers.scheduler import PollerSettings, Scheduler  # noqa: E402
from vigil.server.pollers.ssh import MAX_SESSIONS, SshPoller  # noqa: E402
from vigil.server.store.base import WriteBatch  # noqa: E402

from tests.peers.sshd import Sshd  # noqa: E402

ITEMS = 100


def _items(sshd: Sshd) -> dict[int, PollItem]:
    itf = PollInterface(1, 1, 1, "127.0.0.1", sshd.port, {})
    spec = PollSpec(params="", username=sshd.user, auth=1, publickey="id_ed25519.pub", privatekey="id_ed25519")
    return {i: PollItem(i, 1, "bench", ItemType.SSH, ValueType.UNSIGNED, f"ssh.run[n{i},,{sshd.port}]", 1, itf,
                        PollSpec(**{**spec.__dict__, "params": f"echo {i}"}))
            for i in range(1, ITEMS + 1)}


async def _throughput(sshd: Sshd, tmp: Path, seconds: float) -> tuple[float, int]:
    poller = SshPoller(key_dir=sshd.key_dir, known_hosts=tmp / "known_hosts")
    items = list(_items(sshd).values())
    done = 0
    try:
        await poller(items[0], 10)  # the first connection and host key, outside the timing
        start = time.perf_counter()

        async def worker(w: int) -> None:  # MAX_SESSIONS workers over the 100 items, round robin
            nonlocal done
            n = w
            while time.perf_counter() - start < seconds:
                it = items[n % len(items)]
                if await poller(it, 10) != str(it.itemid):
                    raise RuntimeError(f"wrong output for {it.key}")
                done += 1
                n += MAX_SESSIONS

        await asyncio.gather(*(worker(w) for w in range(MAX_SESSIONS)))
        return done / (time.perf_counter() - start), poller.connects
    finally:
        await poller.close()


class _NoRepo:
    def version(self) -> int:
        return 1

    def save_item_states(self, rows: list) -> None:
        pass

    def save_interface_states(self, rows: list) -> None:
        pass


async def _scheduled(sshd: Sshd, tmp: Path, seconds: float) -> tuple[float, int, int]:
    poller = SshPoller(key_dir=sshd.key_dir, known_hosts=tmp / "known_hosts")
    values = 0

    async def submit(b: WriteBatch) -> None:
        nonlocal values
        values += len(b)

    sched = Scheduler(None, submit, PollerSettings(pollers=100), pollers={ItemType.SSH: poller},  # type: ignore[arg-type]
                      timeouts={})
    sched.load(PollConfig(1, _items(sshd), {}, {}))
    sched.version = 1
    sched.repo = _NoRepo()  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task  # closes the poller
    late = sorted(sched.stats.lateness)
    p99 = late[max(int(len(late) * 0.99) - 1, 0)] if late else float("nan")
    return p99, sched.stats.not_supported, values


def run(quick: bool) -> dict[str, tuple[float, str]]:
    seconds = 3.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="vigil-bench-ssh-") as d:
        tmp = Path(d)
        sshd = Sshd.start(tmp / "sshd")
        try:
            rate, conns = asyncio.run(_throughput(sshd, tmp, seconds))
            p99, bad, values = asyncio.run(_scheduled(sshd, tmp, seconds + 2))
        finally:
            sshd.stop()
    return {"ssh_checks_per_s": (round(rate, 1), "checks/s"), "ssh_connections": (conns, "connections"),
            "ssh_sched_lateness_p99": (round(p99, 4), "s"), "ssh_sched_values": (values, "values"),
            "ssh_sched_not_supported": (bad, "polls")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per figure (under 60 s in all)")
    args = ap.parse_args()
    for name, (value, unit) in run(args.quick).items():
        print(f"{name}: {value} {unit}")


if __name__ == "__main__":
    main()
