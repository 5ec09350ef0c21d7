"""A proxy group of two real PASSIVE zabbix_proxy 6.0 (the server polls them), on both stores.

A passive proxy is never heard from on its own: its liveness is the server's last successful poll
(`proxy data` fetched and stored touches its lastaccess). Four hosts with a passive agent item
(a real zabbix_agentd) are spread two and two; each proxy's own database holds what the server pushed
in its `proxy config`. One proxy is stopped: within failover_delay its hosts are assigned to the other,
pushed to it with its next poll, and polled by it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, wait_until
from tests.e2e.test_proxy_groups import assignment, proxy_hosts
from tests.e2e.test_proxy_zabbix import vigil_rows
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database

HOSTS = [f"pgp-host-{i}" for i in range(4)]
FAILOVER_DELAY = 10  # seconds: the least Zabbix 7.0 allows
POLL_INTERVAL = 0.5
BALANCE_INTERVAL = 0.5


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def config(agent_port: int, ports: dict[str, int]) -> str:
    hosts = "".join(f"""  - host: {h}
    proxy_group: pgp
    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items: [{{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}]
""" for h in HOSTS)
    proxies = "".join(f'  - {{name: {n}, mode: passive, address: "127.0.0.1:{p}", group: pgp}}\n'
                      for n, p in ports.items())
    return f"""
proxy_groups:
  - {{name: pgp, failover_delay: {FAILOVER_DELAY}s, min_online: 1}}
proxies:
{proxies}hosts:
{hosts}"""


def last_access(url: str) -> dict[str, int]:
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return dict(c.execute(sa.text("SELECT name, lastaccess FROM proxies")).all())
    finally:
        engine.dispose()


def test_a_group_of_passive_proxies_fails_over(tmp_path: Path, database_url: str, zabbix_agentd: int,
                                              proxy_db: Path) -> None:
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_GROUP_INTERVAL=str(BALANCE_INTERVAL),
                         VIGIL_PROXY_POLL_INTERVAL=str(POLL_INTERVAL))
    a = ZabbixProxy(tmp_path, "pxp-a", server="127.0.0.1", passive=True, database=proxy_db)
    b = ZabbixProxy(tmp_path, "pxp-b", server="127.0.0.1", passive=True, database=proxy_db)
    try:
        server.start()
        a.start()
        b.start()
        started = int(time.time())
        server.import_yaml(config(zabbix_agentd, {"pxp-a": a.port, "pxp-b": b.port}))
        wait_until(lambda: sorted(Counter(assignment(server.database_url).values()).values()) == [2, 2], 15,
                   "the balancer to spread the four hosts two and two")
        where = assignment(server.database_url)
        on_a = {h for h, p in where.items() if p == "pxp-a"}
        on_b = {h for h, p in where.items() if p == "pxp-b"}
        # The hosts the balancer gave each proxy are in the configuration the server pushed to it.
        wait_until(lambda: proxy_hosts(a) == on_a and proxy_hosts(b) == on_b, 30,
                   "each passive proxy to be pushed its two hosts")
        wait_until(lambda: all(vigil_rows(server, h, "agent.ping") for h in HOSTS), 30,
                   "values of every host through its proxy", interval=0.5)
        # Polled, so heard from: both count as online.
        assert all(v >= started for v in last_access(server.database_url).values())

        b.stop()
        stopped_at = time.time()

        def polled_after_stop() -> dict[str, int]:
            out = {}
            for h in on_b:
                later = [c for c, _, _ in vigil_rows(server, h, "agent.ping") if c > stopped_at + 1]
                if later:
                    out[h] = min(later)
            return out

        wait_until(lambda: len(polled_after_stop()) == len(on_b), 60, "pxp-a to poll pxp-b's hosts", interval=1)
        failover = max(polled_after_stop().values()) - stopped_at
        print(f"failover: pxp-a polled pxp-b's hosts {failover:.1f} s after pxp-b stopped "
              f"(failover_delay {FAILOVER_DELAY} s, poll interval {POLL_INTERVAL} s)")
        # + the balancer's interval, the poll that pushes the configuration, the item's delay (1 s),
        # whole-second clocks and one poll of the proxy's data
        assert failover <= FAILOVER_DELAY + BALANCE_INTERVAL + 2 * POLL_INTERVAL + 3
        assert assignment(server.database_url) == {h: "pxp-a" for h in HOSTS}
        assert proxy_hosts(a) >= set(HOSTS)
        assert "proxy group [pgp]: 2 hosts reassigned (2 from pxp-b to pxp-a)" in server.log_text()
        for h in HOSTS:
            rows = vigil_rows(server, h, "agent.ping")
            assert len(rows) == len(set(rows)), f"{h}: a value stored twice"
    finally:
        for p in (a, b):
            p.stop()
        server.stop()
