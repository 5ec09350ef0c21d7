"""Passive agent checks against the real zabbix_agentd and vigil-agent, and against ports that
refuse or never answer."""

from __future__ import annotations

import asyncio

import pytest
from vigil.server.pollers import NotSupported, Unreachable
from vigil.server.pollers.agent import get

from tests.conftest import free_port
from tests.server.pollers.conftest import Listener


@pytest.fixture(params=["zabbix_agentd", "vigil_agent"])
def agent_port(request: pytest.FixtureRequest) -> int:
    return request.getfixturevalue(request.param)


def test_values_come_from_the_real_agents(agent_port: int) -> None:
    assert asyncio.run(get("127.0.0.1", agent_port, "agent.ping", 5)) == "1"
    n = asyncio.run(get("127.0.0.1", agent_port, "system.cpu.num", 5))
    assert n.isdigit() and int(n) >= 1


def test_an_unknown_key_is_not_supported_with_the_agents_reason(agent_port: int) -> None:
    with pytest.raises(NotSupported) as e:
        asyncio.run(get("127.0.0.1", agent_port, "no.such.key", 5))
    assert "Unsupported item key" in str(e.value)


def test_nothing_listening_is_a_network_error_naming_the_address() -> None:
    port = free_port()
    with pytest.raises(Unreachable) as e:
        asyncio.run(get("127.0.0.1", port, "agent.ping", 2))
    assert f"[[127.0.0.1]:{port}]" in str(e.value) and "cannot connect" in str(e.value)


def test_a_silent_peer_is_a_network_error_after_the_timeout(silent: Listener) -> None:
    with pytest.raises(Unreachable) as e:
        asyncio.run(get("127.0.0.1", silent.port, "agent.ping", 0.5))
    assert "did not answer within 0.5 s" in str(e.value)


def test_a_peer_answering_garbage_is_not_supported() -> None:
    lst = Listener("banner", b"HTTP/1.0 400 Bad Request\r\n\r\n")
    try:
        with pytest.raises(NotSupported) as e:
            asyncio.run(get("127.0.0.1", lst.port, "agent.ping", 2))
        assert "invalid reply" in str(e.value) and "ZBXD" in str(e.value)
    finally:
        lst.close()
