"""The configuration model on both backends: YAML import/export, validation, templates and macros."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.run.up import BUILTIN_TEMPLATE, builtin_templates
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo, Snapshot
from vigil.server.config.tables import ItemType, ValueType


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def load(repo: ConfigRepo, text: str, **kw: Any) -> Any:
    return repo.apply(doc_from_dict(yaml.safe_load(text)), **kw)


def host_items(repo: ConfigRepo, host: str) -> dict[str, tuple[int | None, str, int]]:
    """key -> (templateid, delay, value_type) of a host's items, as stored."""
    with repo.engine.connect() as c:
        rows = c.execute(
            sa.select(t.items.c.key_, t.items.c.templateid, t.items.c.delay, t.items.c.value_type)
            .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid).where(t.hosts.c.host == host)
        ).all()
    return {r.key_: (r.templateid, r.delay, r.value_type) for r in rows}


def table_counts(repo: ConfigRepo) -> dict[str, int]:
    with repo.engine.connect() as c:
        return {tab.name: int(c.execute(sa.select(sa.func.count()).select_from(tab)).scalar_one())
                for tab in (t.hosts, t.items, t.item_tags, t.host_macros, t.hosts_templates, t.host_groups)}


FULL = """
host_groups: [Linux servers]
templates:
  - template: App by Vigil
    name: Application template
    groups: [Templates/Applications]
    description: app checks
    macros: {"{$APP.PORT}": "8080", "{$VFS.FS.PATH}": /srv}
    items:
      - {key: "net.tcp.port[,{$APP.PORT}]", name: App port, type: agent_active, value_type: unsigned, delay: 30s}
      - {key: "vfs.fs.size[{$VFS.FS.PATH},total]", type: agent_active, value_type: unsigned, units: B, delay: 5m,
         tags: [{tag: component, value: storage}]}
hosts:
  - host: web01
    name: Web server 1
    groups: [Linux servers, Web]
    description: front end
    templates: [App by Vigil]
    macros: {"{$VFS.FS.PATH}": /var}
    items:
      - {key: app.requests, value_type: unsigned, units: rps, history: 7d, trends: 0,
         tags: [{tag: project, value: acme}, {tag: meter, value: requests}]}
      - {key: "log[/var/log/app.log,error]", type: agent_active, value_type: log, delay: 10s, status: disabled}
      - {key: app.version, value_type: char, description: "build id"}
  - host: db01
    status: disabled
    items:
      - {key: db.size, value_type: float}
"""


def test_yaml_round_trip(repo: ConfigRepo, tmp_path: Any) -> None:
    report = load(repo, FULL)
    assert (report.hosts_created, report.templates_created) == (2, 1)
    exported = repo.export()
    web = next(h for h in exported["hosts"] if h["host"] == "web01")
    assert web["templates"] == ["App by Vigil"] and web["macros"] == {"{$VFS.FS.PATH}": "/var"}
    # a host exports only its own items; the template's come back through the link
    assert [i["key"] for i in web["items"]] == ["app.requests", "log[/var/log/app.log,error]", "app.version"]
    assert web["items"][0]["tags"] == [{"tag": "project", "value": "acme"}, {"tag": "meter", "value": "requests"}]
    assert web["items"][1]["status"] == "disabled"
    assert exported["templates"][0]["macros"] == {"{$APP.PORT}": "8080", "{$VFS.FS.PATH}": "/srv"}
    db = next(h for h in exported["hosts"] if h["host"] == "db01")
    assert db["status"] == "disabled"

    # the export imports into an empty database and exports the same again
    text = yaml.safe_dump(exported, sort_keys=False)
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    from vigil.server.config.migrate import upgrade

    engine = engine_for(other_url)
    try:
        upgrade(engine)
        other = ConfigRepo(engine)
        load(other, text)
        assert other.export() == exported
        assert host_items(other, "web01").keys() == host_items(repo, "web01").keys()
    finally:
        engine.dispose()
    # importing the same document twice changes nothing
    before = repo.export()
    report = load(repo, text)
    assert report.hosts_created == 0 and report.items_created == 0 and repo.export() == before


@pytest.mark.parametrize("doc, message", [
    ({"hosts": [{"host": "h", "colour": "red"}]}, "hosts[0]: unknown field 'colour'"),
    ({"hosts": [{"host": "h", "items": [{"key": "a"}, {"key": "b"}, {"key": "c", "value_type": "flot"}]}]},
     "hosts[0].items[2].value_type: 'flot' is not one of"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "type": "snmpv9"}]}]},
     "hosts[0].items[0].type: 'snmpv9' is not one of"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "units": "B", "colour": 1}]}]},
     "hosts[0].items[0]: unknown field 'colour'"),
    ({"hosts": [{"host": "h", "items": [{"key": "system.cpu.load[all,avg1"}]}]}, "hosts[0].items[0].key:"),
    ({"hosts": [{"host": "h", "items": [{"key": "bad key"}]}]}, "hosts[0].items[0].key:"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "delay": "5 minutes"}]}]}, "hosts[0].items[0].delay:"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "history": "10m"}]}]}, "hosts[0].items[0].history:"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "trends": "-1d"}]}]}, "hosts[0].items[0].trends:"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "type": "agent_active", "delay": 0}]}]},
     "hosts[0].items[0].delay: an agent_active item needs an update interval"),
    ({"hosts": [{"host": "h", "items": [{"key": "a"}, {"key": "a"}]}]}, "hosts[0].items[1].key: 'a' appears twice"),
    ({"hosts": [{"host": "h"}, {"host": "g"}, {"host": "h"}]}, "hosts[2].host: 'h' appears twice (also hosts[0])"),
    ({"templates": [{"template": "T"}], "hosts": [{"host": "x"}, {"host": "T"}]},
     "hosts[1].host: 'T' is the name of a template"),
    ({"templates": [{"template": "T", "items": [{"key": "k", "value_type": "int"}]}]},
     "templates[0].items[0].value_type"),
    ({"templates": [{"template": "T", "macros": {"$X": 1}}]}, "templates[0].macros: '$X' is not a user macro"),
    ({"hosts": [{"host": "h", "status": "on"}]}, "hosts[0].status: 'on' is not one of enabled, disabled"),
    ({"hosts": [{"host": "bad/name"}]}, "hosts[0].host:"),
    ({"hosts": [{"name": "no host field"}]}, "hosts[0].host: required"),
    ({"hosts": "web01"}, None),
    ({"hosts": [["web01"]]}, "hosts[0]: expected a mapping"),
    ({"hosts": [{"host": "h", "items": {"key": "a"}}]}, "hosts[0].items: expected a list"),
    ({"hosts": [{"host": "h", "items": [{"key": "a", "name": {"x": 1}}]}]}, "hosts[0].items[0].name: expected text"),
    ({"servers": []}, "document: unknown field 'servers'"),
    ([1, 2], "the document must be a mapping"),
])
def test_document_errors_name_the_field(doc: Any, message: str | None) -> None:
    with pytest.raises(ConfigError) as e:
        doc_from_dict(doc)
    if message is not None:
        assert message in str(e.value)


def test_errors_found_against_the_database_name_the_field_and_import_nothing(repo: ConfigRepo) -> None:
    load(repo, "hosts: [{host: web01, items: [{key: a}]}]\ntemplates: [{template: T, items: [{key: t.k}]}]")
    before = table_counts(repo)
    version = repo.version()
    cases = [
        ("templates: [{template: web01}]", "templates[0].template: 'web01' is the name of a host already"),
        ("hosts: [{host: T}]", "hosts[0].host: 'T' is the name of a template already"),
        ("hosts: [{host: new1, items: [{key: x}]}, {host: new2, templates: [T, Nope]}]",
         "hosts[1].templates[1]: no template named 'Nope'"),
        # earlier parts of the document were valid and written inside the transaction: all rolled back
        ("host_groups: [G]\ntemplates: [{template: T2, items: [{key: y}]}]\n"
         "hosts: [{host: new3, templates: [T2]}, {host: T}]", "hosts[1].host: 'T' is the name of a template"),
        ("hosts: [{host: web01, templates: [T], items: [{key: a}, {key: t.k}]}]",
         "hosts[0].items[1].key: item 't.k' comes from a linked template"),
    ]
    for text, message in cases:
        with pytest.raises(ConfigError) as e:
            load(repo, text)
        assert message in str(e.value)
        assert table_counts(repo) == before, text
        assert repo.version() == version
    assert not repo.host_exists("new1") and not repo.host_exists("new3")
    with pytest.raises(ConfigError, match="no template named 'Nope'"):
        repo.link_template("web01", "Nope")
    with pytest.raises(ConfigError, match="host 'nohost' not found"):
        repo.link_template("nohost", "T")
    with pytest.raises(ConfigError, match="no template named 'web01'"):
        repo.link_template("web01", "web01")  # a host is not a template
    assert table_counts(repo) == before


TEMPLATE = """
templates:
  - template: Base
    macros: {"{$VFS.FS.PATH}": /, "{$IF}": eth0}
    items:
      - {key: agent.ping, type: agent_active, value_type: unsigned, delay: 30s}
      - {key: "vfs.fs.size[{$VFS.FS.PATH},total]", type: agent_active, value_type: unsigned, delay: 1m}
      - {key: "net.if.in[{$IF}]", type: agent_active, value_type: unsigned, delay: "{$DELAY}"}
hosts:
  - {host: h1, items: [{key: own.metric}]}
  - {host: h2, macros: {"{$VFS.FS.PATH}": /data, "{$DELAY}": 15s}}
  - {host: h3}
"""


def test_link_gives_items_and_unlink_takes_only_the_templates(repo: ConfigRepo) -> None:
    load(repo, TEMPLATE)
    assert set(host_items(repo, "h1")) == {"own.metric"}
    repo.link_template("h1", "Base")
    repo.link_template("h2", "Base")
    base = host_items(repo, "Base")
    for host in ("h1", "h2"):
        items = host_items(repo, host)
        for key, (templateid, _, _) in base.items():
            assert templateid is None
            assert items[key][0] is not None  # linked to the template's item
        with repo.engine.connect() as c:
            tids = {r.key_: r.itemid for r in c.execute(
                sa.select(t.items.c.key_, t.items.c.itemid).join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                .where(t.hosts.c.host == "Base"))}
        assert {k: items[k][0] for k in base} == tids
    assert "own.metric" in host_items(repo, "h1")
    # linking twice changes nothing
    before = host_items(repo, "h1")
    repo.link_template("h1", "Base")
    assert host_items(repo, "h1") == before

    repo.link_template("h1", "Base", link=False)
    assert set(host_items(repo, "h1")) == {"own.metric"}
    assert set(host_items(repo, "h2")) == set(base)  # the other host keeps them
    assert "templates" not in next(h for h in repo.export()["hosts"] if h["host"] == "h1")


def test_template_changes_reach_every_linked_host(repo: ConfigRepo) -> None:
    load(repo, TEMPLATE)
    for h in ("h1", "h2", "h3"):
        repo.link_template(h, "Base")
    changed = """
templates:
  - template: Base
    items:
      - {key: agent.ping, type: agent_active, value_type: float, delay: 10s}
      - {key: system.uptime, type: agent_active, value_type: unsigned, delay: 1m}
"""
    version = repo.version()
    report = load(repo, changed)
    assert repo.version() > version
    assert report.items_deleted >= 2  # from the template; its copies go with them
    for h in ("h1", "h2", "h3"):
        items = host_items(repo, h)
        assert {k for k, v in items.items() if v[0] is not None} == {"agent.ping", "system.uptime"}
        assert items["agent.ping"][1:] == ("10s", int(ValueType.FLOAT))
    assert "own.metric" in host_items(repo, "h1")
    # a single item changed on the template through the item API reaches the hosts too
    from vigil.server.config.model import item_from_doc

    repo.upsert_item("Base", item_from_doc({"key": "agent.ping", "type": "agent_active", "value_type": "unsigned",
                                            "delay": "20s"}, "item"))
    repo.upsert_item("Base", item_from_doc({"key": "proc.num", "type": "agent_active", "value_type": "unsigned",
                                            "delay": "1m"}, "item"))
    for h in ("h1", "h2", "h3"):
        items = host_items(repo, h)
        assert items["agent.ping"][1:] == ("20s", int(ValueType.UNSIGNED))
        assert items["proc.num"][0] is not None
    # a host cannot change an item its template owns
    with pytest.raises(ConfigError, match="comes from a linked template"):
        repo.upsert_item("h1", item_from_doc({"key": "agent.ping", "value_type": "char"}, "item"))
    # history stays attached when the template changes an item: the host's copy keeps its id
    before = repo.item("h1", "agent.ping")
    load(repo, changed)
    after = repo.item("h1", "agent.ping")
    assert before is not None and after is not None and after[0] == before[0]
    assert after[1] == ValueType.FLOAT


def snapshot_keys(snap: Snapshot, host: str) -> dict[str, int]:
    return {key: ref.delay for (h, key), ref in snap.items.items() if h == host}


def test_template_macros_resolve_per_host(repo: ConfigRepo) -> None:
    load(repo, TEMPLATE)
    for h in ("h2", "h3"):
        repo.link_template(h, "Base")
    snap = repo.snapshot()
    h2, h3 = snapshot_keys(snap, "h2"), snapshot_keys(snap, "h3")
    assert "vfs.fs.size[/data,total]" in h2  # the host's macro overrides the template's
    assert "vfs.fs.size[/,total]" in h3  # the template's macro
    assert "net.if.in[eth0]" in h2 and "net.if.in[eth0]" in h3
    assert h2["net.if.in[eth0]"] == 15  # delay from the host's {$DELAY}
    assert h3["net.if.in[eth0]"] == 60  # {$DELAY} unknown on h3: the default interval
    assert not any("{$" in ref.key for (h, _), ref in snap.items.items() if h in ("h2", "h3"))
    # also found under the key as configured: agents report values under key_orig, as to Zabbix
    assert snap.items[("h2", "vfs.fs.size[{$VFS.FS.PATH},total]")] is snap.items[("h2", "vfs.fs.size[/data,total]")]
    assert {i.key_orig for i in snap.active[snap.hosts["h2"].hostid]} == {
        "agent.ping", "vfs.fs.size[{$VFS.FS.PATH},total]", "net.if.in[{$IF}]"}
    # the check list an active agent gets carries the resolved keys
    hostid = snap.hosts["h2"].hostid
    assert {i.key for i in snap.active[hostid]} == {"agent.ping", "vfs.fs.size[/data,total]", "net.if.in[eth0]"}
    assert all(i.type == ItemType.AGENT_ACTIVE for i in snap.active[hostid])
    # templates themselves are not hosts that can send data
    assert "Base" not in snap.hosts and not any(h == "Base" for h, _ in snap.items)
    # a macro change on the template reaches hosts that do not override it
    load(repo, TEMPLATE.replace('"{$VFS.FS.PATH}": /, ', '"{$VFS.FS.PATH}": /mnt, '))
    repo.link_template("h2", "Base")
    repo.link_template("h3", "Base")  # the re-import relinks nothing: the hosts in it list no templates
    snap = repo.snapshot()
    assert "vfs.fs.size[/mnt,total]" in snapshot_keys(snap, "h3")
    assert "vfs.fs.size[/data,total]" in snapshot_keys(snap, "h2")


def test_delete_missing_removes_only_the_hosts_own_items(repo: ConfigRepo) -> None:
    load(repo, TEMPLATE)
    load(repo, "hosts: [{host: h1, templates: [Base], items: [{key: a}, {key: b}, {key: own.metric}]}]")
    assert set(host_items(repo, "h1")) >= {"a", "b", "own.metric", "agent.ping"}
    report = load(repo, "hosts: [{host: h1, templates: [Base], items: [{key: a}]}]")
    assert report.items_deleted == 0 and "b" in host_items(repo, "h1")  # without the flag nothing goes
    report = load(repo, "hosts: [{host: h1, templates: [Base], items: [{key: a}]}]", delete_missing=True)
    assert report.items_deleted == 2
    items = host_items(repo, "h1")
    assert "a" in items and "b" not in items and "own.metric" not in items
    assert {"agent.ping", "vfs.fs.size[{$VFS.FS.PATH},total]"} <= set(items)  # the template's stay
    # other hosts are untouched
    assert set(host_items(repo, "h2")) == set()


def test_builtin_template_imports_and_links(repo: ConfigRepo) -> None:
    doc = doc_from_dict(builtin_templates())
    assert [tpl.template for tpl in doc.templates] == [BUILTIN_TEMPLATE]
    repo.apply(doc)
    repo.apply(doc)  # idempotent, as `vigil up` imports it at every start
    load(repo, f"hosts: [{{host: me, templates: [{BUILTIN_TEMPLATE}]}}]")
    snap = repo.snapshot()
    keys = {i.key for i in snap.active[snap.hosts["me"].hostid]}
    assert {"agent.ping", "system.cpu.num", "vfs.fs.size[/,total]", "system.cpu.load[all,avg1]"} <= keys
    assert len(keys) == len(doc.templates[0].items)


def test_reimport_without_templates_or_macros_keeps_them(migrated_url: str) -> None:
    """A document that leaves out `templates:`/`macros:`/`groups:` does not unlink or clear them."""
    from vigil.server.config.migrate import engine_for
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo

    repo = ConfigRepo(engine_for(migrated_url))
    repo.apply(doc_from_dict({
        "templates": [{"template": "T", "items": [{"key": "t.k", "type": "agent_active", "delay": "30s"}]}],
        "hosts": [{"host": "h", "groups": ["G"], "templates": ["T"], "macros": {"{$X}": "1"}}],
    }))
    repo.apply(doc_from_dict({"hosts": [{"host": "h", "items": [{"key": "own.k"}]}]}))
    host = next(h for h in repo.export()["hosts"] if h["host"] == "h")
    assert host["templates"] == ["T"] and host["macros"] == {"{$X}": "1"} and host["groups"] == ["G"]
    assert ("h", "t.k") in repo.snapshot().items
    repo.apply(doc_from_dict({"hosts": [{"host": "h", "templates": []}]}))
    assert ("h", "t.k") not in repo.snapshot().items and ("h", "own.k") in repo.snapshot().items
    repo.engine.dispose()


@pytest.mark.parametrize("value,flags", [("cert", 4), (["unencrypted", "cert"], 5), (4, 4), (5, 5),
                                         ("unencrypted", 1)])
def test_host_tls_accept_forms(repo: ConfigRepo, value: Any, flags: int) -> None:
    load(repo, yaml.safe_dump({"hosts": [{"host": "t1", "tls_accept": value, "tls_subject": "CN=t1,O=Ex"}]}))
    ref = repo.snapshot().hosts["t1"]
    assert (ref.tls_accept, ref.tls_subject, ref.tls_issuer) == (flags, "CN=t1,O=Ex", "")


def test_host_tls_fields_are_kept_when_the_document_does_not_say(repo: ConfigRepo) -> None:
    load(repo, "hosts:\n  - {host: t2, tls_accept: cert, tls_issuer: 'CN=CA'}\n")
    load(repo, "hosts:\n  - {host: t2, description: again}\n")
    ref = repo.snapshot().hosts["t2"]
    assert (ref.tls_accept, ref.tls_issuer) == (4, "CN=CA")
    exported = repo.export()["hosts"][0]
    assert (exported["tls_accept"], exported["tls_issuer"]) == ("cert", "CN=CA")


@pytest.mark.parametrize("value,message", [
    ("psk", "hosts[0].tls_accept: psk is not supported by Vigil"),
    (2, "hosts[0].tls_accept: psk is not supported by Vigil"),
    (["cert", "tls"], "hosts[0].tls_accept: 'tls' is not one of unencrypted, cert"),
    ([], "hosts[0].tls_accept: expected unencrypted, cert or a list of them"),
    (8, "hosts[0].tls_accept: 8 is not a set of Zabbix's flags"),
])
def test_host_tls_accept_errors_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        doc_from_dict({"hosts": [{"host": "t3", "tls_accept": value}]})
