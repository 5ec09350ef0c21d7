"""A real zabbix_proxy 6.0 with the Vigil server, on both stores (issue 16): configuration changes
reach the proxy within one ConfigFrequency, buffered values of items that still exist survive a
change made while the server was down, late values from the proxy's buffer drive triggers as Zabbix
does (each at its own clock), and a passive proxy loses and repeats nothing through server restarts.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, wait_until
from tests.e2e.test_proxy_zabbix import assert_each_value_stored_once, first_value_accepted, send, vigil_rows
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def doc(agent_port: int, hosts: dict[str, str], proxy: str = "px-sync", mode: str = "active",
        where: str = "allowed_addresses: [127.0.0.1]") -> str:
    """A configuration with one proxy and `hosts` (name -> its items' YAML lines) monitored by it."""
    out = f"proxies:\n  - {{name: {proxy}, mode: {mode}, {where}}}\nhosts:\n"
    for name, items in hosts.items():
        out += (f"  - host: {name}\n    proxy: {proxy}\n"
                f"    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]\n    items:\n{items}")
    return out


def import_doc(server: VigilServer, tmp: Path, text: str, name: str) -> None:
    """`vigil config import --delete-missing`: items left out of the file are removed."""
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    server.cli("config", "import", str(path), "--delete-missing")


def proxy_items(proxy: ZabbixProxy) -> dict[tuple[str, str], tuple[int, str]]:
    """(host, key) -> (itemid, delay) as the proxy's configuration holds them."""
    return {(h, k): (i, d) for i, h, k, d in proxy.query(
        "SELECT i.itemid, h.host, i.key_, i.delay FROM items i JOIN hosts h ON h.hostid = i.hostid")}


def collected(proxy: ZabbixProxy, itemid: int) -> int:
    return proxy.query("SELECT count(*) FROM proxy_history WHERE itemid = ?", itemid)[0][0]


def settled(proxy: ZabbixProxy, itemid: int) -> int:
    """The item's count once a check zabbix_proxy's poller had in flight when it dropped the item has
    landed (one 1 s interval and a half later)."""
    time.sleep(1.5)
    return collected(proxy, itemid)


def test_config_changes_reach_the_proxy_within_one_config_frequency(vigil_server: VigilServer, zabbix_agentd: int,
                                                                    tmp_path: Path, proxy_db: Path) -> None:
    a1 = ("      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n"
          "      - {key: system.cpu.num, type: agent, value_type: unsigned, delay: 1s}\n"
          "      - {key: agent.version, type: agent, value_type: char, delay: 1h}\n"
          "      - {key: trap.float, type: trapper}\n")
    import_doc(vigil_server, tmp_path, doc(zabbix_agentd, {"sync-a": a1}), "v1")
    proxy = ZabbixProxy(tmp_path, "px-sync", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db,
                        ConfigFrequency="2")
    try:
        proxy.start()
        proxy.wait_for_config()
        wait_until(lambda: len(vigil_rows(vigil_server, "sync-a", "system.cpu.num")) >= 2, 60,
                   "the proxy to poll the first set")
        versions_before = len(vigil_rows(vigil_server, "sync-a", "agent.version"))

        # Change: an interval (1h -> 1s), a key (system.cpu.num out, system.uptime in), a new host.
        a2 = ("      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n"
              "      - {key: system.uptime, type: agent, value_type: unsigned, delay: 1s}\n"
              "      - {key: agent.version, type: agent, value_type: char, delay: 1s}\n"
              "      - {key: trap.float, type: trapper}\n")
        b = "      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n"
        cpu_itemid = proxy_items(proxy)[("sync-a", "system.cpu.num")][0]
        import_doc(vigil_server, tmp_path, doc(zabbix_agentd, {"sync-a": a2, "sync-b": b}), "v2")
        wait_until(lambda: ("sync-b", "agent.ping") in proxy_items(proxy)
                   and ("sync-a", "system.cpu.num") not in proxy_items(proxy), 30,
                   "the proxy to take the changed configuration")
        assert proxy_items(proxy)[("sync-a", "agent.version")][1] == "1s"
        wait_until(lambda: len(vigil_rows(vigil_server, "sync-b", "agent.ping")) >= 2
                   and len(vigil_rows(vigil_server, "sync-a", "system.uptime")) >= 2
                   and len(vigil_rows(vigil_server, "sync-a", "agent.version")) >= versions_before + 3, 60,
                   "values of the new and changed items to arrive")
        # The removed item is no longer polled: its count in the proxy's buffer stays put.
        stopped_at = settled(proxy, cpu_itemid)
        time.sleep(3)  # three of its 1 s intervals
        assert collected(proxy, cpu_itemid) == stopped_at

        # Remove the host: the proxy drops it and stops polling its item.
        b_itemid = proxy_items(proxy)[("sync-b", "agent.ping")][0]
        vigil_server.cli("host", "delete", "sync-b")
        wait_until(lambda: ("sync-b", "agent.ping") not in proxy_items(proxy), 30, "the proxy to drop sync-b")
        stopped_at = settled(proxy, b_itemid)
        time.sleep(3)
        assert collected(proxy, b_itemid) == stopped_at
        before = len(vigil_rows(vigil_server, "sync-a", "agent.ping"))
        wait_until(lambda: len(vigil_rows(vigil_server, "sync-a", "agent.ping")) > before, 30,
                   "the remaining host to go on")
    finally:
        proxy.stop()
    log = proxy.log_text()
    assert "invalid field name" not in log and "cannot process" not in log


def test_buffered_values_survive_a_config_change_made_while_the_server_was_down(
        vigil_server: VigilServer, zabbix_agentd: int, tmp_path: Path, proxy_db: Path) -> None:
    v1 = ("      - {key: trap.float, type: trapper}\n"
          "      - {key: trap.gone, type: trapper}\n"
          "      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n")
    import_doc(vigil_server, tmp_path, doc(zabbix_agentd, {"zbx-peer": v1}), "v1")
    proxy = ZabbixProxy(tmp_path, "px-sync", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db)
    try:
        proxy.start()
        proxy.wait_for_config()
        base = int(time.time()) - 1800
        first_value_accepted(proxy, "zbx-peer", base)
        live = [f"trap.float {base + i} {i} {i}" for i in range(1, 21)]
        assert "processed: 20;" in send(proxy.port, "zbx-peer", live)
        wait_until(lambda: len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) == 21, 60, "the live values")

        vigil_server.stop()
        out = send(proxy.port, "zbx-peer", [f"trap.float {base + i} {i} {i}" for i in range(21, 121)] +
                   [f"trap.gone {base + i} {i} {i}" for i in range(1, 31)])
        assert "processed: 130;" in out, out
        time.sleep(3)  # agent values pile up too
        # While the server is down: trap.float changes (units, history), trap.gone goes, agent.ping
        # slows down, a new item comes.
        v2 = ("      - {key: trap.float, type: trapper, units: rps, history: 7d}\n"
              "      - {key: trap.new, type: trapper}\n"
              "      - {key: agent.ping, type: agent, value_type: unsigned, delay: 2s}\n")
        import_doc(vigil_server, tmp_path, doc(zabbix_agentd, {"zbx-peer": v2}), "v2")
        vigil_server.start()

        def drained() -> bool:
            rows = proxy.history()
            return proxy.sent_up_to() >= rows[-1][0] and len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) >= 121
        wait_until(drained, 90, "the proxy's buffer to reach the server", interval=0.5)
        proxy.stop()
        keys = dict(proxy.query("SELECT itemid, key_ FROM items"))
        sent = proxy.sent_up_to()
        for key in ("trap.float", "agent.ping"):
            mine = [k for k, v in keys.items() if v == key]
            want = Counter((c, n, repr(float(v)) if key == "trap.float" else v)
                           for vid, i, c, n, v in proxy.history() if i in mine and vid <= sent)
            got = Counter((c, n, repr(float(v)) if key == "trap.float" else v)
                          for c, n, v in vigil_rows(vigil_server, "zbx-peer", key))
            assert not want - got, f"{key}: buffered values lost across the config change"
            assert max(got.values()) == 1, f"{key}: stored twice"
        assert sum(1 for c, _, _ in vigil_rows(vigil_server, "zbx-peer", "trap.float") if c > base) == 120
    finally:
        proxy.stop()
    assert "is not an enabled item of a host monitored by this proxy" in vigil_server.log_text()  # trap.gone's


def trigger_events(server: VigilServer, name: str) -> list[tuple[int, int, int]]:
    """(value, clock, ns) of the trigger's events, in order."""
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(  # type: ignore[misc]
                "SELECT e.value, e.clock, e.ns FROM events e JOIN triggers t ON t.triggerid = e.objectid "
                "WHERE e.source = 0 AND e.object = 0 AND t.description = :n ORDER BY e.eventid"), {"n": name})]
    finally:
        engine.dispose()


def test_late_values_from_the_proxy_buffer_raise_and_resolve_with_their_clocks(
        vigil_server: VigilServer, zabbix_agentd: int, tmp_path: Path, proxy_db: Path) -> None:
    items = ("      - {key: trap.float, type: trapper}\n"
             "    triggers:\n"
             "      - {name: Too hot, expression: last(/zbx-peer/trap.float)>30, severity: high}\n")
    import_doc(vigil_server, tmp_path, doc(zabbix_agentd, {"zbx-peer": items}), "v1")
    proxy = ZabbixProxy(tmp_path, "px-sync", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db)
    try:
        proxy.start()
        proxy.wait_for_config()
        base = int(time.time()) - 900
        first_value_accepted(proxy, "zbx-peer", base)  # 0.5: OK
        wait_until(lambda: len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) == 1, 30, "the first value")
        vigil_server.stop()
        # During the outage the item goes hot and cools down again; the proxy buffers it all.
        series = [(base + 10, 20), (base + 20, 35), (base + 30, 36), (base + 40, 37), (base + 50, 22),
                  (base + 60, 21)]
        out = send(proxy.port, "zbx-peer", [f"trap.float {c} {i} {v}" for i, (c, v) in enumerate(series, 1)])
        assert "processed: 6;" in out, out
        time.sleep(2)  # several of the proxy's data-sender rounds fail meanwhile
        vigil_server.start()
        wait_until(lambda: len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) == 7, 60,
                   "the buffered values to arrive")
        wait_until(lambda: len(trigger_events(vigil_server, "Too hot")) >= 2, 30, "the trigger's events")
        time.sleep(1)  # nothing more comes: no flapping
    finally:
        proxy.stop()
    rows = vigil_rows(vigil_server, "zbx-peer", "trap.float")
    assert [(c, float(v)) for c, _, v in rows] == [(base, 0.5)] + [(c, float(v)) for c, v in series]
    assert trigger_events(vigil_server, "Too hot") == [(1, base + 20, 2), (0, base + 50, 5)]


def test_a_passive_zabbix_proxy_loses_and_repeats_nothing_through_server_restarts(
        tmp_path: Path, database_url: str, zabbix_agentd: int, proxy_db: Path) -> None:
    proxy = ZabbixProxy(tmp_path, "px-passive", server="127.0.0.1", passive=True, database=proxy_db)
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="0.5")
    items = ("      - {key: trap.float, type: trapper}\n"
             "      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n")
    try:
        server.start()
        server.import_yaml(doc(zabbix_agentd, {"zbx-peer": items}, proxy="px-passive", mode="passive",
                               where=f'address: "127.0.0.1:{proxy.port}"'))
        proxy.start()
        proxy.wait_for_config()
        base = int(time.time()) - 1800
        first_value_accepted(proxy, "zbx-peer", base)
        n = 1
        for stop in (server.stop, server.kill):  # a clean stop, then SIGKILL
            lines = [f"trap.float {base + i} {i} {i}" for i in range(n, n + 40)]
            assert "processed: 40;" in send(proxy.port, "zbx-peer", lines)
            stop()
            n += 40
            lines = [f"trap.float {base + i} {i} {i}" for i in range(n, n + 40)]
            assert "processed: 40;" in send(proxy.port, "zbx-peer", lines)  # kept by the proxy meanwhile
            n += 40
            time.sleep(2)
            server.start()

        def delivered() -> bool:
            rows = proxy.history()
            return proxy.sent_up_to() >= rows[-1][0] and len(vigil_rows(server, "zbx-peer", "trap.float")) >= n
        wait_until(delivered, 90, "Vigil to fetch everything the passive proxy holds", interval=0.5)
        proxy.stop()
        expected = assert_each_value_stored_once(server, proxy, "zbx-peer")
        assert sum(expected["trap.float"].values()) == n  # 160 sent plus the first
        assert len(vigil_rows(server, "zbx-peer", "trap.float")) == n
    finally:
        proxy.stop()
        server.stop()
