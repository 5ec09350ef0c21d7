"""Low-level discovery: how fast one discovery value is applied to the configuration.

    python bench/lld.py [--quick] [--rows 2000] [--database-url URL]

A host with a trapper discovery rule of 4 item prototypes, a trigger prototype and a graph
prototype gets a value of N rows (N interfaces, say); measured in one run on a fresh SQLite store
(or the given database):
  lld_first_rows_per_s    rows per second the first time (everything created: 4 items, a trigger
                          and a graph per row)
  lld_unchanged_ms        the same value again: nothing changes (what every later run costs)
  lld_lost_ms             a value without half the rows: those marked lost
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOC = """
hosts:
  - host: bench
    discovery_rules:
      - key: ports.discovery
        type: trapper
        lifetime: 1d
        item_prototypes:
          - {key: "port.in[{#IDX}]", type: trapper, name: "Port {#NAME}: in", units: bps}
          - {key: "port.out[{#IDX}]", type: trapper, name: "Port {#NAME}: out", units: bps}
          - {key: "port.status[{#IDX}]", type: trapper, value_type: unsigned}
          - {key: "port.errors[{#IDX}]", type: trapper}
        trigger_prototypes:
          - {name: "Port {#NAME} down", expression: "last(/bench/port.status[{#IDX}])=2"}
        graph_prototypes:
          - name: "Port {#NAME}: traffic"
            items: [{key: "port.in[{#IDX}]", color: 00AA00}, {key: "port.out[{#IDX}]", color: 3333FF}]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 rows")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--database-url", default="")
    a = ap.parse_args()
    rows = 500 if a.quick else a.rows

    import yaml
    from vigil.server.config.migrate import engine_for, upgrade
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo

    with tempfile.TemporaryDirectory() as tmp:
        url = a.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = engine_for(url)
        upgrade(engine)
        repo = ConfigRepo(engine)
        repo.apply(doc_from_dict(yaml.safe_load(DOC)))
        ruleid = repo.rule_id("bench", "ports.discovery")
        assert ruleid is not None
        value = json.dumps([{"{#IDX}": str(i), "{#NAME}": f"ge-0/0/{i}"} for i in range(rows)])
        t0 = time.perf_counter()
        res = repo.discover(ruleid, value, 1000)
        first = time.perf_counter() - t0
        assert res.created == rows * 6 and not res.errors, res
        t0 = time.perf_counter()
        res = repo.discover(ruleid, value, 1060)
        unchanged = time.perf_counter() - t0
        assert res.created == res.updated == 0, res
        half = json.dumps([{"{#IDX}": str(i), "{#NAME}": f"ge-0/0/{i}"} for i in range(rows // 2)])
        t0 = time.perf_counter()
        res = repo.discover(ruleid, half, 1120)
        lost = time.perf_counter() - t0
        assert res.lost == (rows - rows // 2) * 6, res
        engine.dispose()
    print(f"lld_rows: {rows} rows")
    print(f"lld_first_rows_per_s: {rows / first:.0f} rows/s")
    print(f"lld_unchanged_ms: {unchanged * 1000:.0f} ms")
    print(f"lld_lost_ms: {lost * 1000:.0f} ms")


if __name__ == "__main__":
    main()
