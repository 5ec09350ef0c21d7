"""SNMP bulk-walk throughput: Vigil's SNMP client against Net-SNMP's `snmpbulkwalk` in the same run.

    python bench/snmp_walk.py [--reps 3] [--max-repetitions 50]

Starts the test snmpd (tests/peers/snmpd, Debian's snmpd package) on a free loopback port and walks
the whole agent (`.1.3.6.1`, several thousand varbinds): Vigil's v2c path (its own BER codec), the same
through pysnmp (`fast=False`), v3 authPriv SHA/AES through pysnmp, and the CLI (process start
included). Best of `--reps` each. The issue's target is Vigil's v2c rate at 30 % or more of the CLI's.

Ends with one `name: value unit` line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.server.pollers.snmp import SnmpSession, SnmpTarget  # noqa: E402

from tests.peers.snmpd import USERS, Snmpd  # noqa: E402


async def walk_rate(peer: Snmpd, details: dict, fast: bool, reps: int) -> tuple[int, float]:
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
    best, count = 0.0, 0
    for _ in range(reps):
        t = time.perf_counter()
        out = peer.cli("snmpbulkwalk", f"-Cr{max_rep}", ".1.3.6.1", timeout=300)
        dt = time.perf_counter() - t
        count = out.count("\n")
        best = max(best, count / dt)
    return count, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-repetitions", type=int, default=50)
    args = ap.parse_args()
    v2c = {"version": 2, "community": "public-ro", "max_repetitions": args.max_repetitions}
    v3 = USERS["u-sha-aes"].details(max_repetitions=args.max_repetitions)
    peer = Snmpd.start()
    try:
        figures = {
            "vigil_v2c": asyncio.run(walk_rate(peer, v2c, True, args.reps)),
            "pysnmp_v2c": asyncio.run(walk_rate(peer, v2c, False, args.reps)),
            "pysnmp_v3_authpriv": asyncio.run(walk_rate(peer, v3, False, args.reps)),
            "snmpbulkwalk_v2c": cli_rate(peer, args.max_repetitions, args.reps),
        }
    finally:
        peer.stop()
    for name, (count, _) in figures.items():
        print(f"# {name}: {count} varbinds")
    cli = figures["snmpbulkwalk_v2c"][1]
    for name, (_, rate) in figures.items():
        print(f"{name}: {rate:.0f} OIDs/s")
    print(f"vigil_v2c_vs_cli: {100 * figures['vigil_v2c'][1] / cli:.0f} %")
    print(f"pysnmp_v2c_vs_cli: {100 * figures['pysnmp_v2c'][1] / cli:.0f} %")
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
