"""Active agent autoregistration with the real zabbix_agentd 6.0: straight to Vigil's server, through a
real zabbix_proxy 6.0 and through `vigil proxy`, on both stores.

The agent (HostMetadata=linux web) asks for the active checks of a host nobody configured; the server
records the registration, the autoregistration action adds the host to its group with its template
and tags (monitored by the proxy the request came through), and once the agent asks again its items
receive values. An agent whose metadata the action does not take makes an event and no host.

A real zabbix_agentd asks again only RefreshActiveChecks (at least 60 s) after a failed request, so the
tests restart it once its host exists, as a quicker "ask again".
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, free_port, require, stop_process, wait_until
from tests.vigil_proxy import VigilProxy, missing
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database

CONFIG = """
templates:
  - template: Autoreg web
    items:
      - {key: agent.ping, type: agent_active, value_type: unsigned, delay: 1s}
      - {key: agent.hostmetadata, type: agent_active, value_type: char, delay: 1s}
actions:
  - name: Register web servers
    event_source: autoregistration
    evaltype: and  # with and/or, Zabbix ORs conditions of one type
    conditions:
      - {type: host_metadata, value: web}
      - {type: host_metadata, operator: does not match, value: "^windows"}
PROXY_CONDITION
    operations:
      - add_host: true
      - add_to_groups: [Web servers, Linux servers]
      - link_templates: [Autoreg web]
      - add_host_tags: [{tag: role, value: web}]
"""


def config(proxy: str = "", mode: str = "active", port: int = 0) -> str:
    if not proxy:
        return CONFIG.replace("PROXY_CONDITION\n", "")
    address = f', address: "127.0.0.1:{port}"' if mode == "passive" else ""
    head = f"proxies:\n  - {{name: {proxy}, mode: {mode}{address}}}\n"
    return head + CONFIG.replace("PROXY_CONDITION", f"      - {{type: proxy, value: {proxy}}}")


class Agent:
    """zabbix_agentd in active mode only, with a host name and metadata nobody configured."""

    def __init__(self, tmp: Path, port: int, hostname: str, metadata: str) -> None:
        self.listen_port = free_port()
        self.hostname, self.metadata = hostname, metadata
        self.out = tmp / f"agentd-{hostname}.out"
        self.conf = tmp / f"agentd-{hostname}.conf"
        self.conf.write_text(
            f"ServerActive=127.0.0.1:{port}\nHostname={hostname}\nHostMetadata={metadata}\nStartAgents=0\n"
            f"ListenIP=127.0.0.1\nListenPort={self.listen_port}\nRefreshActiveChecks=60\nBufferSend=1\n"
            f"LogType=console\nPidFile={tmp}/agentd-{hostname}.pid\nAllowRoot=1\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        self.proc = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(self.conf)],
                                     stdout=self.out.open("ab"), stderr=subprocess.STDOUT)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def wait_known(port: int, agent: Agent) -> None:
    """Until the server (or proxy) at `port` answers the agent's own request with its checks (asked as
    the agent asks, so the question is no new registration)."""
    req = {"request": "active checks", "host": agent.hostname, "host_metadata": agent.metadata, "ip": "127.0.0.1",
           "port": agent.listen_port}
    wait_until(lambda: exchange(port, req)["response"] == "success", 30, f"{agent.hostname} to be known at {port}")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[int, str, str], Agent]]:
    started: list[Agent] = []

    def make(port: int, hostname: str, metadata: str) -> Agent:
        a = Agent(tmp_path, port, hostname, metadata).start()
        started.append(a)
        return a

    try:
        yield make
    finally:
        for a in started:
            a.stop()


class Db:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self.repo = ConfigRepo(self.engine)

    def q(self, sql: str, **args: object) -> list[tuple]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql), args)]

    def host(self, name: str) -> tuple | None:
        rows = self.q("SELECT h.hostid, h.status, p.name FROM hosts h LEFT JOIN proxies p ON p.proxyid = h.proxyid "
                      "WHERE h.host = :h", h=name)
        return rows[0] if rows else None

    def groups(self, hostid: int) -> list[str]:
        return [r[0] for r in self.q("SELECT g.name FROM hosts_groups hg JOIN host_groups g ON g.groupid = hg.groupid "
                                     "WHERE hg.hostid = :h ORDER BY g.name", h=hostid)]

    def events(self, host: str) -> int:
        return self.q("SELECT count(*) FROM events WHERE source = 2 AND object = 3 AND name = :h", h=host)[0][0]

    def values(self, host: str, key: str) -> list[str]:
        found = self.repo.item(host, key)
        if found is None:
            return []
        store = open_store(self.url)
        try:
            return [str(v) for _, _, v in store.history(found[0], found[1], 0, 2**31 - 1)]
        finally:
            store.close()

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def db(vigil_server: VigilServer) -> Iterator[Db]:
    d = Db(vigil_server.database_url)
    try:
        yield d
    finally:
        d.close()


def assert_registered(db: Db, host: str, proxy: str | None, listen_port: int) -> int:
    row = db.host(host)
    assert row is not None
    hostid, status, proxy_name = row
    assert status == 0 and proxy_name == proxy
    assert db.groups(hostid) == ["Linux servers", "Web servers"]
    assert db.q("SELECT t.host FROM hosts_templates ht JOIN hosts t ON t.hostid = ht.templateid "
                "WHERE ht.hostid = :h", h=hostid) == [("Autoreg web",)]
    assert db.q("SELECT tag, value FROM host_tags WHERE hostid = :h", h=hostid) == [("role", "web")]
    assert db.q("SELECT type, main, useip, ip, port FROM interfaces WHERE hostid = :h", h=hostid) == [
        (1, 1, 1, "127.0.0.1", str(listen_port))]
    assert db.q("SELECT host_metadata, listen_ip, listen_port FROM autoreg_host WHERE host = :h", h=host) == [
        ("linux web", "127.0.0.1", listen_port)]
    return hostid


def test_agent_registers_with_the_server_and_then_sends_values(vigil_server: VigilServer, db: Db,
                                                               agents: Callable[[int, str, str], Agent]) -> None:
    vigil_server.import_yaml(config())
    web = agents(vigil_server.port, "new-web-01", "linux web")
    other = agents(vigil_server.port, "new-db-01", "linux db")
    wait_until(lambda: db.host("new-web-01") is not None, 30, "the server to add the autoregistered host")
    assert_registered(db, "new-web-01", None, web.listen_port)
    wait_until(lambda: db.events("new-db-01") == 1, 30, "the autoregistration event of new-db-01")
    assert db.host("new-db-01") is None  # the action's conditions do not take "linux db"
    assert db.events("new-web-01") == 1
    # The agent asks again (restarted: it would wait 60 s): now its host is known and its items get values.
    wait_known(vigil_server.port, web)
    web.restart()
    wait_until(lambda: "1" in db.values("new-web-01", "agent.ping"), 30, "agent.ping values of the new host",
               interval=0.2)
    wait_until(lambda: "linux web" in db.values("new-web-01", "agent.hostmetadata"), 30, "agent.hostmetadata")
    # Asking again with nothing changed makes no new event.
    other.restart()
    wait_until(lambda: vigil_server.log_text().count("host [new-db-01] not found") >= 2, 30,
               "the restarted agent of new-db-01 to ask again")
    assert db.events("new-db-01") == 1
    assert db.events("new-web-01") == 1
    log = vigil_server.log_text()
    assert "action 'Register web servers': added host [new-web-01]" in log, log[-3000:]


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def test_agent_registers_through_a_real_zabbix_proxy(vigil_server: VigilServer, db: Db, tmp_path: Path,
                                                     proxy_db: Path, agents: Callable[[int, str, str], Agent]) -> None:
    vigil_server.import_yaml(config("px-auto"))
    proxy = ZabbixProxy(tmp_path, "px-auto", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db)
    try:
        proxy.start()
        proxy.wait_for_config()
        web = agents(proxy.port, "proxied-web-01", "linux web")
        wait_until(lambda: db.host("proxied-web-01") is not None, 30,
                   "the server to add the host zabbix_proxy registered")
        assert_registered(db, "proxied-web-01", "px-auto", web.listen_port)
        assert db.q("SELECT p.name FROM autoreg_host a JOIN proxies p ON p.proxyid = a.proxyid") == [("px-auto",)]

        def proxy_knows() -> bool:
            return bool(proxy.query("SELECT hostid FROM hosts WHERE host = 'proxied-web-01'"))
        wait_until(proxy_knows, 30, "zabbix_proxy to take the new host from Vigil's configuration")
        web.restart()
        wait_until(lambda: "1" in db.values("proxied-web-01", "agent.ping"), 40,
                   "agent.ping values through zabbix_proxy", interval=0.3)
        assert db.events("proxied-web-01") == 1
    finally:
        proxy.stop()


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_agent_registers_through_vigil_proxy(vigil_server: VigilServer, db: Db, tmp_path: Path, mode: str,
                                             agents: Callable[[int, str, str], Agent]) -> None:
    if (why := missing()) is not None:
        pytest.fail(why)
    passive = mode == "passive"
    proxy = VigilProxy(tmp_path, "vp-auto", server="127.0.0.1" if passive else f"127.0.0.1:{vigil_server.port}",
                       passive=passive)
    vigil_server.import_yaml(config("vp-auto", mode, proxy.port))
    try:
        proxy.start()
        web = agents(proxy.port, "vproxied-web-01", "linux web")
        wait_until(lambda: db.host("vproxied-web-01") is not None, 30,
                   "the server to add the host vigil proxy registered")
        assert_registered(db, "vproxied-web-01", "vp-auto", web.listen_port)
        wait_known(proxy.port, web)
        web.restart()
        wait_until(lambda: "1" in db.values("vproxied-web-01", "agent.ping"), 40,
                   "agent.ping values through vigil proxy", interval=0.3)
        assert db.events("vproxied-web-01") == 1
        with sqlite3_connect(proxy.db) as c:  # delivered records leave the proxy's table
            assert c.execute("SELECT count(*) FROM proxy_autoreg_host").fetchone() == (0,)
    finally:
        proxy.stop()


def sqlite3_connect(path: Path):  # noqa: ANN201 - a context manager of the standard library
    import sqlite3

    return sqlite3.connect(path, timeout=30)


def exchange(port: int, obj: object) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(zbxd.encode(json.dumps(obj).encode(), compress=True))
        _, body = zbxd.recv_frame(s)
    return json.loads(body)


def test_bad_registrations_are_refused_naming_the_field(vigil_server: VigilServer, db: Db) -> None:
    vigil_server.import_yaml(config("px-bad"))
    empty = {"request": "proxy data", "host": "px-bad", "version": "6.0.14"}
    wait_until(lambda: exchange(vigil_server.port, empty)["response"] == "success", 30,
               "the server to load proxy px-bad")
    record = {"clock": 1_700_000_000, "host": "ok-host", "ip": "127.0.0.1", "dns": "", "port": "10050",
              "host_metadata": "linux web", "tls_accepted": 1}
    no_host = {k: v for k, v in record.items() if k != "host"}
    for bad, field in ((no_host, "auto registration[0].host: missing"),
                       ({**record, "host_metadata": "x" * 10240}, "auto registration[0].host_metadata"),
                       ({**record, "host": "bad/host"}, None)):
        reply = exchange(vigil_server.port, {"request": "proxy data", "host": "px-bad", "version": "6.0.14",
                                             "auto registration": [bad]})
        if field is None:  # a name Zabbix refuses: the record is skipped and logged, the batch taken
            assert reply["response"] == "success", reply
        else:
            assert reply["response"] == "failed" and field in reply["info"], reply
    wait_until(lambda: "invalid host name [bad/host]" in vigil_server.log_text(), 10, "the bad host name logged")
    # Straight from an agent: 10 KB of metadata, a bad name, a bad port, a bad ip.
    for req, field in (({"host": "agent-x", "host_metadata": "m" * 10240}, "host_metadata: 10240 characters"),
                       ({"host": "bad/name"}, "invalid host name [bad/name]"),
                       ({"host": "agent-x", "port": 70000}, "port: '70000' is not a valid port"),
                       ({"host": "agent-x", "ip": "not-an-ip"}, "ip: 'not-an-ip' is not a valid IP address")):
        reply = exchange(vigil_server.port, {"request": "active checks", **req})
        assert reply["response"] == "failed" and field in reply["info"], (req, reply)
    assert db.q("SELECT count(*) FROM autoreg_host") == [(0,)]
    assert db.q("SELECT count(*) FROM events WHERE source = 2") == [(0,)]
    # And the server goes on serving: a good record from the same proxy is taken.
    reply = exchange(vigil_server.port, {"request": "proxy data", "host": "px-bad", "version": "6.0.14",
                                         "auto registration": [record]})
    assert reply["response"] == "success", reply
    wait_until(lambda: db.host("ok-host") is not None, 10, "the good record's host")
    assert db.host("ok-host")[2] == "px-bad"
    # A good request of an unknown host is answered as Zabbix answers it, and recorded.
    reply = exchange(vigil_server.port, {"request": "active checks", "host": "fresh-01", "host_metadata": "linux"})
    assert reply == {"response": "failed", "info": "host [fresh-01] not found"}
    assert db.q("SELECT host_metadata FROM autoreg_host WHERE host = 'fresh-01'") == [("linux",)]
