"""SNMP bulk-walk throughput against Net-SNMP's `snmpbulkwalk`: a thin wrapper of bench/pollers.py.

    python bench/snmp_walk.py [--quick] [--reps 3] [--max-repetitions 50]

The walks of bench/pollers.py (all of them: Vigil's v2c, pysnmp's v2c and v3 authPriv, the CLI) without
its scheduler part. Ends with one `name: value unit` line per figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pollers import print_walks, walk_figures  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one walk each")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-repetitions", type=int, default=50)
    a = ap.parse_args()
    print_walks(walk_figures(1 if a.quick else a.reps, a.max_repetitions, all_walks=True))


if __name__ == "__main__":
    main()
