"""Linking the built-in "Network interfaces by SNMP" to a host with an SNMP interface on a real snmpd:
the discovery runs at once, finds the interfaces (loopback left out by the default macro), and the
discovered items give bits/s and per-second rates; the traffic graph has in and out on one chart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.lld import LldProcessor
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.peers.snmpd import COMMUNITY, Snmpd
from tests.server.pollers.test_scheduler import FAST, _collect, _run_until, _values, repo  # noqa: F401


@pytest.fixture(scope="module")
def snmpd() -> Iterator[Snmpd]:
    peer = Snmpd.start()
    try:
        yield peer
    finally:
        peer.stop()


def _walk_names(peer: Snmpd) -> dict[str, str]:
    """ifIndex -> ifName as Net-SNMP's own snmpwalk shows them (what discovery must find)."""
    import subprocess

    out = subprocess.run(["snmpwalk", "-v2c", "-c", COMMUNITY, "-On", "-Oq", f"127.0.0.1:{peer.port}",
                          "1.3.6.1.2.1.31.1.1.1.1"], capture_output=True, text=True, timeout=20, check=True).stdout
    names = {}
    for line in out.splitlines():
        oid, _, name = line.partition(" ")
        names[oid.rsplit(".", 1)[1]] = name.strip().strip('"')
    return names


def _link(repo: ConfigRepo, port: int, macros: str = "") -> None:  # noqa: F811
    repo.apply(doc_from_dict(yaml.safe_load(f"""
hosts:
  - host: sw1
    templates: [Network interfaces by SNMP]
    macros: {{"{{$SNMP.INTERVAL}}": 1s{macros}}}
    interfaces: [{{type: snmp, address: 127.0.0.1, port: {port}, version: 2, community: {COMMUNITY}}}]
""")))


def _items(repo: ConfigRepo) -> dict[str, int]:  # noqa: F811
    return {k: v[0] for k, v in repo.discovered_items("sw1").items()}


def test_linking_the_template_discovers_interfaces_and_polls_rates(repo: ConfigRepo, snmpd: Snmpd) -> None:  # noqa: F811
    names = _walk_names(snmpd)
    lo = [i for i, n in names.items() if n == "lo"]
    others = {i: n for i, n in names.items() if n != "lo"}
    assert lo and others  # the test needs loopback and at least one other interface
    _link(repo, snmpd.port)
    lld = LldProcessor(repo)
    lld.start()
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST, lld=lld.submit)

    def rates() -> bool:
        items = _items(repo)
        return all(len(_values(batches, items.get(f"net.if.{d}[ifHC{o}Octets.{i}]", -1))) >= 2
                   for i in others for d, o in (("in", "In"), ("out", "Out")))

    try:
        asyncio.run(_run_until(sched, rates, 30, "rates of every discovered interface"))
    finally:
        lld.stop()
    items = _items(repo)
    for i in others:
        for key in (f"net.if.in[ifHCInOctets.{i}]", f"net.if.out[ifHCOutOctets.{i}]",
                    f"net.if.in.errors[ifInErrors.{i}]", f"net.if.status[ifOperStatus.{i}]",
                    f"net.if.speed[ifHighSpeed.{i}]"):
            assert key in items
    assert not any(k.endswith(f".{lo[0]}]") for k in items)  # loopback filtered out by the default macro
    for i in others:
        bits = _values(batches, items[f"net.if.in[ifHCInOctets.{i}]"])
        assert all(isinstance(v, float) and v >= 0 for v in bits)
    with repo.engine.connect() as c:
        names_of = dict(c.execute(sa.select(t.items.c.key_, t.items.c.name).where(
            t.items.c.itemid.in_(list(items.values())))).all())
    i = next(iter(others))
    assert names_of[f"net.if.in[ifHCInOctets.{i}]"].startswith(f"Interface {others[i]}(")
    graphs = {g.name: g for g, flags in repo.graphs_of("sw1") if flags == 4}
    g = next(g for n, g in graphs.items() if n.startswith(f"Interface {others[i]}("))
    assert [x.key for x in g.items][:2] == [f"net.if.in[ifHCInOctets.{i}]", f"net.if.out[ifHCOutOctets.{i}]"]
    triggers = {tr.name for tr in repo.triggers()}
    assert any(n.startswith(f"Interface {others[i]}(") and n.endswith("Link down") for n in triggers)


def test_a_host_macro_overrides_the_interface_filter(repo: ConfigRepo, snmpd: Snmpd) -> None:  # noqa: F811
    names = _walk_names(snmpd)
    keep = sorted(n for n in names.values() if n != "lo")[0]
    _link(repo, snmpd.port, f', "{{$NET.IF.IFNAME.MATCHES}}": "^{keep}$"')
    ruleid = repo.rule_id("sw1", "net.if.discovery")
    values: dict[int, str] = {}  # the polled discovery value, applied below by the processor
    sched = Scheduler(repo, _collect([]), FAST, lld=lambda i, v, c: values.setdefault(i, v))
    asyncio.run(_run_until(sched, lambda: ruleid in values, 15, "the discovery value"))
    res = LldProcessor(repo).process(ruleid, values[ruleid])
    assert res is not None and res.rows == len(names) and res.kept == 1
    index = next(i for i, n in names.items() if n == keep)
    assert {k.split("[")[1] for k in _items(repo)} == {f"{p}.{index}]" for p in (
        "ifHCInOctets", "ifHCOutOctets", "ifInErrors", "ifOutErrors", "ifInDiscards", "ifOutDiscards",
        "ifOperStatus", "ifHighSpeed")}
    assert json.loads(json.dumps(res.errors)) == []


def test_a_walk_rule_with_snmp_walk_to_json(repo: ConfigRepo, snmpd: Snmpd) -> None:  # noqa: F811
    names = _walk_names(snmpd)
    repo.apply(doc_from_dict(yaml.safe_load(f"""
hosts:
  - host: sw2
    interfaces: [{{type: snmp, address: 127.0.0.1, port: {snmpd.port}, version: 2, community: {COMMUNITY}}}]
    discovery_rules:
      - key: if.walk
        type: snmp
        snmp_oid: "walk[1.3.6.1.2.1.31.1.1.1.1,1.3.6.1.2.1.2.2.1.3]"
        preprocessing:
          - type: snmp_walk_to_json
            params: ["{{#IFNAME}}", "1.3.6.1.2.1.31.1.1.1.1", "0", "{{#IFTYPE}}", "1.3.6.1.2.1.2.2.1.3", "0"]
        item_prototypes:
          - {{key: "if.type[{{#IFNAME}}]", type: snmp, snmp_oid: "1.3.6.1.2.1.2.2.1.3.{{#SNMPINDEX}}",
             value_type: unsigned, delay: 1s}}
""")))
    lld = LldProcessor(repo)
    lld.start()
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST, lld=lld.submit)

    def done() -> bool:
        found = repo.discovered_items("sw2")
        return len(found) == len(names) and all(_values(batches, i) for i, _, _ in found.values())

    try:
        asyncio.run(_run_until(sched, done, 30, "every interface's type"))
    finally:
        lld.stop()
    found = repo.discovered_items("sw2")
    assert set(found) == {f"if.type[{n}]" for n in names.values()}
    lo = next(i for i, n in names.items() if n == "lo")
    assert _values(batches, found["if.type[lo]"][0])[0] == 24  # softwareLoopback
    with repo.engine.connect() as c:
        oid = c.execute(sa.select(t.items.c.snmp_oid).where(t.items.c.itemid == found["if.type[lo]"][0])).scalar()
    assert oid == f"1.3.6.1.2.1.2.2.1.3.{lo}"
