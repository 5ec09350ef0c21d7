"""Poller scheduler lateness, 10,000 items at 60 s: a thin wrapper of bench/pollers.py.

    python bench/scheduler.py [--quick] [--items 10000] [--delay 60] [--seconds 75] [--agent]

The scheduler part of bench/pollers.py without its SNMP walks (see there for what the figures are;
target: scheduler_lateness_p99 <= 1 s). Ends with one `name: value unit` line per figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pollers import print_schedule, scheduler_figures  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 s of scheduling")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--delay", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=75)
    ap.add_argument("--agent", action="store_true", help="poll a real vigil-agent")
    a = ap.parse_args()
    print_schedule(scheduler_figures(a.items, a.delay, 20.0 if a.quick else a.seconds, a.agent))


if __name__ == "__main__":
    main()
