"""Proxy groups in the configuration, on both backends: `proxy_groups:`, a proxy's `group:`, a host's
`proxy_group:`; export round-trip, refusals naming the field, and the balancer's reads and writes:
which proxy is sent which host, and that a moved host's values are still taken from its old proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ProxyGroupState
from vigil.server.ingest.proxybalancer import ProxyBalancer

from tests.server.proxy_schema import PROXY_SCHEMA_60


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def load(repo: ConfigRepo, text: str, **kw: Any) -> Any:
    return repo.apply(doc_from_dict(yaml.safe_load(text)), **kw)


DOC = """
proxy_groups:
  - {name: dc-east, failover_delay: 30s, min_online: 1, description: East data centre}
  - {name: dc-west}
proxies:
  - {name: east-1, group: dc-east}
  - {name: east-2, group: dc-east}
  - {name: lone}
hosts:
""" + "".join(f"""  - host: h{i}
    proxy_group: dc-east
    interfaces: [{{type: agent, address: 10.0.0.{i}}}]
    items: [{{key: trap, type: trapper}}, {{key: agent.ping, type: agent, value_type: unsigned}}]
""" for i in range(6)) + """  - host: static
    proxy: lone
    items: [{key: trap, type: trapper}]
"""


def hosts_of(repo: ConfigRepo, proxy: str) -> list[str]:
    fields, rows = repo.proxy_tables(repo.proxies()[proxy].proxyid)["hosts"]
    return sorted(r[fields.index("host")] for r in rows)


def test_proxy_groups_round_trip_through_export(repo: ConfigRepo) -> None:
    load(repo, DOC)
    ProxyBalancer(repo, 1).run_once()  # assigns the hosts: that is runtime state, not exported
    out = repo.export()
    assert out["proxy_groups"] == [
        {"name": "dc-east", "failover_delay": "30s", "min_online": 1, "description": "East data centre"},
        {"name": "dc-west", "failover_delay": "1m", "min_online": 1}]
    assert {p["name"]: p.get("group") for p in out["proxies"]} == {"east-1": "dc-east", "east-2": "dc-east",
                                                                   "lone": None}
    hosts = {h["host"]: h for h in out["hosts"]}
    assert hosts["h0"]["proxy_group"] == "dc-east" and "proxy" not in hosts["h0"]
    assert hosts["static"]["proxy"] == "lone" and "proxy_group" not in hosts["static"]
    repo.apply(doc_from_dict(out))
    assert repo.export() == out


@pytest.mark.parametrize(("doc", "message"), [
    ("proxy_groups: {name: a}", r"proxy_groups: expected a list"),
    ("proxy_groups: [{name: a}, {name: a}]", r"proxy_groups\[1\]\.name: 'a' appears twice \(also proxy_groups\[0\]"),
    ("proxy_groups: [{name: 'a/b'}]", r"proxy_groups\[0\]\.name: 'a/b' may contain only"),
    ("proxy_groups: [{name: a, failover_delay: 5s}]", r"proxy_groups\[0\]\.failover_delay: '5s' is outside 10s\.\.15m"),
    ("proxy_groups: [{name: a, failover_delay: 1h}]", r"proxy_groups\[0\]\.failover_delay: '1h' is outside"),
    ("proxy_groups: [{name: a, failover_delay: soon}]", r"proxy_groups\[0\]\.failover_delay: expected a duration"),
    ("proxy_groups: [{name: a, min_online: 0}]", r"proxy_groups\[0\]\.min_online: expected a number of proxies"),
    ("proxy_groups: [{name: a, min_online: many}]", r"proxy_groups\[0\]\.min_online: expected a number"),
    ("proxy_groups: [{name: a, min_online: 1001}]", r"proxy_groups\[0\]\.min_online: .* got 1001"),
    ("proxy_groups: [{name: a, size: 3}]", r"proxy_groups\[0\]: unknown field 'size'"),
    ("proxies: [{name: p, group: [a]}]", r"proxies\[0\]\.group: expected text"),
    ("hosts: [{host: h, proxy: p, proxy_group: g}]",
     r"hosts\[0\]\.proxy_group: a host is monitored by a proxy or by a proxy group, not both"),
    ("hosts: [{host: h, proxy_group: {a: 1}}]", r"hosts\[0\]\.proxy_group: expected text"),
])
def test_bad_proxy_groups_are_refused_naming_the_field(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        doc_from_dict(yaml.safe_load(doc))


def test_unknown_group_names_are_refused_and_nothing_is_stored(repo: ConfigRepo) -> None:
    load(repo, "proxy_groups: [{name: g1}]")
    with pytest.raises(ConfigError, match=r"hosts\[1\]\.proxy_group: no proxy group 'g2' \(known: g1"):
        load(repo, "hosts: [{host: a, proxy_group: g1}, {host: b, proxy_group: g2}]")
    with pytest.raises(ConfigError, match=r"proxies\[0\]\.group: no proxy group 'nope' \(known: g1"):
        load(repo, "proxies: [{name: p, group: nope}]\nhosts: [{host: a}]")
    assert repo.export()["hosts"] == [] and "proxies" not in repo.export()


def test_balancer_assigns_and_fails_over_and_the_proxy_tables_follow(repo: ConfigRepo) -> None:
    load(repo, DOC)
    proxies = repo.proxies()
    e1, e2 = proxies["east-1"].proxyid, proxies["east-2"].proxyid
    t0 = 1_800_000_000
    balancer = ProxyBalancer(repo, 1, started=t0 - 3600)  # started long ago: last contact alone counts
    repo.touch_proxy(e1, t0, "6.0.14")
    repo.touch_proxy(e2, t0, "6.0.14")
    version = repo.version()
    result = balancer.run_once(t0 + 1)["dc-east"]
    assert result.counts == {e1: 3, e2: 3} and repo.version() > version
    assert len(hosts_of(repo, "east-1")) == 3 and len(hosts_of(repo, "east-2")) == 3
    assert hosts_of(repo, "lone") == ["static"]
    on_e2 = hosts_of(repo, "east-2")
    # Not polled by the server, whatever proxy they have.
    assert not [i for i in repo.poll_config().items.values() if i.host.startswith("h")]

    # east-2 is silent for longer than failover_delay (30 s): its hosts go to east-1.
    repo.touch_proxy(e1, t0 + 40, "6.0.14")
    version = repo.version()
    result = balancer.run_once(t0 + 40)["dc-east"]
    assert len(result.moved) == 3 and hosts_of(repo, "east-1") == [f"h{i}" for i in range(6)]
    assert set(on_e2) < set(hosts_of(repo, "east-1")) and repo.version() > version
    # Values east-2 buffered for its old hosts are still accepted from it, and from east-1.
    grouped = set(repo.proxy_items(e1))
    assert set(repo.proxy_items(e2)) == grouped and len(grouped) == 12
    assert set(repo.proxy_items(proxies["lone"].proxyid)).isdisjoint(grouped)
    # east-2 keeps them as sinks until it has delivered its buffer: trapper items nobody may send to,
    # so it polls nothing for them but still sends what it holds (6.0 drops values of unknown items).
    tables = repo.proxy_tables(e2)
    assert hosts_of(repo, "east-2") == on_e2
    items = [dict(zip(tables["items"][0], r, strict=True)) for r in tables["items"][1]]
    assert len(items) == 6 and {(i["type"], i["trapper_hosts"], i["interfaceid"]) for i in items} == {
        (2, "255.255.255.255", None)}
    assert sorted(r[0] for r in tables["item_rtdata"][1]) == sorted(i["itemid"] for i in items)
    for name, (fields, rows) in tables.items():
        assert [f for f in fields if f not in PROXY_SCHEMA_60[name]] == [], name
        assert all(len(r) == len(fields) for r in rows), name
    sent = int(time.time())  # proxy_tables marked when east-2 was sent them
    assert repo.end_drains(e2, sent) == 0  # caught up too soon after: values may still be on their way
    version = repo.version()
    assert repo.end_drains(e2, sent + 6) == 3 and repo.version() > version
    assert hosts_of(repo, "east-2") == [] and repo.draining_proxies() == set()

    # east-2 is back: within the bound (6 hosts on east-1 = twice the average of 3), nothing moves.
    repo.touch_proxy(e2, t0 + 41, "6.0.14")
    version = repo.version()
    assert balancer.run_once(t0 + 41)["dc-east"].moved == {}
    assert repo.version() == version


def test_a_host_moving_back_to_the_proxy_it_drains_from_is_its_own_again(repo: ConfigRepo) -> None:
    load(repo, DOC)
    proxies = repo.proxies()
    e1, e2 = proxies["east-1"].proxyid, proxies["east-2"].proxyid
    t0 = 1_800_000_000
    balancer = ProxyBalancer(repo, 1, started=t0 - 3600)
    for p in (e1, e2):
        repo.touch_proxy(p, t0, "6.0.14")
    balancer.run_once(t0)
    repo.touch_proxy(e1, t0 + 100, "6.0.14")
    balancer.run_once(t0 + 100)  # all on east-1; east-2 drains three
    assert repo.draining_proxies() == {e2}
    repo.touch_proxy(e2, t0 + 200, "6.0.14")  # east-2 is back, east-1 goes silent: all go to east-2
    balancer.run_once(t0 + 200)
    assert len(hosts_of(repo, "east-2")) == 6 and repo.draining_proxies() == {e1}
    assert len(repo.drained_hosts(e1)) == 6


def test_a_group_below_min_online_is_offline_and_keeps_its_hosts(repo: ConfigRepo) -> None:
    load(repo, DOC.replace("min_online: 1", "min_online: 2"))
    proxies = repo.proxies()
    e1, e2 = proxies["east-1"].proxyid, proxies["east-2"].proxyid
    t0 = 1_800_000_000
    balancer = ProxyBalancer(repo, 1, started=t0 - 3600)
    repo.touch_proxy(e1, t0, "6.0.14")
    repo.touch_proxy(e2, t0, "6.0.14")
    balancer.run_once(t0)
    before = (hosts_of(repo, "east-1"), hosts_of(repo, "east-2"))
    repo.touch_proxy(e1, t0 + 100, "6.0.14")
    result = balancer.run_once(t0 + 100)["dc-east"]
    assert result.offline and result.moved == {}
    assert (hosts_of(repo, "east-1"), hosts_of(repo, "east-2")) == before
    assert {g.name: g.state for g in repo.proxy_group_states()}["dc-east"] == ProxyGroupState.OFFLINE


def test_after_a_server_start_no_proxy_counts_as_silent_before_failover_delay(repo: ConfigRepo) -> None:
    load(repo, DOC)
    proxies = repo.proxies()
    t0 = 1_800_000_000
    repo.touch_proxy(proxies["east-1"].proxyid, t0 - 86400, "6.0.14")  # last heard of a day before the start
    result = ProxyBalancer(repo, 1, started=t0).run_once(t0 + 29)["dc-east"]
    assert len(result.online) == 2 and len(hosts_of(repo, "east-1")) == 3


def test_hosts_leave_a_group_for_a_proxy_or_the_server_and_a_removed_group_frees_its_hosts(repo: ConfigRepo) -> None:
    load(repo, DOC)
    ProxyBalancer(repo, 1).run_once()
    load(repo, "hosts: [{host: h0, proxy: lone}, {host: h1, proxy_group: null}]")
    out = {h["host"]: h for h in repo.export()["hosts"]}
    assert out["h0"].get("proxy") == "lone" and "proxy_group" not in out["h0"]
    assert "proxy" not in out["h1"] and "proxy_group" not in out["h1"]
    assert ("h1", "agent.ping") in {(i.host, i.key) for i in repo.poll_config().items.values()}
    # Into a group: a proxy outside the group is dropped until the balancer assigns one of its own.
    load(repo, "hosts: [{host: h0, proxy: null, proxy_group: dc-east}]")
    assert "h0" not in hosts_of(repo, "lone") and "h0" not in hosts_of(repo, "east-1") + hosts_of(repo, "east-2")
    ProxyBalancer(repo, 1).run_once()
    assert "h0" in hosts_of(repo, "east-1") + hosts_of(repo, "east-2")
    load(repo, "proxy_groups: [{name: dc-west}]", delete_missing=True)
    out = repo.export()
    assert [g["name"] for g in out["proxy_groups"]] == ["dc-west"]
    assert not [h for h in out["hosts"] if "proxy_group" in h or h.get("proxy", "lone") != "lone"]
    assert hosts_of(repo, "east-1") == [] and hosts_of(repo, "east-2") == []
