"""`vigil server` polls: the real zabbix_agentd and vigil-agent passively, an HTTP server, a TCP
port; the values are read back with `vigil history`. A device that stops answering becomes
unavailable and comes back."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, free_port, wait_until
from tests.server.pollers import httpserver
from tests.server.pollers.conftest import run_vigil_agent, vigil_agent  # noqa: F401


def _values(server: VigilServer, host: str, key: str) -> list[str]:
    return [row[-1] for row in server.history(host, key)]


def test_vigil_server_polls_agents_http_and_tcp(vigil_server: VigilServer, zabbix_agentd: int,
                                                vigil_agent: int) -> None:  # noqa: F811
    web = httpserver.start()
    try:
        port = web.server_address[1]
        vigil_server.import_yaml(f"""
hosts:
  - host: zbx
    interfaces: [{{type: agent, address: 127.0.0.1, port: {zabbix_agentd}}}]
    items:
      - {{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}
      - {{key: agent.hostname, type: agent, value_type: char, delay: 1s}}
      - {{key: no.such.key, type: agent, value_type: char, delay: 1s}}
  - host: vig
    interfaces: [{{type: agent, address: 127.0.0.1, port: {vigil_agent}}}]
    items:
      - {{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}
      - {{key: system.cpu.num, type: agent, value_type: unsigned, delay: 1s}}
      - {{key: 'net.tcp.service[http,,{port}]', type: simple, value_type: unsigned, delay: 1s}}
      - {{key: web.page, type: http_agent, value_type: char, delay: 1s, url: 'http://{{HOST.CONN}}:{port}/ok'}}
      - key: web.len
        type: dependent
        master_item: web.page
        value_type: unsigned
        preprocessing: [{{type: regex, params: ['he(l+)o', '\\1']}}, {{type: str_replace, params: [l, '1']}}]
""")

        missing: list[tuple[str, str]] = []

        def polled() -> bool:
            missing[:] = [(h, k) for h, k in (
                ("zbx", "agent.ping"), ("zbx", "agent.hostname"), ("vig", "agent.ping"), ("vig", "system.cpu.num"),
                ("vig", f"net.tcp.service[http,,{port}]"), ("vig", "web.page"), ("vig", "web.len"))
                if not _values(vigil_server, h, k)]
            return not missing

        try:
            wait_until(polled, 30, "values of every polled item in vigil history")
        except AssertionError:
            raise AssertionError(f"no values of {missing}; server log: {vigil_server.log_text()[-3000:]}") from None
    finally:
        httpserver.stop(web)
    assert set(_values(vigil_server, "zbx", "agent.ping")) == {"1"}
    assert set(_values(vigil_server, "zbx", "agent.hostname")) == {"zbx-peer"}
    assert set(_values(vigil_server, "vig", "agent.ping")) == {"1"}
    assert int(_values(vigil_server, "vig", "system.cpu.num")[0]) >= 1
    assert _values(vigil_server, "vig", f"net.tcp.service[http,,{port}]")[0] == "1"
    assert _values(vigil_server, "vig", "web.page")[0] == "hello"
    assert _values(vigil_server, "vig", "web.len")[0] == "11"  # hello -> ll -> 11
    assert _values(vigil_server, "zbx", "no.such.key") == []
    engine = engine_for(vigil_server.database_url)
    try:
        with engine.connect() as c:
            state = c.execute(sa.select(t.item_state.c.state, t.item_state.c.error).join(
                t.items, t.items.c.itemid == t.item_state.c.itemid).where(t.items.c.key_ == "no.such.key")).first()
    finally:
        engine.dispose()
    assert state is not None and state.state == 1 and "Unsupported item key" in state.error


def test_a_device_that_stops_answering_becomes_unavailable_and_comes_back(tmp_path: Path) -> None:
    server = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}", VIGIL_UNREACHABLE_PERIOD="2",
                         VIGIL_UNREACHABLE_DELAY="1", VIGIL_UNAVAILABLE_DELAY="1").start()
    port = free_port()
    agent = run_vigil_agent(tmp_path, port)
    next(agent)
    engine = engine_for(server.database_url)

    def available() -> int:
        with engine.connect() as c:
            return int(c.execute(sa.select(t.interfaces.c.available)).scalar() or 0)

    try:
        server.import_yaml(f"""
hosts:
  - host: dev
    interfaces: [{{type: agent, address: 127.0.0.1, port: {port}}}]
    items: [{{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}]
""")
        wait_until(lambda: available() == 1, 20, "the interface to be available")
        agent.close()  # the device stops answering
        wait_until(lambda: available() == 2, 30, "the interface to become unavailable")
        with engine.connect() as c:
            error = c.execute(sa.select(t.interfaces.c.error)).scalar()
        assert f"cannot connect to [[127.0.0.1]:{port}]" in error
        before = len(server.history("dev", "agent.ping"))
        agent = run_vigil_agent(tmp_path, port)
        next(agent)
        wait_until(lambda: available() == 1 and len(server.history("dev", "agent.ping")) > before, 30,
                   "the interface to be available again with new values")
        assert "unavailable" in server.log_text() and "available again" in server.log_text()
    finally:
        agent.close()
        engine.dispose()
        server.stop()
