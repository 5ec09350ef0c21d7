"""Discovery rules: the document (bad input refused naming the field, export round trip), filters,
macro paths and substitution, and applying values on both stores: items, triggers and graphs made
from prototypes, lost resources deleted after the lifetime (an injected clock, no sleeps)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.lld import (
    Condition,
    DiscoveryError,
    LldFilter,
    evaluate_formula,
    row_passes,
    rows_from_value,
    substitute_key,
)
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.lld import LldProcessor

TEMPLATE = """
templates:
  - template: FS
    macros: {"{$FSTYPE.MATCHES}": "^(ext4|xfs)$"}
    items:
      - {key: agent.ping, type: agent, value_type: unsigned}
    discovery_rules:
      - key: vfs.fs.discovery
        type: agent
        lifetime: 1h
        filter:
          conditions:
            - {macro: "{#FSTYPE}", value: "{$FSTYPE.MATCHES}"}
        item_prototypes:
          - {key: "vfs.fs.size[{#FSNAME},pused]", type: agent, name: "{#FSNAME}: used", units: "%",
             tags: {filesystem: "{#FSNAME}"}, preprocessing: [{type: regex, params: ["([0-9.]+)", "\\\\1 {#FSNAME}"]}]}
          - {key: "vfs.fs.size[{#FSNAME},total]", type: agent, value_type: unsigned, units: B}
        trigger_prototypes:
          - {name: "{#FSNAME}: disk full", expression: "last(/FS/vfs.fs.size[{#FSNAME},pused])>90", severity: high,
             tags: {filesystem: "{#FSNAME}"}}
        graph_prototypes:
          - name: "{#FSNAME}: space"
            items: [{key: "vfs.fs.size[{#FSNAME},pused]", color: "00AA00", drawtype: gradient}]
hosts:
  - host: h1
    templates: [FS]
    interfaces: [{type: agent, address: 127.0.0.1}]
"""


def rows(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"{#FSNAME}": n, "{#FSTYPE}": ty} for n, ty in pairs])


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        r = ConfigRepo(engine)
        r.apply(doc_from_dict(yaml.safe_load(TEMPLATE)))
        yield r
    finally:
        engine.dispose()


# --- pure parts ----------------------------------------------------------------------------------


def test_rows_take_data_or_a_plain_array_and_macro_paths() -> None:
    v = json.dumps({"data": [{"{#A}": "x", "name": "n1", "n": {"v": 3}}, {"name": "n2"}]})
    out = rows_from_value(v, {"{#NAME}": "$.name", "{#V}": "$.n.v"})
    assert out == [{"{#A}": "x", "{#NAME}": "n1", "{#V}": "3"}, {"{#NAME}": "n2"}]
    assert rows_from_value('[{"{#X}": 1.5, "{#B}": true}]', {}) == [{"{#X}": "1.5", "{#B}": "true"}]
    for bad, why in (("not json", "not JSON"), ('{"a": 1}', "not a JSON array"), ("[1]", "row 0")):
        with pytest.raises(DiscoveryError, match=why):
            rows_from_value(bad, {})


def test_filters_and_or_and_or_and_custom_formulas() -> None:
    a = Condition("{#N}", "^eth", 8, "A")
    b = Condition("{#N}", "^ifb", 8, "B")
    c = Condition("{#T}", "^6$", 8, "C")
    d = Condition("{#X}", "", 12, "D")
    row = {"{#N}": "ifb0", "{#T}": "6"}
    values = ["^eth", "^ifb", "^6$", ""]
    assert row_passes(LldFilter(0, "", [a, b, c, d][:3]), row, values[:3])  # (A or B) and C
    assert not row_passes(LldFilter(1, "", [a, b, c]), row, values[:3])
    assert row_passes(LldFilter(2, "", [a, b, c]), row, values[:3])
    assert not row_passes(LldFilter(3, "A or (B and D)", [a, b, c, d]), row, values)
    assert row_passes(LldFilter(3, "not A and (B or D) and C", [a, b, c, d]), row, values)
    assert row_passes(LldFilter(0, "", [Condition("{#X}", "", 13)]), row, [""])
    assert not row_passes(LldFilter(0, "", [Condition("{#MISSING}", ".*", 9)]), row, [".*"])  # absent: not kept
    with pytest.raises(ValueError, match="'E' is not the formulaid"):
        evaluate_formula("A and E", {"A": True})


def test_macros_in_keys_get_quotes_where_they_need_them() -> None:
    m = {"{#FS}": "/mnt/a,b", "{#I}": "3", "{#Q}": 'say "hi"'}
    assert substitute_key("vfs.fs.size[{#FS},pused]", m) == 'vfs.fs.size["/mnt/a,b",pused]'
    assert substitute_key("net.if.in[ifHCInOctets.{#I}]", m) == "net.if.in[ifHCInOctets.3]"
    assert substitute_key('k["{#Q}", x]', m) == 'k["say \\"hi\\"", x]'
    assert substitute_key("k[{#Q}]", m) == 'k["say \\"hi\\""]'
    assert substitute_key("k[[{#I},b],{#I}]", m) == "k[[3,b],3]"


@pytest.mark.parametrize(("change", "error"), [
    ({"filter": {"conditions": [{"macro": "{#FSTYPE}", "value": "(ext4"}]}},
     "discovery_rules[0].filter.conditions[0].value: '(ext4' is not a regular expression"),
    ({"filter": {"conditions": [{"macro": "FSTYPE", "value": "x"}]}},
     "discovery_rules[0].filter.conditions[0].macro: 'FSTYPE' is not an LLD macro"),
    ({"filter": {"evaltype": "custom", "formula": "A or Z", "conditions": [{"macro": "{#FSTYPE}"}]}},
     "discovery_rules[0].filter.formula: 'Z' is not the formulaid"),
    ({"item_prototypes": [{"key": "vfs.fs.size[{#FSNAM},pused]", "type": "agent"}]},
     "discovery_rules[0].item_prototypes[0].key: unknown LLD macro {#FSNAM}"),
    ({"item_prototypes": [{"key": "vfs.fs.size[/,pused]", "type": "agent"}]},
     "discovery_rules[0].item_prototypes[0].key: 'vfs.fs.size[/,pused]' has no LLD macro"),
    ({"item_prototypes": [{"key": "a[{#FSNAME}]", "type": "agent"}, {"key": "a[{#FSNAME}]", "type": "agent"}]},
     "discovery_rules[0].item_prototypes[1].key: 'a[{#FSNAME}]' appears twice"),
    ({"lifetime": "forever"}, "discovery_rules[0].lifetime"),
    ({"lld_macro_paths": {"{#X}": "$[?("}}, "discovery_rules[0].lld_macro_paths.{#X}"),
    ({"graph_prototypes": [{"name": "{#FSNAME}", "items": [{"key": "a[{#FSNAME}]", "color": "green"}]}]},
     "discovery_rules[0].graph_prototypes[0].items[0].color"),
    ({"graph_prototypes": [{"name": "{#FSNAME}", "items": [{"key": "a[{#FSNAME}]", "color": 9600}]}]},
     "discovery_rules[0].graph_prototypes[0].items[0].color: write the colour in quotes"),
    ({"value_type": "float"}, "discovery_rules[0]: unknown field 'value_type'"),
])
def test_bad_rules_are_refused_naming_the_field(change: dict, error: str) -> None:
    rule = {"key": "vfs.fs.discovery", "type": "agent",
            "item_prototypes": [{"key": "vfs.fs.size[{#FSNAME},pused]", "type": "agent"}]} | change
    with pytest.raises(ConfigError) as e:
        doc_from_dict({"templates": [{"template": "T", "discovery_rules": [rule]}]})
    assert str(e.value).startswith(f"templates[0].{error}"), str(e.value)


def test_a_rule_key_may_not_be_an_item_key() -> None:
    with pytest.raises(ConfigError, match=r"templates\[0\].discovery_rules\[0\].key: 'a' is the key of one"):
        doc_from_dict({"templates": [{"template": "T", "items": [{"key": "a"}], "discovery_rules": [{"key": "a"}]}]})


# --- the store -------------------------------------------------------------------------------------


def test_export_round_trips_rules_and_prototypes(repo: ConfigRepo) -> None:
    exported = repo.export()
    tpl = next(x for x in exported["templates"] if x["template"] == "FS")
    assert [r["key"] for r in tpl["discovery_rules"]] == ["vfs.fs.discovery"]
    rule = tpl["discovery_rules"][0]
    assert rule["lifetime"] == "1h" and len(rule["item_prototypes"]) == 2
    assert rule["trigger_prototypes"][0]["expression"] == "last(/FS/vfs.fs.size[{#FSNAME},pused])>90"
    assert rule["graph_prototypes"][0]["items"][0] == {"key": "vfs.fs.size[{#FSNAME},pused]", "color": "00AA00",
                                                      "drawtype": "gradient"}
    assert all(not x.get("discovery_rules") for x in exported["hosts"])  # the host's copy is the template's
    again = doc_from_dict(yaml.safe_load(yaml.safe_dump(exported)))
    repo.apply(again)
    assert repo.export() == exported


def test_discovery_makes_items_triggers_and_graphs(repo: ConfigRepo) -> None:
    ruleid = repo.rule_id("h1", "vfs.fs.discovery")
    assert ruleid is not None
    v0 = repo.version()
    res = repo.discover(ruleid, rows(("/", "ext4"), ("/srv/a,b", "xfs"), ("/proc", "proc")), 1000)
    assert (res.rows, res.kept, res.errors) == (3, 2, [])
    assert repo.version() > v0  # the scheduler and ingest reload
    assert set(repo.discovered_items("h1")) == {"vfs.fs.size[/,pused]", "vfs.fs.size[/,total]",
                                                'vfs.fs.size["/srv/a,b",pused]', 'vfs.fs.size["/srv/a,b",total]'}
    with repo.engine.connect() as c:
        item = c.execute(sa.select(t.items).where(t.items.c.key_ == "vfs.fs.size[/,pused]")).one()
        steps = c.execute(sa.select(t.item_preproc.c.params).where(t.item_preproc.c.itemid == item.itemid)).all()
        tags = c.execute(sa.select(t.item_tags.c.tag, t.item_tags.c.value)
                         .where(t.item_tags.c.itemid == item.itemid)).all()
    assert (item.name, item.flags, item.units) == ("/: used", 4, "%")
    assert steps == [("([0-9.]+)\n\\1 /",)] and tags == [("filesystem", "/")]
    triggers = {tr.name: tr for tr in repo.triggers()}
    assert triggers["/srv/a,b: disk full"].expression == 'last(/h1/vfs.fs.size["/srv/a,b",pused])>90'
    assert triggers["/: disk full"].tags == (("filesystem", "/"),)
    assert triggers["/: disk full"].itemids == (item.itemid,)
    assert "{#FSNAME}: disk full" not in triggers  # the prototype itself is never evaluated
    graphs = {g.name: (g, f) for g, f in repo.graphs_of("h1")}
    assert graphs["/: space"][0].items[0].key == "vfs.fs.size[/,pused]" and graphs["/: space"][1] == 4
    poll = repo.poll_config()
    keys = {i.key: i.flags for i in poll.items.values()}
    assert keys["vfs.fs.discovery"] == 1 and keys["vfs.fs.size[/,pused]"] == 4
    assert "vfs.fs.size[{#FSNAME},pused]" not in keys  # prototypes are not polled
    v1 = repo.version()
    again = repo.discover(ruleid, rows(("/", "ext4"), ("/srv/a,b", "xfs")), 1060)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert repo.version() == v1  # nothing changed: no reload


def test_lost_resources_go_after_the_lifetime(repo: ConfigRepo) -> None:
    ruleid = repo.rule_id("h1", "vfs.fs.discovery")
    repo.discover(ruleid, rows(("/", "ext4"), ("/data", "xfs")), 1000)
    res = repo.discover(ruleid, rows(("/", "ext4")), 2000)
    assert res.lost == 4 and res.deleted == 0  # 2 items, a trigger and a graph
    found = repo.discovered_items("h1")
    assert found["vfs.fs.size[/data,pused]"][2] == 1000 + 3600  # ts_delete: last found + lifetime
    assert "/data: disk full" in {tr.name for tr in repo.triggers()}
    repo.discover(ruleid, rows(("/", "ext4")), 1000 + 3599)
    assert "vfs.fs.size[/data,pused]" in repo.discovered_items("h1")
    res = repo.discover(ruleid, rows(("/", "ext4")), 1000 + 3600)
    assert res.deleted == 4
    assert set(repo.discovered_items("h1")) == {"vfs.fs.size[/,pused]", "vfs.fs.size[/,total]"}
    assert "/data: disk full" not in {tr.name for tr in repo.triggers()}
    assert [g.name for g, _ in repo.graphs_of("h1")] == ["/: space"]
    # found again before its time: no longer lost
    repo.discover(ruleid, rows(("/", "ext4"), ("/data", "xfs")), 9000)
    repo.discover(ruleid, rows(("/", "ext4")), 9100)
    res = repo.discover(ruleid, rows(("/", "ext4"), ("/data", "xfs")), 9200)
    assert repo.discovered_items("h1")["vfs.fs.size[/data,pused]"][2] == 0


def test_lifetime_zero_deletes_at_once_and_unlinking_takes_discovered_items(repo: ConfigRepo) -> None:
    doc = yaml.safe_load(TEMPLATE)
    doc["templates"][0]["discovery_rules"][0]["lifetime"] = "0"
    repo.apply(doc_from_dict(doc))
    ruleid = repo.rule_id("h1", "vfs.fs.discovery")
    repo.discover(ruleid, rows(("/", "ext4"), ("/data", "xfs")), 1000)
    res = repo.discover(ruleid, rows(("/", "ext4")), 1001)
    assert res.deleted == 4 and set(repo.discovered_items("h1")) == {"vfs.fs.size[/,pused]", "vfs.fs.size[/,total]"}
    repo.link_template("h1", "FS", link=False)
    assert repo.discovered_items("h1") == {} and repo.rule_id("h1", "vfs.fs.discovery") is None
    assert repo.graphs_of("h1") == [] and repo.triggers() == []


def test_a_removed_prototype_takes_its_discovered_items(repo: ConfigRepo) -> None:
    ruleid = repo.rule_id("h1", "vfs.fs.discovery")
    repo.discover(ruleid, rows(("/", "ext4")), 1000)
    doc = yaml.safe_load(TEMPLATE)
    del doc["templates"][0]["discovery_rules"][0]["item_prototypes"][1]
    repo.apply(doc_from_dict(doc))
    assert set(repo.discovered_items("h1")) == {"vfs.fs.size[/,pused]"}
    del doc["templates"][0]["discovery_rules"]
    repo.apply(doc_from_dict(doc))
    assert repo.discovered_items("h1") == {} and repo.rule_id("h1", "vfs.fs.discovery") is None


def test_a_host_macro_changes_the_filter_and_a_bad_value_makes_the_rule_not_supported(repo: ConfigRepo) -> None:
    repo.apply(doc_from_dict({"hosts": [{"host": "h1", "macros": {"{$FSTYPE.MATCHES}": "^proc$"}}]}))
    ruleid = repo.rule_id("h1", "vfs.fs.discovery")
    lld = LldProcessor(repo, clock=lambda: 5000)
    res = lld.process(ruleid, rows(("/", "ext4"), ("/proc", "proc")))
    assert res is not None and res.kept == 1 and set(repo.discovered_items("h1")) == {
        "vfs.fs.size[/proc,pused]", "vfs.fs.size[/proc,total]"}
    assert lld.process(ruleid, '{"data": 5}') is None
    state = repo.item_states()[ruleid]
    assert state[0] == 1 and "not a JSON array" in state[1]
    repo.apply(doc_from_dict({"hosts": [{"host": "h1", "macros": {"{$FSTYPE.MATCHES}": "(unclosed"}}]}))
    assert lld.process(ruleid, rows(("/", "ext4"))) is None
    assert "filter.conditions[0].value: '(unclosed' is not a regular expression" in repo.item_states()[ruleid][1]
    repo.apply(doc_from_dict({"hosts": [{"host": "h1", "macros": {}}]}))
    assert lld.process(ruleid, rows(("/", "ext4"))) is not None
    assert repo.item_states()[ruleid] == (0, "")


def test_a_discovered_key_taken_by_a_plain_item_is_reported_not_overwritten(repo: ConfigRepo) -> None:
    repo.apply(doc_from_dict({"hosts": [{"host": "h1", "items": [
        {"key": "vfs.fs.size[/,total]", "type": "agent", "value_type": "unsigned", "name": "mine"}]}]}))
    res = repo.discover(repo.rule_id("h1", "vfs.fs.discovery"), rows(("/", "ext4")), 1000)
    assert any("vfs.fs.size[/,total]" in e and "exists" in e for e in res.errors)
    with repo.engine.connect() as c:
        assert c.execute(sa.select(t.items.c.name, t.items.c.flags)
                         .where(t.items.c.key_ == "vfs.fs.size[/,total]")).one() == ("mine", 0)


def test_snmp_walk_to_json_step() -> None:
    from vigil.server.preprocessing import Step, run

    walk = "\n".join([
        '.1.3.6.1.2.1.2.2.1.2.1 = STRING: "lo"',
        '.1.3.6.1.2.1.2.2.1.2.2 = STRING: "eth \\"0\\"',
        'second line"',
        ".1.3.6.1.2.1.2.2.1.6.2 = Hex-STRING: 00 1A 2B 3C 4D 5E ",
        ".1.3.6.1.2.1.2.2.1.8.1 = INTEGER: 1",
        ".1.3.6.1.2.1.1.3.0 = Timeticks: (4242) 0:00:42.42",
    ])
    params = "{#IFDESCR}\n1.3.6.1.2.1.2.2.1.2\n0\n{#MAC}\n1.3.6.1.2.1.2.2.1.6\n2\n{#STATUS}\n.1.3.6.1.2.1.2.2.1.8\n0"
    r = run([Step(29, params)], walk, 0.0, None)
    assert r.error is None
    assert json.loads(str(r.value)) == [
        {"{#SNMPINDEX}": "1", "{#IFDESCR}": "lo", "{#STATUS}": "1"},
        {"{#SNMPINDEX}": "2", "{#IFDESCR}": 'eth "0"\nsecond line', "{#MAC}": "00:1A:2B:3C:4D:5E"},
    ]
    bad = run([Step(29, params)], "this is not a walk", 0.0, None)
    assert bad.error is not None and "cannot parse the walk's line" in bad.error
    with pytest.raises(ConfigError, match=r"preprocessing\[0\].params: SNMP walk to JSON: 'IFNAME' is not an LLD"):
        doc_from_dict({"hosts": [{"host": "h", "items": [{"key": "w", "type": "snmp", "snmp_oid": "walk[1.3]",
                                                          "value_type": "text", "preprocessing": [
                                                              {"type": "snmp_walk_to_json",
                                                               "params": ["IFNAME", "1.3", "0"]}]}]}]})


def test_migration_0013_keeps_items_and_triggers_as_plain_ones(database_url: str) -> None:
    from vigil.server.config.migrate import upgrade

    engine = engine_for(database_url)
    try:
        upgrade(engine, "0012")
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status) VALUES (1, 'h', 'h', 0)"))
            c.execute(sa.text("INSERT INTO items (itemid, hostid, key_, type, value_type) VALUES (5, 1, 'k', 2, 0)"))
            c.execute(sa.text("INSERT INTO triggers (triggerid, hostid, description, expression) "
                              "VALUES (7, 1, 't', 'last(/h/k)>1')"))
        upgrade(engine)
        repo = ConfigRepo(engine)
        with engine.connect() as c:
            assert c.execute(sa.select(t.items.c.flags, t.items.c.lifetime, t.items.c.evaltype)).one() == (0, "30d", 0)
            assert c.execute(sa.select(t.triggers.c.flags)).scalar() == 0
        assert [i.key for i in repo.poll_config().items.values()] == []  # a trapper item: not polled
        assert [tr.name for tr in repo.triggers()] == ["t"]
        assert repo.snapshot().items[("h", "k")].itemid == 5 and repo.snapshot().lld == {}
    finally:
        engine.dispose()


def test_builtin_templates_link_by_name_without_an_import(repo: ConfigRepo) -> None:
    from vigil.server.config.builtins import builtin_document, builtin_names

    for name in builtin_names():  # every shipped template is a valid document holding that template
        assert [x.template for x in doc_from_dict(builtin_document(name)).templates] == [name]
    repo.apply(doc_from_dict({"hosts": [{"host": "sw9", "interfaces": [{"type": "snmp", "address": "192.0.2.9"}]}]}))
    repo.link_template("sw9", "Generic SNMP device")
    repo.apply(doc_from_dict({"hosts": [{"host": "sw9", "templates": ["Generic SNMP device",
                                                                       "Network interfaces by SNMP"]}]}))
    exported = repo.export()
    assert {"Generic SNMP device", "Network interfaces by SNMP"} <= {x["template"] for x in exported["templates"]}
    keys = {i.key for i in repo.poll_config().items.values() if i.host == "sw9"}
    assert {"system.name", "system.uptime", "icmpping", "net.if.discovery"} <= keys
    assert "Unavailable by ICMP ping" in {tr.name for tr in repo.triggers()}
    with pytest.raises(ConfigError, match="no template named 'No such template'"):
        repo.link_template("sw9", "No such template")
