"""A real zabbix_proxy 6.0 polls a real snmpd for SNMP items configured on Vigil, on both stores.

6.0 numbers SNMP agent items 20 (4 was SNMPv2c, removed in 5.0): sent as Vigil's own 4, the proxy
loaded the item and never polled it. The community is a global macro, which the proxy resolves from
the `globalmacro` table Vigil sends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VigilServer, wait_until
from tests.e2e.test_proxy_zabbix import vigil_rows
from tests.peers.snmpd import COMMUNITY, SYS_NAME, Snmpd
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database


@pytest.fixture(scope="module")
def snmpd() -> Iterator[Snmpd]:
    peer = Snmpd.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def test_zabbix_proxy_polls_snmp_items_of_vigils_configuration(vigil_server: VigilServer, snmpd: Snmpd,
                                                               tmp_path: Path, proxy_db: Path) -> None:
    vigil_server.import_yaml(f"""
macros: {{"{{$SNMP_COMMUNITY}}": {COMMUNITY}}}
proxies:
  - {{name: px-snmp, mode: active, allowed_addresses: [127.0.0.1]}}
hosts:
  - host: switch-1
    proxy: px-snmp
    interfaces: [{{type: snmp, address: 127.0.0.1, port: {snmpd.port}, version: 2, community: "{{$SNMP_COMMUNITY}}"}}]
    items:
      - {{key: sysName, type: snmp, snmp_oid: 1.3.6.1.2.1.1.5.0, value_type: char, delay: 1s}}
      - {{key: sysUpTime, type: snmp, snmp_oid: 1.3.6.1.2.1.1.3.0, value_type: unsigned, delay: 1s}}
""")
    proxy = ZabbixProxy(tmp_path, "px-snmp", server=f"127.0.0.1:{vigil_server.port}",
                        database=proxy_db)
    try:
        proxy.start()
        proxy.wait_for_config()
        wait_until(lambda: proxy.query("SELECT type FROM items WHERE key_ = 'sysName'"), 30,
                   "the proxy to store its configuration's items")
        assert proxy.query("SELECT type FROM items WHERE key_ = 'sysName'") == [(20,)]
        wait_until(lambda: vigil_rows(vigil_server, "switch-1", "sysName")
                   and vigil_rows(vigil_server, "switch-1", "sysUpTime"), 60,
                   "the proxy's SNMP values to reach Vigil", interval=0.5)
    finally:
        proxy.stop()
    assert {v for _, _, v in vigil_rows(vigil_server, "switch-1", "sysName")} == {SYS_NAME}
    assert all(int(v) > 0 for _, _, v in vigil_rows(vigil_server, "switch-1", "sysUpTime"))
