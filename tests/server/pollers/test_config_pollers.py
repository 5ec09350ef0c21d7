"""The poller parts of the configuration: interfaces, poll fields, preprocessing, dependent items."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo

from tests.server.pollers.test_scheduler import repo  # noqa: F401

DOC = """
host_groups: [Linux]
templates:
  - template: T web
    items:
      - {key: t.page, type: http_agent, value_type: text, url: 'http://{HOST.CONN}:{$PORT}/', delay: 30s}
      - {key: t.size, type: dependent, value_type: unsigned, master_item: t.page,
         preprocessing: [{type: regex, params: ['(\\d+)', '\\1']}]}
hosts:
  - host: h1
    groups: [Linux]
    templates: [T web]
    macros: {'{$PORT}': '8081'}
    interfaces:
      - {type: agent, address: 10.0.0.5}
      - {type: agent, address: agent2.example.com, port: 10060, main: false, interface_ref: second}
      - {type: snmp, address: 10.0.0.5, version: 3, securityname: mon, securitylevel: authPriv,
         authprotocol: SHA, authpassphrase: a-secret, privprotocol: AES, privpassphrase: p-secret}
    items:
      - {key: agent.ping, type: agent, value_type: unsigned, interface_ref: second}
      - {key: 'net.tcp.service[ssh]', type: simple, value_type: unsigned}
      - key: api
        type: http_agent
        value_type: text
        url: 'https://{HOST.IP}/api'
        method: POST
        query_fields: [{name: a, value: '1'}]
        headers: {X-Token: abc}
        body: '{"q": 1}'
        status_codes: 200,201,210-299
        follow_redirects: false
        verify_peer: true
        verify_host: true
        auth: bearer
        password: tok
        retrieve_mode: both
        timeout: 10s
        preprocessing:
          - {type: jsonpath, params: ['$.value'], error_handler: custom_value, error_handler_params: '0'}
          - {type: multiplier, params: '8'}
      - {key: api.rate, type: dependent, value_type: float, master_item: api,
         preprocessing: [{type: change_per_second}]}
"""


def _load(text: str) -> Any:
    return doc_from_dict(yaml.safe_load(text))


def test_import_export_round_trip(repo: ConfigRepo) -> None:  # noqa: F811
    repo.apply(_load(DOC))
    exported = repo.export()
    h = next(x for x in exported["hosts"] if x["host"] == "h1")
    assert [i["interface_ref"] for i in h["interfaces"]] == ["agent1", "second", "snmp1"]
    assert h["interfaces"][2]["securityname"] == "mon" and h["interfaces"][2]["version"] == "3"
    api = next(i for i in h["items"] if i["key"] == "api")
    assert api["method"] == "POST" and api["headers"] == [{"name": "X-Token", "value": "abc"}]
    assert api["auth"] == "bearer" and api["retrieve_mode"] == "both" and api["follow_redirects"] is False
    assert api["preprocessing"][0] == {"type": "jsonpath", "params": ["$.value"], "error_handler": "custom_value",
                                       "error_handler_params": "0"}
    again = yaml.safe_dump(exported)
    repo.apply(_load(again))
    assert repo.export() == exported


def test_poll_config_resolves_interfaces_macros_and_masters(repo: ConfigRepo) -> None:  # noqa: F811
    repo.apply(_load(DOC))
    cfg = repo.poll_config()
    by_key = {i.key: i for i in cfg.items.values()}
    assert by_key["agent.ping"].interface.address == "agent2.example.com"  # type: ignore[union-attr]
    assert by_key["agent.ping"].interface.port == 10060  # type: ignore[union-attr]
    assert by_key["net.tcp.service[ssh]"].interface.address == "10.0.0.5"  # type: ignore[union-attr]
    assert by_key["t.page"].poll.url == "http://10.0.0.5:8081/"  # template item, host's macros and interface
    assert by_key["t.page"].delay == 30
    assert by_key["t.size"].master_itemid == by_key["t.page"].itemid
    assert cfg.dependents[by_key["api"].itemid] == [by_key["api.rate"].itemid]
    assert [s.type for s in by_key["api"].poll.preprocessing] == [12, 1]
    assert by_key["api"].poll.url == "https://10.0.0.5/api"


def test_replacing_interfaces_keeps_the_availability_of_those_kept(repo: ConfigRepo) -> None:  # noqa: F811
    repo.apply(_load(DOC))
    with repo.engine.begin() as c:
        c.execute(sa.update(t.interfaces).values(available=2, error="down"))
    repo.apply(_load(DOC.replace("      - {type: agent, address: agent2.example.com, port: 10060, main: false, "
                                 "interface_ref: second}\n", "").replace(", interface_ref: second}", "}")))
    with repo.engine.connect() as c:
        rows = c.execute(sa.select(t.interfaces.c.ref, t.interfaces.c.available)).all()
    assert sorted(rows) == [("agent1", 2), ("snmp1", 2)]
    cfg = repo.poll_config()
    ping = next(i for i in cfg.items.values() if i.key == "agent.ping")
    assert ping.interface.address == "10.0.0.5"  # type: ignore[union-attr]


@pytest.mark.parametrize(("doc", "message"), [
    ("hosts: [{host: h, interfaces: [{type: modem, address: 1.2.3.4}]}]",
     "hosts[0].interfaces[0].type: 'modem' is not one of agent, snmp, ipmi, jmx"),
    ("hosts: [{host: h, interfaces: [{type: agent}]}]", "hosts[0].interfaces[0].address: required"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: 'a b'}]}]", "is not an IP address or DNS name"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: h, port: 70000}]}]",
     "hosts[0].interfaces[0].port: '70000' is not a port number"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: h, community: x}]}]",
     "hosts[0].interfaces[0]: unknown field 'community'"),
    ("hosts: [{host: h, interfaces: [{type: snmp, address: h, version: 4}]}]",
     "hosts[0].interfaces[0].version: '4' is not one of 1, 2, 3"),
    ("hosts: [{host: h, interfaces: [{type: snmp, address: h, version: 3}]}]",
     "hosts[0].interfaces[0].securityname: SNMPv3 needs the user"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: a}, {type: agent, address: b, main: true}]}]",
     "hosts[0].interfaces[1].main: a host has one main interface of each type"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: a, interface_ref: x}, "
     "{type: snmp, address: b, interface_ref: x}]}]", "hosts[0].interfaces[1].interface_ref: 'x' appears twice"),
    ("hosts: [{host: h, interfaces: [{type: agent, address: a}], items: [{key: k, type: agent, "
     "interface_ref: nope}]}]", "hosts[0].items[0].interface_ref: 'nope' is not one of the host's interfaces (agent1)"),
    ("hosts: [{host: h, items: [{key: k, type: dependent}]}]",
     "hosts[0].items[0].master_item: a dependent item needs the key of its master item"),
    ("hosts: [{host: h, items: [{key: k, type: agent, master_item: x}]}]",
     "hosts[0].items[0].master_item: only dependent items have a master item"),
    ("hosts: [{host: h, items: [{key: k, type: agent, url: 'http://x/'}]}]",
     "hosts[0].items[0].url: only http_agent items have a URL"),
    ("hosts: [{host: h, items: [{key: k, preprocessing: [{type: frobnicate}]}]}]",
     "hosts[0].items[0].preprocessing[0].type: 'frobnicate' is not one of"),
    ("hosts: [{host: h, items: [{key: k, preprocessing: [{type: trim, params: ' '}, {type: multiplier, "
     "params: abc}]}]}]", "hosts[0].items[0].preprocessing[1].params: Custom multiplier:"),
    ("hosts: [{host: h, items: [{key: k, preprocessing: [{type: trim, error_handler: retry}]}]}]",
     "hosts[0].items[0].preprocessing[0].error_handler: 'retry' is not one of"),
    ("hosts: [{host: h, items: [{key: k, preprocessing: [{type: trim, error_handler: custom_error}]}]}]",
     "hosts[0].items[0].preprocessing[0].error_handler_params: custom_error needs the error message"),
])
def test_document_errors_name_the_field(doc: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(doc)
    assert message in str(e.value)


@pytest.mark.parametrize(("items", "message"), [
    ("[{key: a, type: dependent, value_type: text, master_item: nope}]",
     "hosts[0].items[0].master_item: no item 'nope' on this host"),
    ("[{key: a, type: dependent, value_type: text, master_item: a}]",
     "hosts[0].items[0].master_item: an item cannot be its own master"),
    ("[{key: a, type: dependent, value_type: text, master_item: b}, "
     "{key: b, type: dependent, value_type: text, master_item: a}]", "a loop of dependent items"),
    ("[{key: a, type: trapper, value_type: text}, {key: b, type: dependent, master_item: a}, "
     "{key: c, type: dependent, master_item: b}, {key: d, type: dependent, master_item: c}, "
     "{key: e, type: dependent, master_item: d}]", "nest at most 3 levels deep"),
])
def test_master_items_are_checked_on_import(repo: ConfigRepo, items: str, message: str) -> None:  # noqa: F811
    with pytest.raises(ConfigError) as e:
        repo.apply(_load(f"hosts: [{{host: h, items: {items}}}]"))
    assert message in str(e.value)
    assert not repo.host_exists("h")  # nothing of the document was applied
