"""Proxies in the configuration, on both backends: `proxies:` and hosts' `proxy:`, export round-trip,
refusals naming the field, and what a proxy is sent as its configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo

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
macros: {"{$G}": global}
proxies:
  - {name: branch-1, mode: active, allowed_addresses: [127.0.0.1, 10.1.0.0/16], description: Branch office}
  - {name: dmz, mode: passive, address: "dmz-proxy.example.com:10051"}
templates:
  - template: T
    macros: {"{$PORT}": "8080"}
    items:
      - {key: "net.tcp.port[,{$PORT}]", type: agent, value_type: unsigned}
hosts:
  - host: web01
    proxy: branch-1
    templates: [T]
    macros: {"{$OWN}": x}
    interfaces:
      - {type: agent, address: 10.1.0.5}
      - {type: snmp, address: 10.1.0.5, community: public}
    items:
      - {key: trap.a, type: trapper}
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 10s}
      - {key: agent.version, type: agent_active, value_type: char}
      - {key: sysName, type: snmp, snmp_oid: 1.3.6.1.2.1.1.5.0, value_type: char}
      - {key: "net.tcp.service[ssh]", type: simple}
      - {key: page, type: http_agent, url: "http://10.1.0.5/", value_type: text, headers: {X-A: b},
         query_fields: {q: "1"}}
      - {key: calc, type: calculated, params: "last(//agent.ping)"}
      - {key: dep, type: dependent, master_item: page, value_type: text,
         preprocessing: [{type: regex, params: ["a(b)", "\\\\1"]}]}
  - host: db01
    interfaces: [{type: agent, address: 10.2.0.5}]
    items: [{key: agent.ping, type: agent, value_type: unsigned}]
"""


def test_proxies_round_trip_through_export(repo: ConfigRepo) -> None:
    load(repo, DOC)
    out = repo.export()
    assert out["proxies"] == [
        {"name": "branch-1", "mode": "active", "allowed_addresses": ["127.0.0.1", "10.1.0.0/16"],
         "description": "Branch office"},
        {"name": "dmz", "mode": "passive", "address": "dmz-proxy.example.com:10051"}]
    hosts = {h["host"]: h for h in out["hosts"]}
    assert hosts["web01"]["proxy"] == "branch-1" and "proxy" not in hosts["db01"]
    # Importing the export again changes nothing.
    repo.apply(doc_from_dict(out))
    assert repo.export() == out
    refs = repo.proxies()
    assert refs["dmz"].mode == 1 and refs["branch-1"].allowed_addresses == ("127.0.0.1", "10.1.0.0/16")


def test_a_host_moves_back_to_the_server_and_a_removed_proxy_frees_its_hosts(repo: ConfigRepo) -> None:
    load(repo, DOC)
    load(repo, "hosts: [{host: web01, proxy: ''}]")
    assert "proxy" not in {h["host"]: h for h in repo.export()["hosts"]}["web01"]
    load(repo, "hosts: [{host: web01, proxy: dmz}]")
    load(repo, "hosts: [{host: web01}]")  # no proxy: key: kept as it is
    assert {h["host"]: h for h in repo.export()["hosts"]}["web01"]["proxy"] == "dmz"
    load(repo, "proxies: [{name: branch-1}]", delete_missing=True)
    assert [p["name"] for p in repo.export()["proxies"]] == ["branch-1"]
    assert "proxy" not in {h["host"]: h for h in repo.export()["hosts"]}["web01"]


@pytest.mark.parametrize(("doc", "message"), [
    ("proxies: [{name: a}, {name: a}]", r"proxies\[1\]\.name: 'a' appears twice \(also proxies\[0\]\)"),
    ("proxies: [{name: a, mode: both}]", r"proxies\[0\]\.mode: 'both' is not one of active, passive"),
    ("proxies: [{name: a, mode: passive}]", r"proxies\[0\]\.address: a passive proxy needs"),
    ("proxies: [{name: a, mode: passive, address: 'h:99999'}]", r"proxies\[0\]\.address: port 99999"),
    ("proxies: [{name: a, address: 'h:10051'}]", r"proxies\[0\]\.address: only a passive proxy"),
    ("proxies: [{name: a, allowed_addresses: ['not an address!']}]", r"proxies\[0\]\.allowed_addresses\[0\]"),
    ("proxies: [{name: a, colour: red}]", r"proxies\[0\]: unknown field 'colour'"),
    ("proxies: {name: a}", r"proxies: expected a list"),
    ("hosts: [{host: h, proxy: [x]}]", r"hosts\[0\]\.proxy: expected text"),
])
def test_bad_proxies_are_refused_naming_the_field(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        doc_from_dict(yaml.safe_load(doc))


def test_a_host_naming_an_unknown_proxy_is_refused_and_nothing_is_stored(repo: ConfigRepo) -> None:
    load(repo, "proxies: [{name: p1}]")
    with pytest.raises(ConfigError, match=r"hosts\[1\]\.proxy: no proxy 'p2' \(known: p1"):
        load(repo, "hosts: [{host: a, proxy: p1}, {host: b, proxy: p2}]")
    assert repo.export()["hosts"] == []


def test_proxy_tables_cover_the_hosts_of_that_proxy_in_the_6_0_schema(repo: ConfigRepo) -> None:
    load(repo, DOC)
    proxy = repo.proxies()["branch-1"]
    tables = repo.proxy_tables(proxy.proxyid)
    for name, (fields, rows) in tables.items():
        assert name in PROXY_SCHEMA_60, name
        assert [f for f in fields if f not in PROXY_SCHEMA_60[name]] == [], name
        assert all(len(r) == len(fields) for r in rows), name
    rows = {name: [dict(zip(fields, r, strict=True)) for r in data] for name, (fields, data) in tables.items()}
    assert [h["host"] for h in rows["hosts"]] == ["web01"]  # not db01, which the server monitors
    items = {i["key_"]: i for i in rows["items"]}
    # Calculated items stay with the server; the template's item comes flattened onto the host.
    assert set(items) == {"trap.a", "agent.ping", "agent.version", "sysName", "net.tcp.service[ssh]", "page", "dep",
                          "net.tcp.port[,{$PORT}]"}
    assert sorted(r["itemid"] for r in rows["item_rtdata"]) == sorted(i["itemid"] for i in rows["items"])
    itfs = {i["type"]: i["interfaceid"] for i in rows["interface"]}
    assert items["agent.ping"]["interfaceid"] == itfs[1] and items["sysName"]["interfaceid"] == itfs[2]
    assert items["trap.a"]["interfaceid"] is None
    assert items["sysName"]["type"] == 20 and items["agent.ping"]["type"] == 0  # 6.0's SNMP agent type
    assert items["dep"]["master_itemid"] == items["page"]["itemid"]
    assert items["page"]["headers"] == "X-A: b\r\n" and items["page"]["query_fields"] == '[{"q": "1"}]'
    assert rows["interface_snmp"][0]["community"] == "public" and rows["interface_snmp"][0]["version"] == 2
    macros = {(m["hostid"], m["macro"]): m["value"] for m in rows["hostmacro"]}
    hostid = rows["hosts"][0]["hostid"]
    assert macros == {(hostid, "{$OWN}"): "x", (hostid, "{$PORT}"): "8080"}
    assert [(g["macro"], g["value"]) for g in rows["globalmacro"]] == [("{$G}", "global")]
    assert [p["type"] for p in rows["item_preproc"]] == [5]
    assert repo.proxy_tables(repo.proxies()["dmz"].proxyid)["hosts"][1] == []


def test_the_server_does_not_poll_what_a_proxy_monitors(repo: ConfigRepo) -> None:
    load(repo, DOC)
    polled = {(i.host, i.key) for i in repo.poll_config().items.values()}
    assert ("db01", "agent.ping") in polled
    assert [k for h, k in polled if h == "web01"] == ["calc"]
    items = repo.proxy_items(repo.proxies()["branch-1"].proxyid)
    assert len(items) == 8
