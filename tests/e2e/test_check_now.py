"""Check now ("Execute now"), end to end on both stores: an agent item polled once an hour gets a
fresh value within seconds of a check now, whether the server polls it itself or a proxy does — the
real zabbix_proxy 6.0 (active and passive), which must accept Vigil's type-6 task, or `vigil proxy`
(active and passive). The check now goes in as the web UI and the API queue it
(server/store/tasks.queue_check_now); without it the item would wait for its slot in the hour.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.pollers.scheduler import nextcheck
from vigil.server.store import tasks as store

from tests.conftest import VigilServer, wait_until
from tests.vigil_proxy import VigilProxy
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database

KEY = "system.localtime"  # a new value every second: a fresh poll is told from an old one by its clock


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def config(agent_port: int, proxy: str = "", mode: str = "active", proxy_port: int = 0) -> str:
    proxies, on = "", ""
    if proxy:
        where = f'address: "127.0.0.1:{proxy_port}"' if mode == "passive" else "allowed_addresses: [127.0.0.1]"
        proxies, on = f"proxies:\n  - {{name: {proxy}, mode: {mode}, {where}}}\n", f"    proxy: {proxy}\n"
    return f"""{proxies}hosts:
  - host: cn-host
{on}    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items:
      - {{key: {KEY}, type: agent, value_type: unsigned, delay: 1h}}
      - {{key: cn.trap, type: trapper}}
"""


def itemid_of(server: VigilServer, key: str) -> int:
    engine = engine_for(server.database_url)
    try:
        return int(ConfigRepo(engine).item("cn-host", key)[0])
    finally:
        engine.dispose()


def check_now(server: VigilServer, itemid: int) -> int:
    engine = engine_for(server.database_url)
    try:
        (taskid,) = store.queue_check_now(engine, [itemid], int(time.time()))
        return taskid
    finally:
        engine.dispose()


def task_state(server: VigilServer, taskid: int) -> tuple[int, int | None]:
    """(status, proxyid) of a task."""
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            row = c.execute(sa.text("SELECT status, proxyid FROM task WHERE taskid = :t"), {"t": taskid}).one()
        return int(row[0]), None if row[1] is None else int(row[1])
    finally:
        engine.dispose()


def clocks(server: VigilServer) -> list[int]:
    return [int(r[0]) for r in server.history("cn-host", KEY)]


def assert_checked_now(server: VigilServer, itemid: int, within: float, wait_first: float = 0) -> tuple[int, int]:
    """Check the item now and wait for a value polled after that; the task's (status, proxyid)."""
    if wait_first:
        time.sleep(wait_first)  # the proxy has its configuration
    # The item's own slot in the hour is at second itemid % 3600 (Zabbix's and Vigil's schedule): a
    # fresh database's small ids put it just after the full hour. A test that runs then waits for it
    # to pass, so the value that comes is the check now's.
    slot = nextcheck(itemid, 3600, time.time() - 10)
    if slot < time.time() + within + 10:
        time.sleep(max(slot - time.time() + 5, 0))
    before = clocks(server)
    asked = int(time.time())
    taskid = check_now(server, itemid)
    wait_until(lambda: any(c >= asked for c in clocks(server)), within,
               f"a value of {KEY} polled after the check now (before: {len(before)} values)", interval=0.5)
    fresh = [r for r in server.history("cn-host", KEY) if int(r[0]) >= asked]
    assert len(fresh) == 1, (asked, fresh)  # one poll, then back to the hourly slot
    return task_state(server, taskid)


def test_server_polls_its_own_item_at_once(vigil_server: VigilServer, zabbix_agentd: int) -> None:
    vigil_server.import_yaml(config(zabbix_agentd))
    vigil_server.wait_for_config("cn-host")
    itemid = itemid_of(vigil_server, KEY)
    time.sleep(1.5)  # the pollers have loaded the item at its hourly slot
    status, proxyid = assert_checked_now(vigil_server, itemid, 15)
    assert (status, proxyid) == (3, None)  # done, by the server itself


def test_check_now_of_a_trapper_item_is_refused_naming_it(vigil_server: VigilServer, zabbix_agentd: int) -> None:
    vigil_server.import_yaml(config(zabbix_agentd))
    itemid = itemid_of(vigil_server, "cn.trap")
    with pytest.raises(store.CheckNowError, match=r"wrong item type: item \"cn.trap\" \(cn.trap, itemid \d+\) on "
                                                   r"host \"cn-host\" is a trapper item"):
        check_now(vigil_server, itemid)
    with pytest.raises(store.CheckNowError, match="itemid: no item 987654321"):
        check_now(vigil_server, 987654321)


@pytest.mark.parametrize("kind", ["zabbix_proxy active", "zabbix_proxy passive", "vigil proxy active",
                                  "vigil proxy passive"])
def test_a_proxy_polls_the_item_at_once(kind: str, tmp_path: Path, database_url: str, zabbix_agentd: int,
                                        proxy_db: Path) -> None:
    passive = kind.endswith("passive")
    name = "cn-" + kind.replace(" ", "-").replace("_", "")
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="0.5")
    proxy: ZabbixProxy | VigilProxy | None = None
    try:
        server.start()
        upstream = "127.0.0.1" if passive else f"127.0.0.1:{server.port}"
        if kind.startswith("zabbix_proxy"):
            proxy = ZabbixProxy(tmp_path, name, server=upstream, passive=passive, database=proxy_db)
        else:
            proxy = VigilProxy(tmp_path, name, server=upstream, passive=passive)
        server.import_yaml(config(zabbix_agentd, name, "passive" if passive else "active", proxy.port))
        itemid = itemid_of(server, KEY)
        proxy.start()
        if isinstance(proxy, VigilProxy):
            proxy.wait_for_host("cn-host")
        elif passive:
            zp = proxy
            wait_until(lambda: bool(zp.query("SELECT 1 FROM hosts WHERE host = 'cn-host'")), 30,
                       "the server to push the configuration to the passive zabbix_proxy", interval=0.5)
        else:
            proxy.wait_for_config()
        status, proxyid = assert_checked_now(server, itemid, 30, wait_first=3)
        assert status == 3 and proxyid is not None  # given to the proxy
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    if isinstance(proxy, ZabbixProxy):
        assert "cannot process" not in proxy.log_text()
