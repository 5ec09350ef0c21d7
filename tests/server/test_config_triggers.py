"""Triggers in the configuration on both backends: import/export, template copies, dependencies,
global macros, the read API the engine uses, and every refusal naming its field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo, TriggerRef
from vigil.server.config.tables import Severity


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def load(repo: ConfigRepo, text: str, **kw: Any) -> Any:
    return repo.apply(doc_from_dict(yaml.safe_load(text)), **kw)


def by_host(repo: ConfigRepo) -> dict[tuple[str, str], TriggerRef]:
    return {(r.host, r.name): r for r in repo.triggers()}


def stored(repo: ConfigRepo) -> dict[tuple[str, str], Any]:
    """(host, trigger name) -> its row, templates' triggers included."""
    with repo.engine.connect() as c:
        rows = c.execute(sa.select(t.triggers, t.hosts.c.host).join(t.hosts, t.hosts.c.hostid == t.triggers.c.hostid))
        return {(r.host, r.description): r for r in rows}


def itemid(repo: ConfigRepo, host: str, key: str) -> int:
    found = repo.item(host, key)
    assert found is not None
    return found[0]


BASE = """
templates:
  - template: Tpl App
    macros: {"{$LIMIT}": "90"}
    items:
      - {key: app.load, value_type: float}
      - {key: app.up, value_type: unsigned}
    triggers:
      - name: App down on {HOST.NAME}
        expression: last(/Tpl App/app.up)=0
        severity: disaster
      - name: App overloaded
        expression: min(/Tpl App/app.load,5m)>{$LIMIT}
        recovery_expression: max(/{HOST.HOST}/app.load,5m)<{$LIMIT}-10
        severity: warning
        tags: [{tag: scope, value: capacity}]
        dependencies: ["App down on {HOST.NAME}"]
hosts:
  - host: web01
    templates: [Tpl App]
    macros: {"{$LIMIT}": "75"}
    items:
      - {key: cpu.load, value_type: float}
      - {key: disk.free, value_type: unsigned}
    triggers:
      - name: CPU high
        expression: avg(/web01/cpu.load,10m)>5 or last(/web01/disk.free)<1000
        severity: average
        manual_close: true
        multiple: true
        description: look at top
        opdata: "load {ITEM.LASTVALUE1}"
        tags: {service: web}
      - name: Disk full
        expression: last(/web01/disk.free)<100
        recovery: none
        severity: high
        dependencies: [CPU high]
  - host: web02
    templates: [Tpl App]
    items:
      - {key: ping, value_type: unsigned}
    triggers:
      - name: Web02 ping lost
        expression: nodata(/web02/ping,5m)=1 and last(/web01/cpu.load)>0
        severity: information
        status: disabled
        dependencies: ["web01:Disk full"]
"""


def test_triggers_are_stored_and_read_as_the_engine_wants_them(repo: ConfigRepo) -> None:
    report = load(repo, BASE)
    assert report.triggers_created == 2 + 2 * 2 + 3  # the template's 2, their copies on web01 and web02, 3 own
    refs = by_host(repo)
    # templates' triggers are not evaluated; disabled ones neither
    assert set(refs) == {("web01", "CPU high"), ("web01", "Disk full"), ("web01", "App down on {HOST.NAME}"),
                         ("web01", "App overloaded"), ("web02", "App down on {HOST.NAME}"), ("web02", "App overloaded")}
    cpu = refs[("web01", "CPU high")]
    assert cpu.severity == Severity.AVERAGE and cpu.manual_close and cpu.multiple and cpu.recovery_mode == 0
    assert set(cpu.itemids) == {itemid(repo, "web01", "cpu.load"), itemid(repo, "web01", "disk.free")}
    assert cpu.tags == (("service", "web"),) and cpu.templateid is None
    disk = refs[("web01", "Disk full")]
    assert disk.recovery_mode == 2 and disk.depends_on == (cpu.triggerid,) and not disk.multiple
    rows = stored(repo)
    assert rows[("web01", "CPU high")].comments == "look at top"
    assert rows[("web01", "CPU high")].opdata == "load {ITEM.LASTVALUE1}"
    # a multi-host trigger reads both hosts' items; it depends on another host's trigger
    ping = rows[("web02", "Web02 ping lost")]
    assert ping.status == 1
    with repo.engine.connect() as c:
        ping_items = set(c.execute(sa.select(t.trigger_items.c.itemid)
                                   .where(t.trigger_items.c.triggerid == ping.triggerid)).scalars())
        ping_deps = list(c.execute(sa.select(t.trigger_depends.c.triggerid_up)
                                   .where(t.trigger_depends.c.triggerid_down == ping.triggerid)).scalars())
    assert ping_items == {itemid(repo, "web02", "ping"), itemid(repo, "web01", "cpu.load")}
    assert ping_deps == [disk.triggerid]


def test_template_triggers_are_copied_with_the_host_name(repo: ConfigRepo) -> None:
    load(repo, BASE)
    refs = by_host(repo)
    rows = stored(repo)
    for host in ("web01", "web02"):
        over = refs[(host, "App overloaded")]
        down = refs[(host, "App down on {HOST.NAME}")]
        assert over.expression == f"min(/{host}/app.load,5m)>{{$LIMIT}}"
        assert over.recovery_expression == f"max(/{host}/app.load,5m)<{{$LIMIT}}-10" and over.recovery_mode == 1
        assert over.templateid == rows[("Tpl App", "App overloaded")].triggerid
        assert over.itemids == (itemid(repo, host, "app.load"),)  # the host's copy, not the template's item
        assert over.tags == (("scope", "capacity"),) and over.severity == Severity.WARNING
        # the dependency inside the template becomes one between the host's copies
        assert over.depends_on == (down.triggerid,)
        assert down.severity == Severity.DISASTER


def test_changing_a_template_trigger_updates_every_copy(repo: ConfigRepo) -> None:
    load(repo, BASE)
    before = by_host(repo)
    changed = BASE.replace("min(/Tpl App/app.load,5m)>{$LIMIT}", "avg(/Tpl App/app.load,15m)>{$LIMIT}") \
                  .replace("severity: warning", "severity: high")
    load(repo, changed)
    after = by_host(repo)
    for host in ("web01", "web02"):
        ref = after[(host, "App overloaded")]
        assert ref.expression == f"avg(/{host}/app.load,15m)>{{$LIMIT}}" and ref.severity == Severity.HIGH
        assert ref.triggerid == before[(host, "App overloaded")].triggerid  # updated in place
    # a trigger removed from the template goes from the template and from every linked host
    doc = yaml.safe_load(changed)
    doc["templates"][0]["triggers"] = doc["templates"][0]["triggers"][:1]
    report = repo.apply(doc_from_dict(doc))
    assert report.triggers_deleted == 1
    names = {k for k in stored(repo) if k[1] == "App overloaded"}
    assert names == set()


def test_unlinking_a_template_removes_its_triggers_from_the_host(repo: ConfigRepo) -> None:
    load(repo, BASE)
    report = repo.link_template("web02", "Tpl App", link=False)
    assert report.triggers_deleted == 2
    names = {n for h, n in stored(repo) if h == "web02"}
    assert names == {"Web02 ping lost"}
    assert ("web01", "App overloaded") in by_host(repo)
    # linking it again brings them back, dependencies and all
    repo.link_template("web02", "Tpl App")
    refs = by_host(repo)
    assert refs[("web02", "App overloaded")].depends_on == (refs[("web02", "App down on {HOST.NAME}")].triggerid,)
    # unlinking through the document (templates: []) does the same
    doc = yaml.safe_load(BASE)
    doc["hosts"][1]["templates"] = []
    repo.apply(doc_from_dict(doc))
    assert {n for h, n in stored(repo) if h == "web02"} == {"Web02 ping lost"}


def test_a_template_trigger_copy_cannot_be_changed_on_the_host(repo: ConfigRepo) -> None:
    load(repo, BASE)
    doc = yaml.safe_load(BASE)
    doc["hosts"][0]["triggers"].append({"name": "App overloaded", "expression": "last(/web01/cpu.load)>1"})
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.triggers\[2\]\.name: trigger 'App overloaded' comes from "
                                          r"a linked template: change it in the template"):
        repo.apply(doc_from_dict(doc))


def test_triggers_missing_from_a_host_document_are_kept_unless_delete_missing(repo: ConfigRepo) -> None:
    load(repo, BASE)
    doc = yaml.safe_load(BASE)
    doc["hosts"][0]["triggers"] = doc["hosts"][0]["triggers"][:1]
    doc["hosts"][1]["triggers"][0]["dependencies"] = []
    repo.apply(doc_from_dict(doc))
    assert ("web01", "Disk full") in stored(repo)
    report = repo.apply(doc_from_dict(doc), delete_missing=True)
    assert report.triggers_deleted == 1
    assert ("web01", "Disk full") not in stored(repo)
    assert ("web01", "App overloaded") in stored(repo)  # copies are the template's business


def test_deleting_an_item_deletes_the_triggers_reading_it(repo: ConfigRepo) -> None:
    load(repo, BASE)
    doc = yaml.safe_load(BASE)
    doc["hosts"][0]["items"] = [{"key": "cpu.load", "value_type": "float"}]
    doc["hosts"][0]["triggers"] = []
    doc["hosts"][1]["triggers"] = []
    repo.apply(doc_from_dict(doc), delete_missing=True)
    names = {n for h, n in stored(repo) if h == "web01"}
    assert "CPU high" not in names and "Disk full" not in names
    # a template item removed takes the template's triggers reading it, and their copies, away
    doc["templates"][0]["items"] = [{"key": "app.load", "value_type": "float"}]
    doc["templates"][0]["triggers"] = [doc["templates"][0]["triggers"][1]]
    doc["templates"][0]["triggers"][0]["dependencies"] = []
    repo.apply(doc_from_dict(doc))
    assert {n for h, n in stored(repo) if h == "web02"} == {"App overloaded"}


def test_dependency_cycles_are_refused(repo: ConfigRepo) -> None:
    doc = yaml.safe_load(BASE)
    doc["hosts"][0]["triggers"][0]["dependencies"] = ["Disk full"]
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.triggers\[\d\]\.dependencies: a circular dependency"):
        repo.apply(doc_from_dict(doc))
    assert stored(repo) == {}  # nothing was written


def test_export_import_round_trip_with_triggers(repo: ConfigRepo, tmp_path: Any) -> None:
    load(repo, BASE)
    exported = repo.export()
    web01 = next(h for h in exported["hosts"] if h["host"] == "web01")
    # a host exports its own triggers; the template's come back through the link
    assert [tr["name"] for tr in web01["triggers"]] == ["CPU high", "Disk full"]
    assert web01["triggers"][0] == {
        "name": "CPU high", "expression": "avg(/web01/cpu.load,10m)>5 or last(/web01/disk.free)<1000",
        "severity": "average", "multiple": True, "manual_close": True, "description": "look at top",
        "opdata": "load {ITEM.LASTVALUE1}", "tags": [{"tag": "service", "value": "web"}]}
    assert web01["triggers"][1]["recovery"] == "none" and web01["triggers"][1]["dependencies"] == ["CPU high"]
    web02 = next(h for h in exported["hosts"] if h["host"] == "web02")
    assert web02["triggers"][0]["dependencies"] == ["web01:Disk full"]
    assert web02["triggers"][0]["status"] == "disabled"
    assert exported["templates"][0]["triggers"][1]["recovery_expression"] == \
        "max(/{HOST.HOST}/app.load,5m)<{$LIMIT}-10"

    from vigil.server.config.migrate import upgrade

    engine = engine_for(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(engine)
        other = ConfigRepo(engine)
        other.apply(doc_from_dict(yaml.safe_load(yaml.safe_dump(exported, sort_keys=False))))
        assert other.export() == exported
        assert {k: (r.expression, r.severity, len(r.depends_on), len(r.itemids)) for k, r in by_host(other).items()} \
            == {k: (r.expression, r.severity, len(r.depends_on), len(r.itemids)) for k, r in by_host(repo).items()}
    finally:
        engine.dispose()
    # importing the export again changes nothing
    before = repo.export()
    repo.apply(doc_from_dict(exported))
    assert repo.export() == before


def test_global_macros_and_macros_for(repo: ConfigRepo) -> None:
    load(repo, BASE + 'macros: {"{$LIMIT}": "99", "{$GLOBAL.ONLY}": "g"}\n')
    web01 = repo.snapshot().hosts["web01"].hostid
    web02 = repo.snapshot().hosts["web02"].hostid
    # the host's own, then its templates', then the global ones
    assert repo.macros_for(web01) == {"{$LIMIT}": "75", "{$GLOBAL.ONLY}": "g"}
    assert repo.macros_for(web02) == {"{$LIMIT}": "90", "{$GLOBAL.ONLY}": "g"}
    by = repo.macros_by_host()
    assert by[web01] == repo.macros_for(web01) and by[web02] == repo.macros_for(web02)
    assert by[0] == {"{$LIMIT}": "99", "{$GLOBAL.ONLY}": "g"}
    assert repo.export()["macros"] == {"{$GLOBAL.ONLY}": "g", "{$LIMIT}": "99"}
    # absent: kept; present: replaces them all
    load(repo, "hosts: [{host: web03}]")
    assert repo.macros_for(web01)["{$GLOBAL.ONLY}"] == "g"
    load(repo, 'macros: {"{$OTHER}": "1"}')
    assert repo.macros_for(web02) == {"{$LIMIT}": "90", "{$OTHER}": "1"}
    with pytest.raises(ConfigError, match=r"document\.macros: 'LIMIT' is not a user macro"):
        doc_from_dict({"macros": {"LIMIT": 1}})


def test_every_change_bumps_the_config_version(repo: ConfigRepo) -> None:
    v0 = repo.version()
    load(repo, BASE)
    v1 = repo.version()
    load(repo, "media_types: [{name: m, type: script, script: /bin/true}]")
    assert v0 < v1 < repo.version()


def test_trigger_fields_parse() -> None:
    doc = doc_from_dict({"hosts": [{"host": "h", "triggers": [
        {"name": "a", "expression": "last(/h/k)>1", "type": "multiple"},
        {"name": "b", "expression": "last(/h/k)>1", "severity": "Not Classified"},
        {"name": "d", "expression": "last(/h/k)>1", "severity": 4},
        {"name": "c", "expression": "last(/h/k)>1", "recovery_expression": "last(/h/k)<1",
         "recovery": "recovery_expression"},
    ]}]})
    a, b, d, c = doc.hosts[0].triggers
    assert d.severity == Severity.HIGH
    assert a.multiple and b.severity == Severity.NOT_CLASSIFIED and not b.multiple
    assert c.recovery_mode == 1 and a.recovery_mode == 0 and a.enabled


@pytest.mark.parametrize("trigger, message", [
    ({"name": "t", "expression": "last(/h/k)>1", "severity": 6},
     "hosts[0].triggers[1].severity: 6 is not one of"),
    ({"name": "t", "expression": "last(/h/k)>1", "severity": "critical"},
     "hosts[0].triggers[1].severity: 'critical' is not one of not classified, information, warning, average, "
     "high, disaster"),
    ({"name": "t", "expression": "last(/h/k)>"},
     "hosts[0].triggers[1].expression: expected a value after '>', found the end of the expression at position 11"),
    ({"name": "t", "expression": "last(/h/k)>1", "recovery_expression": "max(/h/k,5m"},
     "hosts[0].triggers[1].recovery_expression: "),
    ({"name": "t", "expression": "last(/h/k)>1", "colour": "red"}, "hosts[0].triggers[1]: unknown field 'colour'"),
    ({"name": "t", "expression": "1>0"}, "hosts[0].triggers[1].expression: the expression uses no function"),
    ({"expression": "last(/h/k)>1"}, "hosts[0].triggers[1].name: required"),
    ({"name": "t"}, "hosts[0].triggers[1].expression: required"),
    ({"name": "ok", "expression": "last(/h/k)>1"}, "hosts[0].triggers[1].name: 'ok' appears twice (also "
                                                   "hosts[0].triggers[0])"),
    ({"name": "t", "expression": "last(/h/k)>1", "manual_close": "yes"},
     "hosts[0].triggers[1].manual_close: expected true or false"),
    ({"name": "t", "expression": "last(/h/k)>1", "recovery": "none", "recovery_expression": "last(/h/k)<1"},
     "hosts[0].triggers[1].recovery_expression: only with recovery: recovery_expression"),
    ({"name": "t", "expression": "last(/h/k)>1", "recovery": "recovery_expression"},
     "hosts[0].triggers[1].recovery_expression: required"),
    ({"name": "t", "expression": "last(/h/k)>1", "type": "multiple", "multiple": False},
     "hosts[0].triggers[1].type: multiple contradicts multiple: false"),
    ({"name": "t", "expression": "last(/h/k)>1", "dependencies": ["t"]},
     "hosts[0].triggers[1].dependencies: a trigger cannot depend on itself"),
    ({"name": "t", "expression": "last(/h/k)>1", "status": "off"}, "hosts[0].triggers[1].status: 'off' is not one"),
])
def test_bad_triggers_are_refused_naming_the_field(trigger: dict[str, Any], message: str) -> None:
    doc = {"hosts": [{"host": "h", "items": [{"key": "k"}],
                      "triggers": [{"name": "ok", "expression": "last(/h/k)>1"}, trigger]}]}
    with pytest.raises(ConfigError) as e:
        doc_from_dict(doc)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("expression, message", [
    ("last(/h/k)>1 or last(/h/nokey)>1",
     "hosts[0].triggers[0].expression: /h/nokey at position 16: 'h' has no item 'nokey'"),
    ("last(/h/k)>1 and last(/nohost/k)>1", "hosts[0].triggers[0].expression: /nohost/k at position 17: no host named "
                                           "'nohost'"),
    ("last(/T/tk)>1", "hosts[0].triggers[0].expression: /T/tk at position 0: 'T' is a template"),
])
def test_expressions_naming_what_does_not_exist_are_refused_on_save(repo: ConfigRepo, expression: str,
                                                                   message: str) -> None:
    load(repo, "templates: [{template: T, items: [{key: tk}]}]")
    doc = {"hosts": [{"host": "h", "items": [{"key": "k"}], "triggers": [{"name": "t", "expression": expression}]}]}
    with pytest.raises(ConfigError) as e:
        repo.apply(doc_from_dict(doc))
    assert str(e.value).startswith(message), str(e.value)
    assert not repo.host_exists("h")  # the whole document was refused


def test_template_triggers_read_only_the_templates_items(repo: ConfigRepo) -> None:
    load(repo, "hosts: [{host: h, items: [{key: k}]}]")
    doc = {"templates": [{"template": "T", "items": [{"key": "tk"}],
                          "triggers": [{"name": "ok", "expression": "last(/T/tk)>1"},
                                       {"name": "t", "expression": "last(/T/tk)>1 and last(/h/k)>1"}]}]}
    with pytest.raises(ConfigError, match=r"^templates\[0\]\.triggers\[1\]\.expression: /h/k at position 18: a "
                                          r"template's trigger reads only the template's own items"):
        repo.apply(doc_from_dict(doc))
    doc["templates"][0]["triggers"][1]["expression"] = "last(/T/missing)>1"
    with pytest.raises(ConfigError, match=r"^templates\[0\]\.triggers\[1\]\.expression: /T/missing at position 0: "
                                          r"'T' has no item 'missing'"):
        repo.apply(doc_from_dict(doc))


@pytest.mark.parametrize("deps, message", [
    (["nope"], "hosts[0].triggers[0].dependencies[0]: no trigger 'nope' on 'h'"),
    (["other:nope"], "hosts[0].triggers[0].dependencies[0]: no trigger 'other:nope' on 'h'"),
    (["T:tt"], "hosts[0].triggers[0].dependencies[0]: 'T:tt' is a template's trigger"),
])
def test_dependencies_on_missing_triggers_are_refused(repo: ConfigRepo, deps: list[str], message: str) -> None:
    load(repo, "templates: [{template: T, items: [{key: tk}], triggers: [{name: tt, expression: 'last(/T/tk)>1'}]}]")
    doc = {"hosts": [{"host": "h", "items": [{"key": "k"}],
                      "triggers": [{"name": "t", "expression": "last(/h/k)>1", "dependencies": deps}]}]}
    with pytest.raises(ConfigError) as e:
        repo.apply(doc_from_dict(doc))
    assert str(e.value).startswith(message), str(e.value)


def test_triggers_of_disabled_hosts_or_items_are_not_evaluated(repo: ConfigRepo) -> None:
    load(repo, BASE)
    doc = yaml.safe_load(BASE)
    doc["hosts"][0]["items"][1]["status"] = "disabled"  # disk.free
    doc["hosts"][1]["status"] = "disabled"
    repo.apply(doc_from_dict(doc))
    refs = by_host(repo)
    assert ("web01", "CPU high") not in refs and ("web01", "Disk full") not in refs
    assert not any(h == "web02" for h, _ in refs)
    assert ("web01", "App overloaded") in refs


def test_deleting_a_host_deletes_other_hosts_triggers_reading_its_items(repo: ConfigRepo) -> None:
    load(repo, BASE)
    assert ("web02", "Web02 ping lost") in stored(repo)
    assert repo.delete_host("web01")
    names = set(stored(repo))
    assert ("web02", "Web02 ping lost") not in names and ("web02", "App overloaded") in names
