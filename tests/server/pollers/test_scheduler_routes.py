"""The scheduler's one route for values it did not poll: values ingest stored (a trapper master's) and
SNMP traps reach their items and dependent items through preprocessing. Both stores; the end-to-end
versions with the real zabbix_sender, zabbix_agentd and snmptrap are in tests/e2e/test_traps_and_dependents.py."""

from __future__ import annotations

import asyncio
import time

from vigil.server.config.repo import ConfigRepo
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.pollers.snmp_values import SnmpValue
from vigil.server.pollers.snmptraps import Trap
from vigil.server.store.base import WriteBatch

from tests.server.pollers.test_scheduler import FAST, _collect, _import, _state, _values, repo  # noqa: F401

DOC = """
hosts:
  - host: app1
    interfaces: [{type: snmp, address: 10.0.0.9}]
    items:
      - {key: app.stats, type: trapper, value_type: text}
      - key: app.requests
        type: dependent
        master_item: app.stats
        value_type: unsigned
        preprocessing: [{type: jsonpath, params: ['$.requests']}]
      - key: app.missing
        type: dependent
        master_item: app.stats
        value_type: unsigned
        preprocessing: [{type: jsonpath, params: ['$.nothing']}]
      - {key: 'snmptrap[linkDown|5\\.3]', type: snmp_trap, value_type: log}
      - {key: snmptrap.fallback, type: snmp_trap, value_type: log}
      - key: trap.if
        type: dependent
        master_item: 'snmptrap[linkDown|5\\.3]'
        value_type: char
        preprocessing: [{type: regex, params: ['value=STRING: "([^"]*)"', '\\1']}]
"""


def _trap(address: str, trap_oid: str, text: str) -> Trap:
    return Trap(address=address, port=1162, clock=time.time(), version="2c", security_name="public",
                varbinds=(SnmpValue("1.3.6.1.6.3.1.1.4.1.0", "OID", trap_oid),
                          SnmpValue("1.3.6.1.2.1.2.2.1.2.2", "STRING", text)))


def test_ingested_values_and_traps_reach_dependent_items(repo: ConfigRepo) -> None:  # noqa: F811
    ids = _import(repo, DOC)
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)

    async def main() -> dict[str, list[int]]:
        stop = asyncio.Event()
        task = asyncio.create_task(sched.run(stop))
        try:
            while sched.version < 0:
                await asyncio.sleep(0.01)
            stored = WriteBatch()
            stored.texts.append((ids["app.stats"], 1_700_000_000, 5, '{"requests": 42}'))
            sched.received(stored)
            went = {"link": sched.trap(_trap("10.0.0.9", "1.3.6.1.6.3.1.1.5.3", "eth0")),
                    "cold": sched.trap(_trap("10.0.0.9", "1.3.6.1.6.3.1.1.5.1", "-")),
                    "stranger": sched.trap(_trap("10.0.0.10", "1.3.6.1.6.3.1.1.5.3", "eth1"))}
            deadline = time.monotonic() + 10
            while not (_values(batches, ids["trap.if"]) and _state(repo, ids["app.missing"])):
                assert time.monotonic() < deadline, "the routed values did not arrive"
                await asyncio.sleep(0.05)
            return went
        finally:
            stop.set()
            await task

    went = asyncio.run(main())
    assert went == {"link": [ids["snmptrap[linkDown|5\\.3]"]], "cold": [ids["snmptrap.fallback"]], "stranger": []}
    assert _values(batches, ids["app.requests"]) == [42]
    assert [r[1:3] for b in batches for r in b.uints] == [(1_700_000_000, 5)]  # the master's clock
    assert _values(batches, ids["app.stats"]) == []  # ingest stored the master itself
    assert _values(batches, ids["trap.if"]) == ["eth0"]
    state, error = _state(repo, ids["app.missing"])  # type: ignore[misc]
    assert state == 1 and "nothing" in error
    logs = [r for b in batches for r in b.logs]
    assert sorted(r[0] for r in logs) == sorted([ids["snmptrap[linkDown|5\\.3]"], ids["snmptrap.fallback"]])
    assert _state(repo, ids["snmptrap.fallback"]) is None  # trap items are not polled, never "not supported"
