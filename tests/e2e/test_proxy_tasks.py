"""Remote commands through proxies (docs/proxies.md, "Tasks"), on both stores.

A trigger on a host monitored by a proxy fires; the action's remote command goes to the proxy as a
task in the reply to its `proxy data`; the proxy runs it on the host's real zabbix_agentd
(`system.run[…,nowait]`, which touches a file the test checks) and returns the result in its next
`proxy data`, which records the alert sent. A proxy that takes the task and never answers fails the
alert after the ttl, naming why.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo

from tests.conftest import VigilServer, free_port, require, stop_process, wait_port, wait_until
from tests.vigil_proxy import VigilProxy
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


@pytest.fixture
def run_agentd(tmp_path: Path) -> Iterator[int]:
    """A real zabbix_agentd that runs remote commands (AllowKey=system.run[*]); yields its port."""
    p = free_port()
    conf = tmp_path / "agentd-run.conf"
    conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={p}\nHostname=cmd-host\n"
                    f"LogType=console\nPidFile={tmp_path}/agentd-run.pid\nStartAgents=2\nAllowRoot=1\n"
                    "AllowKey=system.run[*]\n")
    proc = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(p, proc=proc)
        yield p
    finally:
        stop_process(proc)


def config(proxy: str, agent_port: int, marker: Path, mode: str = "active", proxy_port: int = 0) -> str:
    where = f'address: "127.0.0.1:{proxy_port}"' if mode == "passive" else "allowed_addresses: [127.0.0.1]"
    return f"""
proxies:
  - {{name: {proxy}, mode: {mode}, {where}}}
hosts:
  - host: cmd-host
    proxy: {proxy}
    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items:
      - {{key: trap.load, type: trapper}}
    triggers:
      - {{name: "Load high on {{HOST.NAME}}", expression: "last(/cmd-host/trap.load)>5", severity: warning}}
actions:
  - name: fix-it
    operations:
      - {{step_from: 1, step_to: 1, command: "echo {{HOST.HOST}} > {marker}", execute_on: agent}}
"""


def send(port: int, line: str) -> str:
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(port), "-i", "-"],
                       input=f"cmd-host {line}\n", capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def command_alerts(server: VigilServer) -> list[tuple[int, str, str, str]]:
    """(status, sendto, subject, error) of the remote command alerts."""
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(
                "SELECT status, sendto, subject, error FROM alerts WHERE alerttype = 1 ORDER BY alertid"))]
    finally:
        engine.dispose()


def tasks(server: VigilServer) -> list[tuple[int, int]]:
    """(type, status) of the server's tasks."""
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text("SELECT type, status FROM task ORDER BY taskid"))]
    finally:
        engine.dispose()


def fire_through(port: int) -> None:
    """A low value until the proxy has its configuration and takes it, then one that fires the trigger."""
    wait_until(lambda: "processed: 1;" in send(port, "trap.load 1"), 30, "the proxy to accept a trapper value")
    assert "processed: 1;" in send(port, "trap.load 9")


def assert_ran_and_recorded(server: VigilServer, marker: Path) -> None:
    wait_until(marker.exists, 60, "the remote command to run on the agent behind the proxy", interval=0.2)
    wait_until(lambda: marker.read_text().strip() == "cmd-host", 10, "the command to write its output")
    wait_until(lambda: [a[0] for a in command_alerts(server)] == [1], 30,
               "the alert to be recorded sent from the proxy's result", interval=0.2)
    (status, sendto, subject, error), = command_alerts(server)
    assert subject == f"echo cmd-host > {marker}" and error == ""
    assert tasks(server) == [(2, 3), (3, 3)]  # the command and its result, both done


def test_real_zabbix_proxy_runs_an_action_command_on_its_agent(vigil_server: VigilServer, run_agentd: int,
                                                               tmp_path: Path, proxy_db: Path) -> None:
    marker = tmp_path / "ran-by-zabbix-proxy"
    vigil_server.import_yaml(config("px-cmd", run_agentd, marker))
    proxy = ZabbixProxy(tmp_path, "px-cmd", server=f"127.0.0.1:{vigil_server.port}", database=proxy_db,
                        EnableRemoteCommands="1", LogRemoteCommands="1")
    try:
        proxy.start()
        proxy.wait_for_config()
        fire_through(proxy.port)
        assert_ran_and_recorded(vigil_server, marker)
    finally:
        proxy.stop()
    assert "cannot process" not in proxy.log_text()


def test_vigil_proxy_runs_an_action_command_on_its_agent(vigil_server: VigilServer, run_agentd: int,
                                                         tmp_path: Path) -> None:
    marker = tmp_path / "ran-by-vigil-proxy"
    vigil_server.import_yaml(config("vp-cmd", run_agentd, marker))
    proxy = VigilProxy(tmp_path, "vp-cmd", server=f"127.0.0.1:{vigil_server.port}")
    try:
        proxy.start()
        fire_through(proxy.port)
        assert_ran_and_recorded(vigil_server, marker)
    finally:
        proxy.stop()


def _exchange(port: int, obj: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(zbxd.encode(json.dumps(obj).encode()))
        _, body = zbxd.recv_frame(s)
    return json.loads(body)


def test_a_proxy_that_never_returns_the_result_fails_the_alert_after_the_ttl(tmp_path: Path, database_url: str,
                                                                              run_agentd: int) -> None:
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_COMMAND_TTL="3")
    marker = tmp_path / "never"
    try:
        server.start()
        server.import_yaml(config("px-silent", run_agentd, marker))
        engine = engine_for(database_url)
        try:
            itemid = ConfigRepo(engine).item("cmd-host", "trap.load")[0]
        finally:
            engine.dispose()
        session, now = uuid.uuid4().hex, int(time.time())

        def data(records: list[dict]) -> dict:
            return {"request": "proxy data", "host": "px-silent", "session": session, "version": "6.0.14",
                    "history data": records, "clock": int(time.time()), "ns": 0}

        # The test is the proxy: it delivers a value that fires the trigger...
        wait_until(lambda: _exchange(server.port, data([{"id": 1, "itemid": itemid, "clock": now, "ns": 0,
                                                          "value": "9"}]))["info"].startswith("processed: 1;"),
                   30, "the server to load the proxy's host")
        wait_until(lambda: tasks(server) == [(2, 1)], 30, "the action's command to be queued for the proxy")
        # ...takes the command in the reply to its next proxy data, in 6.0's fields, and never answers.
        reply = _exchange(server.port, data([]))
        assert reply["response"] == "success"
        (task,) = reply["tasks"]
        assert task["type"] == 2 and task["ttl"] == 3 and task["execute_on"] == 0 and task["alertid"] > 0
        assert task["command"] == f"echo cmd-host > {marker}" and task["commandtype"] == 0
        assert set(task) == {"type", "clock", "ttl", "commandtype", "command", "execute_on", "port", "authtype",
                             "username", "password", "publickey", "privatekey", "alertid", "parent_taskid",
                             "hostid"}
        assert "tasks" not in _exchange(server.port, data([]))  # given once
        wait_until(lambda: [a[0] for a in command_alerts(server)] == [2], 30, "the alert to fail after the ttl")
        (_, _, _, error), = command_alerts(server)
        assert "proxy [px-silent] returned no result within the remote command's ttl of 3 s" in error, error
        assert tasks(server) == [(2, 4)]
        assert not marker.exists()
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["zabbix_proxy", "vigil proxy"])
def test_a_passive_proxy_gets_the_command_when_the_server_polls_it(kind: str, tmp_path: Path, database_url: str,
                                                                   run_agentd: int, proxy_db: Path) -> None:
    marker = tmp_path / "ran-by-passive-proxy"
    proxy: ZabbixProxy | VigilProxy
    if kind == "zabbix_proxy":
        proxy = ZabbixProxy(tmp_path, "pp-cmd", server="127.0.0.1", passive=True, database=proxy_db,
                            EnableRemoteCommands="1")
    else:
        proxy = VigilProxy(tmp_path, "pp-cmd", server="127.0.0.1", passive=True)
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="0.5")
    try:
        server.start()
        server.import_yaml(config("pp-cmd", run_agentd, marker, mode="passive", proxy_port=proxy.port))
        proxy.start()
        fire_through(proxy.port)
        assert_ran_and_recorded(server, marker)
    finally:
        proxy.stop()
        server.stop()
