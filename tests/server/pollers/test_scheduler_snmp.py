"""SNMP items through the scheduler against the real snmpd: v2c and v3 values, wrong credentials
and a port with nothing listening as network errors of the SNMP interface."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from vigil.server.config.repo import ConfigRepo
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.peers.snmpd import COMMUNITY, SYS_NAME, USERS, Snmpd, free_udp_port
from tests.server.pollers.test_scheduler import (  # noqa: F401
    FAST,
    _collect,
    _import,
    _interface,
    _run_until,
    _state,
    _values,
    repo,
)


@pytest.fixture(scope="module")
def snmpd() -> Iterator[Snmpd]:
    peer = Snmpd.start()
    try:
        yield peer
    finally:
        peer.stop()


def _doc(port: int, details: str) -> str:
    return f"""
hosts:
  - host: sw1
    interfaces: [{{type: snmp, address: 127.0.0.1, port: {port}, {details}}}]
    items:
      - {{key: sysName, type: snmp, snmp_oid: 1.3.6.1.2.1.1.5.0, value_type: char, delay: 1s}}
      - {{key: sysUpTime, type: snmp, snmp_oid: 1.3.6.1.2.1.1.3.0, value_type: unsigned, delay: 1s}}
      - {{key: missing, type: snmp, snmp_oid: 1.3.6.1.2.1.1.99.0, value_type: char, delay: 1s}}
"""


@pytest.mark.parametrize("details", [f"version: 2, community: {COMMUNITY}", "v3"])
def test_snmp_values_through_the_scheduler(repo: ConfigRepo, snmpd: Snmpd, details: str) -> None:  # noqa: F811
    if details == "v3":
        u = USERS["u-sha256-aes"]
        details = (f"version: 3, securityname: {u.name}, securitylevel: {u.level}, authprotocol: {u.auth}, "
                   f"authpassphrase: {u.authpass}, privprotocol: {u.priv}, privpassphrase: {u.privpass}")
    ids = _import(repo, _doc(snmpd.port, details))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)
    asyncio.run(_run_until(sched, lambda: _values(batches, ids["sysName"]) and _values(batches, ids["sysUpTime"])
                           and _state(repo, ids["missing"]), 15, "SNMP values"))
    assert set(_values(batches, ids["sysName"])) == {SYS_NAME}
    assert all(v > 0 for v in _values(batches, ids["sysUpTime"]))
    state, error = _state(repo, ids["missing"])  # type: ignore[misc]
    assert state == 1 and error
    assert _interface(repo)["available"] == 1


@pytest.mark.parametrize("case", ["wrong password", "nothing listening"])
def test_snmp_network_errors_make_the_interface_unreachable(repo: ConfigRepo, snmpd: Snmpd,  # noqa: F811
                                                            case: str) -> None:
    u = USERS["u-sha-aes"]
    if case == "wrong password":
        port, details = snmpd.port, (f"version: 3, securityname: {u.name}, securitylevel: authPriv, authprotocol: "
                                     f"SHA1, authpassphrase: not-the-password, privprotocol: AES128, "
                                     f"privpassphrase: {u.privpass}")
    else:
        port, details = free_udp_port(), f"version: 2, community: {COMMUNITY}"
    ids = _import(repo, _doc(port, details))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)
    asyncio.run(_run_until(sched, lambda: _interface(repo)["errors_from"] > 0, 15, "an SNMP network error"))
    itf = _interface(repo)
    assert itf["error"] and itf["disable_until"] > 0
    assert _values(batches, ids["sysName"]) == []
