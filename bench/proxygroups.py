"""Proxy-group balancing cost: the pure algorithm, and one balancer round against a real store.

    python bench/proxygroups.py [--quick] [--hosts 100000] [--proxies 10] [--store-hosts 5000]

Prints `name: value unit` lines:
  proxygroup_balance_failover_ms  balance() of --hosts hosts on --proxies proxies, one proxy silent
                                  (its tenth of the hosts moves): the median of 5 runs
  proxygroup_balance_steady_ms    the same group with nothing to move (what every round costs)
  proxygroup_round_failover_ms    ProxyBalancer.run_once() on SQLite with --store-hosts hosts, one of
                                  4 proxies silent: read, compute, write the moved hosts and drains
  proxygroup_round_steady_ms      the next round, with nothing to move
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_algorithm(hosts: int, proxies: int) -> tuple[float, float]:
    from vigil.server.config.proxygroups import balance

    now = 1_800_000_000.0
    seen = {p: now for p in range(1, proxies + 1)}
    current: dict[int, int | None] = {h: 1 + h % proxies for h in range(hosts)}
    steady, failover = [], []
    for _ in range(5):
        t = time.perf_counter()
        assert not balance(seen, now, 60, 1, current).moved
        steady.append(time.perf_counter() - t)
        silent = {**seen, 1: now - 3600}
        t = time.perf_counter()
        moved = balance(silent, now, 60, 1, current).moved
        failover.append(time.perf_counter() - t)
        assert len(moved) == hosts // proxies
    return statistics.median(failover) * 1000, statistics.median(steady) * 1000


def bench_round(hosts: int) -> tuple[float, float]:
    import sqlalchemy as sa
    from vigil.server.config import tables as t
    from vigil.server.config.migrate import engine_for, upgrade
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo
    from vigil.server.ingest.proxybalancer import ProxyBalancer

    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_for(f"sqlite:///{Path(tmp) / 'vigil.db'}")
        try:
            upgrade(engine)
            repo = ConfigRepo(engine)
            repo.apply(doc_from_dict({
                "proxy_groups": [{"name": "g", "failover_delay": "1m"}],
                "proxies": [{"name": f"p{i}", "group": "g"} for i in range(4)],
            }))
            with engine.begin() as c:  # hosts in bulk: an import of thousands of hosts is not what is measured
                gid = c.execute(sa.select(t.proxy_groups.c.proxy_groupid)).scalar_one()
                c.execute(sa.insert(t.hosts), [{"host": f"h{i}", "name": f"h{i}", "status": 0, "description": "",
                                               "proxy_groupid": gid} for i in range(hosts)])
            now = time.time()
            ids = [p.proxyid for p in repo.proxies().values()]
            for p in ids:
                repo.touch_proxy(p, int(now), "6.0.14")
            balancer = ProxyBalancer(repo, 1, started=now - 3600)
            balancer.run_once(now)  # the first assignment
            repo.touch_proxy(ids[0], int(now - 3600), "6.0.14")
            t0 = time.perf_counter()
            moved = balancer.run_once(now)["g"].moved
            failover = time.perf_counter() - t0
            assert len(moved) == hosts // 4, len(moved)
            t0 = time.perf_counter()
            assert not balancer.run_once(now)["g"].moved
            steady = time.perf_counter() - t0
        finally:
            engine.dispose()
    return failover * 1000, steady * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller groups (done in a few seconds)")
    ap.add_argument("--hosts", type=int, default=100_000)
    ap.add_argument("--proxies", type=int, default=10)
    ap.add_argument("--store-hosts", type=int, default=5_000)
    args = ap.parse_args()
    hosts, store_hosts = (20_000, 1_000) if args.quick else (args.hosts, args.store_hosts)
    failover, steady = bench_algorithm(hosts, args.proxies)
    print(f"# balance(): {hosts} hosts on {args.proxies} proxies", file=sys.stderr)
    print(f"proxygroup_balance_failover_ms: {failover:.1f} ms")
    print(f"proxygroup_balance_steady_ms: {steady:.1f} ms")
    failover, steady = bench_round(store_hosts)
    print(f"# run_once(): {store_hosts} hosts on 4 proxies, SQLite", file=sys.stderr)
    print(f"proxygroup_round_failover_ms: {failover:.1f} ms")
    print(f"proxygroup_round_steady_ms: {steady:.1f} ms")


if __name__ == "__main__":
    main()
