"""Import at scale on both backends: many hosts linked to one template at once, written in bulk.

The bulk paths (one read per table, executemany writes, unchanged rows left alone) must leave the
same rows as writing one item at a time did: these tests look at the stored rows themselves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo

HOSTS = 30


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def template() -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"key": "app.json", "type": "trapper", "value_type": "text", "tags": {"component": "raw"}},
        {"key": "app.part[a]", "type": "dependent", "master_item": "app.json", "value_type": "float",
         "preprocessing": [{"type": "jsonpath", "params": "$.a"}, {"type": "multiplier", "params": "8"}]},
        {"key": "app.part[b]", "type": "dependent", "master_item": "app.part[a]", "value_type": "float"},
    ]
    items += [{"key": f"app.metric[{i}]", "type": "agent_active", "value_type": "float", "delay": "{$DELAY}",
               "units": "%", "tags": {"component": f"c{i % 3}", "app": "yes"},
               **({"preprocessing": [{"type": "multiplier", "params": str(i)}]} if i % 4 == 0 else {})}
              for i in range(12)]
    return {
        "template": "App", "macros": {"{$DELAY}": "1m", "{$HIGH}": "90"}, "items": items,
        "triggers": [
            {"name": "Metric 0 high", "expression": "last(/App/app.metric[0])>{$HIGH}", "tags": {"scope": "perf"}},
            {"name": "Metric 1 high", "expression": "last(/App/app.metric[1])>{$HIGH} and last(/App/app.part[a])>1",
             "dependencies": ["Metric 0 high"]},
            {"name": "Metric 2 high", "expression": "last(/{HOST.HOST}/app.metric[2])>1",
             "recovery": "recovery_expression", "recovery_expression": "last(/App/app.metric[2])<1"},
        ],
        "discovery_rules": [{"key": "app.discovery", "type": "trapper", "lifetime": "1d",
                             "item_prototypes": [{"key": "app.port[{#PORT}]", "type": "trapper"}]}],
    }


def document(hosts: int = HOSTS) -> dict[str, Any]:
    return {"templates": [template()], "hosts": [
        {"host": f"h{h:03d}", "groups": [f"G{h % 3}"], "templates": ["App"],
         "macros": {"{$HIGH}": "95"} if h % 2 else {},
         "interfaces": [{"type": "agent", "address": f"10.0.0.{h + 1}", "port": 10050}],
         "items": [{"key": "own.item", "type": "trapper", "tags": {"own": str(h)}}]}
        for h in range(hosts)]}


def apply(repo: ConfigRepo, doc: dict[str, Any], **kw: Any) -> Any:
    return repo.apply(doc_from_dict(copy.deepcopy(doc)), **kw)


TABLES = ("hosts", "items", "item_tags", "item_preproc", "triggers", "trigger_tags", "trigger_items",
          "trigger_depends", "item_discovery", "hosts_templates", "hosts_groups", "host_macros", "interfaces")


def dump(repo: ConfigRepo) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the configuration tables an import writes, ids and all."""
    out = {}
    with repo.engine.connect() as c:
        for name in TABLES:
            table = t.metadata.tables[name]
            out[name] = sorted(tuple(r) for r in c.execute(sa.select(table)))
    return out


def rows(repo: ConfigRepo, query: Any) -> list[Any]:
    with repo.engine.connect() as c:
        return c.execute(query).all()


def host_id(repo: ConfigRepo, host: str) -> int:
    return rows(repo, sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host))[0][0]


def item_view(repo: ConfigRepo, hostid: int) -> dict[str, tuple[Any, ...]]:
    """key -> (the columns a copy shares with its template item, tags, steps, master's key) of a host."""
    items = {r.itemid: r for r in rows(repo, sa.select(t.items).where(t.items.c.hostid == hostid))}
    keys = {i: r.key_ for i, r in items.items()}
    tags: dict[int, list[tuple[str, str]]] = {}
    for r in rows(repo, sa.select(t.item_tags).where(t.item_tags.c.itemid.in_(items))
                  .order_by(t.item_tags.c.itemtagid)):
        tags.setdefault(r.itemid, []).append((r.tag, r.value))
    steps: dict[int, list[tuple[Any, ...]]] = {}
    for r in rows(repo, sa.select(t.item_preproc).where(t.item_preproc.c.itemid.in_(items))
                  .order_by(t.item_preproc.c.step)):
        steps.setdefault(r.itemid, []).append((r.step, r.type, r.params, r.error_handler))
    shared = ("name", "type", "value_type", "units", "delay", "history", "trends", "status", "flags", "params")
    return {r.key_: (tuple(getattr(r, c) for c in shared), sorted(tags.get(i, [])), steps.get(i, []),
                     keys.get(r.master_itemid)) for i, r in items.items()}


def test_many_hosts_linked_at_once_get_exact_copies(repo: ConfigRepo) -> None:
    report = apply(repo, document())
    assert report.hosts_created == HOSTS
    tid = host_id(repo, "App")
    want = item_view(repo, tid)
    assert len(want) == 17  # 15 items, the rule and its prototype (which stays on the template)
    del want["app.port[{#PORT}]"]
    titems = dict(rows(repo, sa.select(t.items.c.key_, t.items.c.itemid).where(t.items.c.hostid == tid)))
    ttriggers = {r.description: r for r in rows(repo, sa.select(t.triggers).where(t.triggers.c.hostid == tid))}
    for h in range(HOSTS):
        hid = host_id(repo, f"h{h:03d}")
        got = item_view(repo, hid)
        own = got.pop("own.item")
        assert own[1] == [("own", str(h))]
        assert got == want, f"h{h:03d}"
        copies = {r.key_: r for r in rows(repo, sa.select(t.items).where(t.items.c.hostid == hid,
                                                                         t.items.c.templateid.is_not(None)))}
        assert {k: r.templateid for k, r in copies.items()} == {k: titems[k] for k in copies}
        trig = {r.description: r for r in rows(repo, sa.select(t.triggers).where(t.triggers.c.hostid == hid))}
        assert {n: r.templateid for n, r in trig.items()} == {n: r.triggerid for n, r in ttriggers.items()}
        assert trig["Metric 1 high"].expression == \
            f"last(/h{h:03d}/app.metric[1])>{{$HIGH}} and last(/h{h:03d}/app.part[a])>1"
        assert trig["Metric 2 high"].expression == f"last(/h{h:03d}/app.metric[2])>1"
        assert trig["Metric 2 high"].recovery_expression == f"last(/h{h:03d}/app.metric[2])<1"
        reads = rows(repo, sa.select(t.trigger_items.c.itemid)
                     .where(t.trigger_items.c.triggerid == trig["Metric 1 high"].triggerid))
        assert sorted(i for (i,) in reads) == sorted([copies["app.metric[1]"].itemid, copies["app.part[a]"].itemid])
        tags = rows(repo, sa.select(t.trigger_tags.c.tag, t.trigger_tags.c.value)
                    .where(t.trigger_tags.c.triggerid == trig["Metric 0 high"].triggerid))
        assert [tuple(x) for x in tags] == [("scope", "perf")]
        deps = rows(repo, sa.select(t.trigger_depends.c.triggerid_up)
                    .where(t.trigger_depends.c.triggerid_down == trig["Metric 1 high"].triggerid))
        assert [d for (d,) in deps] == [trig["Metric 0 high"].triggerid]  # the host's copy, not the template's
    snap = repo.snapshot()
    assert len(snap.items) == HOSTS * 16  # 15 copies and the own item, per host
    assert repo.poll_config().items  # the dependent copies resolve their masters


def test_reimport_changes_no_row_and_bumps_the_version_once(repo: ConfigRepo) -> None:
    doc = document()
    apply(repo, doc)
    before, version = dump(repo), repo.version()
    report = apply(repo, doc)
    assert report.items_created == report.triggers_created == report.items_deleted == 0
    assert dump(repo) == before  # the same rows with the same ids: nothing rewritten
    assert repo.version() == version + 1


def metric4_ids(repo: ConfigRepo) -> dict[str, int]:
    return dict(rows(repo, sa.select(t.hosts.c.host, t.items.c.itemid)
                     .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid).where(t.items.c.key_ == "app.metric[4]")))


def test_a_changed_template_item_reaches_every_host(repo: ConfigRepo) -> None:
    doc = document()
    apply(repo, doc)
    ids = metric4_ids(repo)
    items = doc["templates"][0]["items"]
    m4 = next(x for x in items if x["key"] == "app.metric[4]")
    m4.update(delay="45s", tags={"component": "new"}, preprocessing=[{"type": "multiplier", "params": "2"}])
    items[2]["master_item"] = "app.json"  # app.part[b] now reads the JSON directly
    apply(repo, doc)
    tview = item_view(repo, host_id(repo, "App"))
    for h in range(HOSTS):
        got = item_view(repo, host_id(repo, f"h{h:03d}"))
        assert got["app.metric[4]"] == tview["app.metric[4]"]
        assert got["app.metric[4]"][0][4] == "45s" and got["app.metric[4]"][1] == [("component", "new")]
        assert got["app.metric[4]"][2] == [(1, 1, "2", 0)]
        assert got["app.part[b]"][3] == "app.json"
    assert metric4_ids(repo) == ids  # updated in place


def test_removing_a_template_item_removes_it_and_its_triggers_from_every_host(repo: ConfigRepo) -> None:
    doc = document()
    apply(repo, doc)
    doc["templates"][0]["items"] = [x for x in doc["templates"][0]["items"] if x["key"] != "app.metric[0]"]
    doc["templates"][0]["triggers"] = doc["templates"][0]["triggers"][1:]
    doc["templates"][0]["triggers"][0].pop("dependencies")
    report = apply(repo, doc)
    assert report.items_deleted == 1  # the template's; its copies go with it (ON DELETE CASCADE)
    assert rows(repo, sa.select(t.items.c.itemid).where(t.items.c.key_ == "app.metric[0]")) == []
    assert rows(repo, sa.select(t.triggers.c.triggerid).where(t.triggers.c.description == "Metric 0 high")) == []
    assert rows(repo, sa.select(t.trigger_depends)) == []
    assert len(rows(repo, sa.select(t.triggers.c.triggerid))) == 2 * (HOSTS + 1)


def test_unlinking_takes_the_copies_away_and_keeps_own_items(repo: ConfigRepo) -> None:
    doc = document(6)
    apply(repo, doc)
    for h in doc["hosts"][:3]:
        h["templates"] = []
    apply(repo, doc)
    for h in range(6):
        hid = host_id(repo, f"h{h:03d}")
        keys = {k for (k,) in rows(repo, sa.select(t.items.c.key_).where(t.items.c.hostid == hid))}
        triggers = rows(repo, sa.select(t.triggers.c.triggerid).where(t.triggers.c.hostid == hid))
        if h < 3:
            assert keys == {"own.item"} and triggers == []
        else:
            assert len(keys) == 17 and len(triggers) == 3  # 15 items, the rule and the own item


def test_a_host_item_with_a_template_key_is_adopted_by_the_link(repo: ConfigRepo) -> None:
    apply(repo, {"hosts": [{"host": "h000", "items": [{"key": "app.metric[3]", "type": "trapper",
                                                       "tags": {"mine": "1"}}]}]})
    (itemid,) = rows(repo, sa.select(t.items.c.itemid).where(t.items.c.key_ == "app.metric[3]"))[0]
    doc = document(3)
    doc["hosts"][0]["items"] = []
    apply(repo, doc)
    r = rows(repo, sa.select(t.items).where(t.items.c.itemid == itemid))[0]
    assert r.templateid is not None and r.type == 7 and r.delay == "{$DELAY}"  # now the template's copy
    assert item_view(repo, r.hostid)["app.metric[3]"][1] == [("app", "yes"), ("component", "c0")]
    # Once linked, the host cannot define it as its own: the error names the field.
    doc["hosts"][0]["items"] = [{"key": "own.item", "type": "trapper"}, {"key": "app.metric[3]", "type": "trapper"}]
    with pytest.raises(ConfigError, match=r"^hosts\[0\]\.items\[1\]\.key: item 'app\.metric\[3\]' comes from a "
                                          r"linked template"):
        apply(repo, doc)


def test_two_templates_with_one_key_are_refused(repo: ConfigRepo) -> None:
    doc = document(2)
    doc["templates"].append({"template": "Other", "items": [{"key": "app.metric[5]", "type": "trapper"}]})
    doc["hosts"][1]["templates"] = ["App", "Other"]
    with pytest.raises(ConfigError, match=r"item 'app\.metric\[5\]' already comes from another linked template"):
        apply(repo, doc)


def test_a_failure_late_in_the_file_leaves_nothing_written(repo: ConfigRepo) -> None:
    apply(repo, document(3))
    before, version = dump(repo), repo.version()
    doc = document(HOSTS)
    doc["templates"][0]["items"][5]["delay"] = "2m"
    doc["hosts"][-1]["items"].append({"key": "app.part[c]", "type": "dependent", "master_item": "nope"})
    with pytest.raises(ConfigError, match=r"^hosts\[29\]\.items\[1\]\.master_item: no item 'nope' on this host"):
        apply(repo, doc)
    assert dump(repo) == before and repo.version() == version


def test_discovered_items_survive_a_reimport(repo: ConfigRepo) -> None:
    doc = document(3)
    apply(repo, doc)
    ruleid = repo.rule_id("h001", "app.discovery")
    assert ruleid is not None
    res = repo.discover(ruleid, json.dumps([{"{#PORT}": "80"}, {"{#PORT}": "443"}]), 1000)
    assert res.created == 2
    found = repo.discovered_items("h001")
    assert set(found) == {"app.port[80]", "app.port[443]"}
    doc["templates"][0]["items"][3]["units"] = "B"
    apply(repo, doc)
    apply(repo, doc)
    assert repo.discovered_items("h001") == found
    assert repo.rule_id("h001", "app.discovery") == ruleid
