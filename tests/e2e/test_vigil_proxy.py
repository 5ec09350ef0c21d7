"""Pairing 3: `vigil proxy` (active and passive) -> `vigil server` (SQLite and PostgreSQL), with real
zabbix_sender and zabbix_agentd (passive and active) feeding the proxy. Every value the proxy buffered
lands once in the server's store with its original clock and ns; bad input to the proxy's port is
answered and the proxy keeps serving; a SIGKILLed proxy keeps its buffer and starts a new session."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, free_port, require, stop_process, wait_port, wait_until
from tests.vigil_proxy import VigilProxy, exchange

CONFIG = """
proxies:
  - {name: %(name)s, mode: %(mode)s%(address)s}
hosts:
  - host: far1
    proxy: %(name)s
    interfaces: [{type: agent, address: 127.0.0.1, port: %(agent_port)d}]
    items:
      - {key: trap.a, type: trapper, value_type: unsigned}
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}
      - {key: system.localtime, type: agent_active, value_type: unsigned, delay: 1s}
"""


@pytest.fixture
def agentd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real zabbix_agentd for host far1: passive on its port; its active side configured by the test."""
    port = free_port()
    conf = tmp_path / "zabbix_agentd.conf"
    yield port, conf


def start_agentd(tmp_path: Path, port: int, conf: Path, proxy_port: int) -> subprocess.Popen:
    conf.write_text(
        f"Server=127.0.0.1\nServerActive=127.0.0.1:{proxy_port}\nListenIP=127.0.0.1\nListenPort={port}\n"
        f"Hostname=far1\nRefreshActiveChecks=60\nBufferSend=1\nLogType=console\n"
        f"PidFile={tmp_path}/zabbix_agentd.pid\nStartAgents=2\nAllowRoot=1\n")
    proc = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    return proc


def send(port: int, lines: list[str], tmp: Path) -> str:
    f = tmp / f"sender-{time.monotonic_ns()}.txt"
    f.write_text("".join(x + "\n" for x in lines))
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(port), "-T", "-N", "-i", str(f)],
                       capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def server_rows(server: VigilServer, key: str) -> list[tuple[int, int, str]]:
    engine = engine_for(server.database_url)
    store = open_store(server.database_url)
    try:
        found = ConfigRepo(engine).item("far1", key)
        assert found is not None
        return [(c, n, str(v)) for c, n, v in store.history(found[0], found[1], 0, 2**31 - 1)]
    finally:
        store.close()
        engine.dispose()


def itemids(server: VigilServer) -> dict[str, int]:
    engine = engine_for(server.database_url)
    try:
        repo = ConfigRepo(engine)
        out = {}
        for key in ("trap.a", "agent.ping", "system.localtime"):
            found = repo.item("far1", key)
            assert found is not None
            out[key] = found[0]
        return out
    finally:
        engine.dispose()


def assert_outbox_landed_once(server: VigilServer, proxy: VigilProxy) -> dict[str, int]:
    """Every value record the proxy buffered and the server acknowledged is in the server's store
    exactly once, with its clock and ns; returns the count per key."""
    ids = itemids(server)
    counts = {}
    records = [r for r in proxy.outbox() if r[3] is not None]
    for key, itemid in ids.items():
        sent = sorted((c, n, v) for i, c, n, v, s in records if i == itemid and s)
        stored = server_rows(server, key)
        dupes = [k for k, m in Counter(stored).items() if m > 1]
        assert dupes == [], f"{key}: stored more than once: {dupes[:5]}"
        assert not Counter(sent) - Counter(stored), f"{key}: acknowledged, not stored"
        # The agents keep producing: what the server stored after the outbox was read (its
        # acknowledgement not yet seen by the proxy then) is newer than everything acknowledged.
        later = sorted((Counter(stored) - Counter(sent)).elements())
        assert not sent or not later or later[0][:2] > sent[-1][:2], f"{key}: stored, never acknowledged: {later}"
        counts[key] = len(stored)
    return counts


def wait_for_values(server: VigilServer, key: str, n: int, timeout: float = 60) -> None:
    wait_until(lambda: len(server_rows(server, key)) >= n, timeout, f"{n} values of far1:{key} on the server",
               interval=0.3)


def wait_drained(proxy: VigilProxy, timeout: float = 30) -> None:
    wait_until(lambda: all(r[4] for r in proxy.outbox()), timeout, "the proxy's buffer to be acknowledged",
               interval=0.3)


@pytest.fixture(params=["active", "passive"])
def pairing(request: pytest.FixtureRequest, tmp_path: Path, database_url: str,
            agentd: tuple[int, Path]) -> Iterator[tuple[VigilServer, VigilProxy, subprocess.Popen]]:
    mode = request.param
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="1", VIGIL_PROXY_CONFIG_FREQUENCY="2")
    server.start()
    name = f"vp-{mode}"
    if mode == "active":
        proxy = VigilProxy(tmp_path, name, server=f"127.0.0.1:{server.port}")
    else:
        proxy = VigilProxy(tmp_path, name, server="127.0.0.1", passive=True)
    agent_port, agent_conf = agentd
    server.import_yaml(CONFIG % {"name": name, "mode": mode, "agent_port": agent_port,
                                      "address": f', address: "127.0.0.1:{proxy.port}"' if mode == "passive" else ""})
    agent = None
    try:
        proxy.start()
        proxy.wait_for_host("far1")
        agent = start_agentd(tmp_path, agent_port, agent_conf, proxy.port)
        yield server, proxy, agent
    finally:
        if agent is not None:
            stop_process(agent)
        proxy.stop()
        server.stop()


def test_values_from_sender_and_agents_land_once_with_their_clocks(
        pairing: tuple[VigilServer, VigilProxy, subprocess.Popen], tmp_path: Path) -> None:
    server, proxy, _ = pairing
    base = int(time.time()) - 100
    lines = [f"far1 trap.a {base + i} {i * 1000 + 7} {i}" for i in range(50)]
    out = send(proxy.port, lines, tmp_path)
    assert "processed: 50; failed: 0" in out, out
    wait_for_values(server, "trap.a", 50)
    assert sorted(server_rows(server, "trap.a")) == [(base + i, i * 1000 + 7, str(i)) for i in range(50)]
    wait_for_values(server, "agent.ping", 3)
    wait_for_values(server, "system.localtime", 3)
    wait_drained(proxy)
    counts = assert_outbox_landed_once(server, proxy)
    assert counts["trap.a"] == 50 and counts["agent.ping"] >= 3 and counts["system.localtime"] >= 3
    assert {v for _, _, v in server_rows(server, "agent.ping")} == {"1"}


def test_bad_input_is_answered_and_the_proxy_keeps_serving(
        pairing: tuple[VigilServer, VigilProxy, subprocess.Popen], tmp_path: Path) -> None:
    server, proxy, _ = pairing
    assert exchange(proxy.port, b"this is not a frame" * 1000) is None  # closed
    reply = exchange(proxy.port, {"request": "sender data", "data": [{"host": "nobody", "key": "trap.a",
                                                                      "value": "1"}]})
    assert reply is not None and reply["response"] == "success" and "failed: 1" in reply["info"]
    reply = exchange(proxy.port, {"request": "active checks", "host": "nobody"})
    assert reply == {"response": "failed", "info": "host [nobody] not found"}
    reply = exchange(proxy.port, {"request": "sender data", "data": "x"})
    assert reply is not None and reply["response"] == "failed" and "'data'" in reply["info"]
    assert exchange(proxy.port, {"request": "proxy config", "host": "x"})["response"] == "failed"
    assert proxy.alive()
    out = send(proxy.port, [f"far1 trap.a {int(time.time())} 5 77"], tmp_path)
    assert "processed: 1; failed: 0" in out, out
    wait_until(lambda: any(v == "77" for _, _, v in server_rows(server, "trap.a")), 30, "the value after bad input")


def sessions(proxy: VigilProxy) -> list[str]:
    return re.findall(r"session ([0-9a-f]{32})", proxy.log_text())


def test_killed_proxy_keeps_its_buffer_and_starts_a_new_session(tmp_path: Path, database_url: str,
                                                               agentd: tuple[int, Path]) -> None:
    server = VigilServer(tmp_path, database_url).start()
    proxy = VigilProxy(tmp_path, "vp-kill", server=f"127.0.0.1:{server.port}", StartPollers="0")
    server.import_yaml(CONFIG % {"name": "vp-kill", "mode": "active", "address": "", "agent_port": agentd[0]})
    try:
        proxy.start()
        proxy.wait_for_host("far1")
        base = int(time.time()) - 200
        assert "processed: 10; failed: 0" in send(proxy.port, [f"far1 trap.a {base + i} {i} {i}"
                                                                for i in range(10)], tmp_path)
        wait_for_values(server, "trap.a", 10)
        server.stop()  # outage: the proxy buffers
        out = send(proxy.port, [f"far1 trap.a {base + 100 + i} {i} {100 + i}" for i in range(40)], tmp_path)
        assert "processed: 40; failed: 0" in out, out  # committed to the buffer before the answer
        proxy.kill()
        unsent = [r for r in proxy.outbox() if not r[4]]
        assert len(unsent) == 40
        proxy.start()
        server.start()
        wait_for_values(server, "trap.a", 50)
        wait_drained(proxy)
        stored = server_rows(server, "trap.a")
        assert sorted(stored) == sorted([(base + i, i, str(i)) for i in range(10)]
                                        + [(base + 100 + i, i, str(100 + i)) for i in range(40)])
        assert len(set(sessions(proxy))) == 2
    finally:
        proxy.stop()
        server.stop()


def test_config_changes_reach_the_proxy_and_sigterm_keeps_what_was_not_sent(tmp_path: Path, database_url: str,
                                                                          agentd: tuple[int, Path]) -> None:
    server = VigilServer(tmp_path, database_url).start()
    proxy = VigilProxy(tmp_path, "vp-sync", server=f"127.0.0.1:{server.port}", StartPollers="0")
    doc = CONFIG % {"name": "vp-sync", "mode": "active", "address": "", "agent_port": agentd[0]}
    server.import_yaml(doc)
    try:
        proxy.start()
        proxy.wait_for_host("far1")
        now = int(time.time())
        assert "failed: 1" in send(proxy.port, [f"far1 trap.b {now} 0 1"], tmp_path)  # not an item yet
        server.import_yaml(doc + "      - {key: trap.b, type: trapper, value_type: unsigned}\n")

        def accepted() -> bool:
            return "processed: 1; failed: 0" in send(proxy.port, [f"far1 trap.b {now} 1 5"], tmp_path)

        wait_until(accepted, 30, "the proxy to take the new item within ConfigFrequency", interval=0.5)
        wait_until(lambda: server_rows(server, "trap.b") == [(now, 1, "5")], 30, "trap.b on the server")
        server.stop()
        assert "processed: 3; failed: 0" in send(proxy.port, [f"far1 trap.a {now + i} {i} {i}" for i in range(3)],
                                                  tmp_path)
        proxy.stop()  # SIGTERM while the server is away: the values stay buffered
        assert "stopped:" in proxy.log_text()
        assert len([r for r in proxy.outbox() if not r[4]]) == 3
        proxy.start()
        server.start()
        wait_until(lambda: len(server_rows(server, "trap.a")) == 3, 60, "the values buffered over the stop",
                   interval=0.3)
        assert sorted(server_rows(server, "trap.a")) == [(now + i, i, str(i)) for i in range(3)]
    finally:
        proxy.stop()
        server.stop()
