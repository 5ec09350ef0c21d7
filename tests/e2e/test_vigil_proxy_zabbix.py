"""Pairing 4: `vigil proxy` registered as an active proxy on the real zabbix_server 6.0 (PostgreSQL):
it takes the real server's configuration, accepts zabbix_sender on its port, and delivers the values
with their clock and ns; the real server takes Vigil's extra `"buffer"` field in heartbeats and data
without complaint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.e2e.test_vigil_proxy import send
from tests.peers.zabbix_server.peer import UNSIGNED, ZabbixServer
from tests.vigil_proxy import VigilProxy

HOST_STATUS_PROXY_ACTIVE = 5


@pytest.fixture
def zabbix_server(tmp_path: Path) -> Iterator[ZabbixServer]:
    zs = ZabbixServer(tmp_path)
    try:
        yield zs
    finally:
        zs.drop()


def test_vigil_proxy_delivers_to_the_real_zabbix_server(zabbix_server: ZabbixServer, tmp_path: Path) -> None:
    zs = zabbix_server
    proxyid = 800_001
    zs.sql("INSERT INTO hosts (hostid, host, name, status, proxy_address) VALUES (%s, 'vp-zbx', 'vp-zbx', %s, "
           "'127.0.0.1')", (proxyid, HOST_STATUS_PROXY_ACTIVE))
    hostid = zs.add_host("zbx-far")
    zs.sql("UPDATE hosts SET proxy_hostid = %s WHERE hostid = %s", (proxyid, hostid))
    itemid = zs.add_item(hostid, "trap.z", UNSIGNED)
    zs.start()
    proxy = VigilProxy(tmp_path, "vp-zbx", server=f"127.0.0.1:{zs.port}")
    try:
        proxy.start()
        proxy.wait_for_host("zbx-far", 60)
        base = int(time.time()) - 60
        out = send(proxy.port, [f"zbx-far trap.z {base + i} {i * 10 + 3} {i}" for i in range(20)], tmp_path)
        assert "processed: 20; failed: 0" in out, out
        wait_until(lambda: len(zs.history(itemid, UNSIGNED)) >= 20, 60,
                   "the real zabbix_server to store the proxy's values", interval=0.5)
        wait_until(lambda: all(r[4] for r in proxy.outbox()), 30, "the real server to acknowledge them")
        rows = zs.history(itemid, UNSIGNED)
        assert [(c, n, int(v)) for c, n, v in rows] == [(base + i, i * 10 + 3, i) for i in range(20)]  # once each
        time.sleep(2)  # a few heartbeats and empty proxy data, each with "buffer"
        complaints = [line for line in zs.log_text().splitlines()
                      if "proxy" in line and ("cannot" in line or "invalid" in line or "failed" in line)]
        assert complaints == []
        assert "heartbeat refused" not in proxy.log_text() and "refused" not in proxy.log_text()
        assert proxy.alive()
    finally:
        proxy.stop()
        zs.stop()
