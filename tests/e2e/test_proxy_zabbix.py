"""A real zabbix_proxy 6.0 with the Vigil server, on both stores (issue 16, pairings 1 and 2).

The proxy takes Vigil's configuration, accepts values from the real zabbix_sender for trapper items
on its trapper port, polls a real passive zabbix_agentd, and every value it collected lands in
Vigil's store exactly once: the proxy's own buffer (its SQLite proxy_history) is compared with
Vigil's history by (item, clock, ns, value).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, require, wait_until
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))

ITEMS = """
      - {key: trap.float, type: trapper}
      - {key: trap.text, type: trapper, value_type: char}
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}
      - {key: system.cpu.num, type: agent, value_type: unsigned, delay: 1s}
"""


def config(proxy: str, mode: str, agent_port: int, proxy_port: int = 0, host: str = "zbx-peer") -> str:
    where = f'address: "127.0.0.1:{proxy_port}"' if mode == "passive" else "allowed_addresses: [127.0.0.1]"
    return f"""
proxies:
  - {{name: {proxy}, mode: {mode}, {where}}}
hosts:
  - host: {host}
    proxy: {proxy}
    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items:{ITEMS}
  - host: server-own
    items: [{{key: trap.float, type: trapper}}]
"""


def send(port: int, host: str, lines: list[str]) -> str:
    """zabbix_sender -T -N: each line `KEY CLOCK NS VALUE` for `host`, to the proxy's trapper port."""
    data = "".join(f"{host} {line}\n" for line in lines)
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(port), "-T", "-N", "-i", "-"],
                       input=data, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def first_value_accepted(proxy: ZabbixProxy, host: str, clock: int) -> None:
    """Send one value until the proxy has loaded its configuration and takes it (refused ones are not kept)."""
    wait_until(lambda: "processed: 1;" in send(proxy.port, host, [f"trap.float {clock} 0 0.5"]), 30,
               "zabbix_proxy to accept a trapper value for an item of Vigil's configuration")


def vigil_rows(server: VigilServer, host: str, key: str) -> list[tuple[int, int, str]]:
    """(clock, ns, value) of what the server stored, read through its store (as `vigil history` does)."""
    engine = engine_for(server.database_url)
    store = open_store(server.database_url)
    try:
        found = ConfigRepo(engine).item(host, key)
        assert found is not None, (host, key)
        return [(c, n, str(v)) for c, n, v in store.history(found[0], found[1], 0, 2**31 - 1)]
    finally:
        store.close()
        engine.dispose()


def same_value(key: str, value: str) -> str:
    return repr(float(value)) if key == "trap.float" else value


def proxy_rows_by_key(proxy: ZabbixProxy, sent_only: bool) -> dict[str, Counter]:
    keys = dict(proxy.query("SELECT itemid, key_ FROM items"))
    sent = proxy.sent_up_to() if sent_only else 2**63
    out: dict[str, Counter] = {}
    for vid, itemid, clock, ns, value in proxy.history():
        if vid <= sent:
            key = keys[itemid]
            out.setdefault(key, Counter())[(clock, ns, same_value(key, value))] += 1
    return out


def assert_each_value_stored_once(server: VigilServer, proxy: ZabbixProxy, host: str) -> dict[str, Counter]:
    """With the proxy stopped: every value it marked sent is stored once, and nothing else is stored
    (a batch stored just before it stopped, its ack not yet recorded, may be stored too: once)."""
    sent = proxy_rows_by_key(proxy, sent_only=True)
    collected = proxy_rows_by_key(proxy, sent_only=False)
    for key in collected:
        stored = Counter((c, n, same_value(key, v)) for c, n, v in vigil_rows(server, host, key))
        assert not sent.get(key, Counter()) - stored, f"{key}: acknowledged values missing"
        assert not stored - collected[key], f"{key}: values stored that the proxy never collected"
        assert max(stored.values(), default=1) == 1, f"{key}: stored twice"
    return sent


def exchange(port: int, obj: object, *, compress: bool = True) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(zbxd.encode(json.dumps(obj).encode(), compress=compress))
        _, body = zbxd.recv_frame(s)
    return json.loads(body)


def proxy_session(server: VigilServer) -> tuple[str, int]:
    """The session the proxy's data came in and the highest id committed, as the server recorded them."""
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT session, last_id FROM agent_sessions WHERE session LIKE 'proxy:%'")).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    return rows[0][0].rsplit(":", 1)[1], int(rows[0][1])


def test_active_zabbix_proxy_delivers_every_value_once(vigil_server: VigilServer, zabbix_agentd: int,
                                                       tmp_path: Path, proxy_db: Path) -> None:
    vigil_server.import_yaml(config("px-active", "active", zabbix_agentd))
    proxy = ZabbixProxy(tmp_path, "px-active", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db)
    try:
        proxy.start()
        proxy.wait_for_config()
        base = int(time.time()) - 3600  # within the items' history period, as Vigil accepts
        first_value_accepted(proxy, "zbx-peer", base)
        lines = [f"trap.float {base + i} {i * 1000 + 7} {i}.25" for i in range(1, 101)]
        lines += [f"trap.text {base + i} {i} text-{i}" for i in range(1, 51)]
        out = send(proxy.port, "zbx-peer", lines)
        assert "processed: 150;" in out, out
        # And a value for a host the proxy does not monitor: it has no such host, and refuses it.
        assert "failed: 1" in send(proxy.port, "server-own", [f"trap.float {base} 0 1"])

        def delivered() -> bool:
            rows = proxy.history()
            pings = [r for r in rows if r[4] == "1"]
            return bool(rows) and len(pings) >= 3 and proxy.sent_up_to() >= rows[-1][0] \
                and len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) == 101
        wait_until(delivered, 60, "the proxy's values to reach Vigil", interval=0.5)
        proxy.stop()
        expected = assert_each_value_stored_once(vigil_server, proxy, "zbx-peer")
        assert sum(expected["trap.float"].values()) == 101 and sum(expected["trap.text"].values()) == 50
        assert expected["agent.ping"] and expected["system.cpu.num"]  # polled from the real zabbix_agentd
        assert vigil_rows(vigil_server, "server-own", "trap.float") == []

        # The same batch again, from the test, in the proxy's session with its ids: stored once.
        session, last_id = proxy_session(vigil_server)
        assert len(session) == 32 and last_id >= 101
        keys = dict(proxy.query("SELECT itemid, key_ FROM items"))
        resend = [{"id": vid, "itemid": itemid, "clock": clock, "ns": ns, "value": value}
                  for vid, itemid, clock, ns, value in proxy.history()
                  if vid <= last_id and keys[itemid] == "trap.float"]
        reply = exchange(vigil_server.port, {"request": "proxy data", "host": "px-active", "session": session,
                                             "version": "6.0.14", "history data": resend})
        assert reply["response"] == "success" and reply["info"].startswith("processed: 0;"), reply
        assert len(vigil_rows(vigil_server, "zbx-peer", "trap.float")) == 101

        engine = engine_for(vigil_server.database_url)
        try:
            with engine.connect() as c:
                lastaccess, version = c.execute(sa.text("SELECT lastaccess, version FROM proxies")).one()
                available = c.execute(sa.text("SELECT available FROM interfaces i JOIN hosts h ON "
                                              "h.hostid = i.hostid WHERE h.host = 'zbx-peer'")).scalar()
        finally:
            engine.dispose()
        assert lastaccess > base and version == "6.0.14"
        assert available == 1  # the proxy's interface availability reached the server
    finally:
        proxy.stop()
    assert "invalid field name" not in proxy.log_text() and "cannot process" not in proxy.log_text()


def test_vigil_polls_a_passive_zabbix_proxy(tmp_path: Path, database_url: str, zabbix_agentd: int,
                                            proxy_db: Path) -> None:
    proxy = ZabbixProxy(tmp_path, "px-passive", server="127.0.0.1", passive=True, database=proxy_db)
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="0.5")
    try:
        server.start()
        server.import_yaml(config("px-passive", "passive", zabbix_agentd, proxy.port))
        proxy.start()
        proxy.wait_for_config()
        base = int(time.time()) - 3600  # within the items' history period, as Vigil accepts
        first_value_accepted(proxy, "zbx-peer", base)
        out = send(proxy.port, "zbx-peer", [f"trap.float {base + i} {i} {i}" for i in range(1, 61)])
        assert "processed: 60;" in out, out

        def delivered() -> bool:
            rows = proxy.history()
            return len([r for r in rows if r[4] == "1"]) >= 3 and proxy.sent_up_to() >= rows[-1][0] \
                and len(vigil_rows(server, "zbx-peer", "trap.float")) == 61
        wait_until(delivered, 60, "Vigil to fetch the passive proxy's values", interval=0.5)
        proxy.stop()
        expected = assert_each_value_stored_once(server, proxy, "zbx-peer")
        assert sum(expected["trap.float"].values()) == 61 and expected["agent.ping"]
        assert "pushed the configuration to passive proxy [px-passive]" in server.log_text()
    finally:
        proxy.stop()
        server.stop()
