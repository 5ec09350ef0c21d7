"""Active agents → Vigil: the real zabbix_agentd 6.0 and vigil-agent (its CLI), same configuration,
same assertions. Values of every type land in the store, template items arrive with their macros
resolved for the host, log lines land in order and a restarted agent goes on from the position the
server kept, without resending a line."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, require, stop_process, vigil_bin, wait_until

HOST = "active-peer"


class ActiveAgent:
    """zabbix_agentd or vigil-agent in active mode only, reporting to one Vigil server."""

    def __init__(self, kind: str, tmp: Path, server_port: int, hostname: str = HOST, n: int = 0) -> None:
        self.kind = kind
        self.tmp = tmp
        self.out = tmp / f"{kind}-{n}.out"
        self.conf = tmp / f"{kind}-{n}.conf"
        self.conf.write_text(
            f"ServerActive=127.0.0.1:{server_port}\nHostname={hostname}\nStartAgents=0\n"
            f"RefreshActiveChecks=60\nBufferSend=1\nLogType=console\nPidFile={tmp}/{kind}-{n}.pid\n"
            + "AllowRoot=1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ActiveAgent:
        cmd = [require("zabbix_agentd"), "-f"] if self.kind == "zabbix_agentd" else [vigil_bin("vigil-agent")]
        self.proc = subprocess.Popen([*cmd, "-c", str(self.conf)], stdout=self.out.open("ab"),
                                     stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""


@pytest.fixture
def active_agents(tmp_path: Path) -> Iterator[Callable[..., ActiveAgent]]:
    """Starts active agents on request; stops every one at the end."""
    started: list[ActiveAgent] = []
    instances: dict[tuple[str, str], int] = {}

    def make(kind: str, server_port: int, hostname: str = HOST) -> ActiveAgent:
        # a restarted agent reuses its files (as a restarted daemon would); another host gets its own
        n = instances.setdefault((kind, hostname), len(instances))
        a = ActiveAgent(kind, tmp_path, server_port, hostname, n)
        started.append(a)
        return a.start()

    try:
        yield make
    finally:
        for a in started:
            a.stop()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    wait_until(cond, timeout, what, interval=0.2)


def config(log_path: Path) -> str:
    return f"""
templates:
  - template: Peer template
    macros: {{"{{$FS}}": /, "{{$FAST}}": 1s}}
    items:
      - {{key: "vfs.fs.size[{{$FS}},total]", type: agent_active, value_type: unsigned, delay: 2s}}
      - {{key: agent.ping, type: agent_active, value_type: unsigned, delay: "{{$FAST}}"}}
hosts:
  - host: {HOST}
    templates: [Peer template]
    items:
      - {{key: agent.hostname, type: agent_active, value_type: char, delay: 2s}}
      - {{key: system.uname, type: agent_active, value_type: text, delay: 2s}}
      - {{key: "system.cpu.load[all,avg1]", type: agent_active, value_type: float, delay: 2s}}
      - {{key: no.such.key, type: agent_active, value_type: float, delay: 1s}}
      - {{key: "log[{log_path}]", type: agent_active, value_type: log, delay: 1s}}
      - {{key: off.item, type: agent_active, value_type: float, delay: 1s, status: disabled}}
"""


def write_lines(path: Path, start: int, n: int) -> list[str]:
    lines = [f"{time.time():.3f} line {i} ünï" for i in range(start, start + n)]
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(x + "\n" for x in lines))
    return lines


class Store:
    """Reads what landed straight from the server's store (polling through `vigil history` would
    start a process per look); the final checks also go through the CLI."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        self.repo = ConfigRepo(self.engine)
        self.store = open_store(url)

    def rows(self, key: str) -> list[tuple[int, int, str]]:
        found = self.repo.item(HOST, key)
        assert found is not None, f"no item {key}"
        return [(c, n, str(v)) for c, n, v in self.store.history(found[0], found[1], 0, 2**31 - 1)]

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


@pytest.fixture
def store(vigil_server: VigilServer) -> Iterator[Store]:
    s = Store(vigil_server.database_url)
    try:
        yield s
    finally:
        s.close()


def values(server: VigilServer, key: str) -> list[str]:
    return [r[2] for r in server.history(HOST, key)]


@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_active_agent_values_land_in_the_store(vigil_server: VigilServer, store: Store, kind: str, tmp_path: Path,
                                               active_agents: Callable[..., ActiveAgent]) -> None:
    server = vigil_server

    def got(key: str) -> list[str]:
        return [r[2] for r in store.rows(key)]

    log_path = tmp_path / "app.log"
    log_path.touch()
    server.import_yaml(config(log_path))
    server.wait_for_config(HOST, f"log[{log_path}]")
    written = write_lines(log_path, 0, 3)
    agent = active_agents(kind, server.port)
    log_key = f"log[{log_path}]"

    wait_for(lambda: len(got("agent.ping")) >= 2 and got(log_key) == written,
             f"agent.ping and log lines from {kind}\n{agent.output()[-2000:]}")
    wait_for(lambda: all(got(k) for k in ("agent.hostname", "system.uname", "system.cpu.load[all,avg1]",
                                          "vfs.fs.size[{$FS},total]")),
             f"a value of every item from {kind}")
    assert set(got("agent.ping")) == {"1"}
    assert got("agent.hostname")[0] == HOST
    assert got("system.uname")[0].startswith("Linux ")
    assert float(got("system.cpu.load[all,avg1]")[0]) >= 0
    # the template's item, its key resolved with the template macro: the agent checked "/"
    assert int(got("vfs.fs.size[{$FS},total]")[0]) == shutil.disk_usage("/").total
    # not supported on the agent: counted, nothing stored; a disabled item gets nothing
    assert got("no.such.key") == []
    assert got("off.item") == []

    # The agent goes away, lines are written meanwhile; the restarted agent asks for its checks,
    # gets the position the server kept for the log item and sends only the new lines.
    agent.stop()
    written += write_lines(log_path, 3, 4)
    agent = active_agents(kind, server.port)
    wait_for(lambda: len(got(log_key)) >= len(written), f"lines after the restart of {kind}")
    written += write_lines(log_path, 7, 2)
    wait_for(lambda: len(got(log_key)) >= len(written), f"lines appended later to {kind}")
    # a duplicate sent late would be in one of the agent's next sends: wait until two more have landed
    pings = len(got("agent.ping"))
    wait_for(lambda: len(got("agent.ping")) >= pings + 2, f"two more sends from {kind}")
    rows = server.history(HOST, log_key)
    assert [r[2] for r in rows] == written
    stamps = [(int(r[0]), int(r[1])) for r in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    pings = server.history(HOST, "agent.ping")
    assert len({(r[0], r[1]) for r in pings}) == len(pings)


@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_unknown_host_gets_no_checks_and_the_agent_says_so(vigil_server_sqlite: VigilServer, kind: str,
                                                           active_agents: Callable[..., ActiveAgent]) -> None:
    server = vigil_server_sqlite
    server.import_yaml(f"hosts: [{{host: {HOST}, status: disabled, "
                       "items: [{key: agent.ping, type: agent_active, value_type: unsigned, delay: 1s}]}]")
    # a disabled host has no checks to wait for: the cache knows it once it is "not monitored", not "not found"
    wait_for(lambda: server.active_checks(HOST).get("info") == f"host [{HOST}] not monitored",
             "the server to load the disabled host")
    unknown = active_agents(kind, server.port, "nobody-here")
    disabled = active_agents(kind, server.port, HOST)
    wait_for(lambda: "host [nobody-here] not found" in unknown.output(), f"{kind} logging the unknown host")
    wait_for(lambda: "host [active-peer] not monitored" in disabled.output(), f"{kind} logging the disabled host")
    assert "no active checks on server" in unknown.output()
    assert "active checks from" in server.log_text() and "host [nobody-here] not found" in server.log_text()
    assert values(server, "agent.ping") == []
