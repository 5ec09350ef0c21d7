"""Browse.items pages by host (a count per host, then only the page's hosts read): every page must be
exactly the slice of the whole ordered list, with the right total, for every filter and rights scope,
on both stores; and a configuration change must show at once in totals and pages."""

from __future__ import annotations

import pytest
from vigil.server.config.browse import Browse, Scope
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo

# Visible names sort differently from technical names; item counts 0..5 per host; two host groups.
HOSTS = [("zeta", "Alpha", "Odd", 3), ("alpha", "Zulu", "Even", 5), ("mid", "", "Odd", 0),
         ("beta", "Beta", "Even", 1), ("gamma", "Alpha two", "Odd", 4), ("delta", "Delta", "Even", 2)]


def _doc(extra_item: bool = False) -> dict:
    hosts = []
    for host, name, group, n in HOSTS:
        items = [{"key": f"k.{j}", "name": f"Item {n - j}" if j % 2 else "", "units": "%",
                  "tags": {"component": "cpu" if j % 2 else "disk"}} for j in range(n)]
        if extra_item and host == "beta":
            items.append({"key": "k.new", "name": "A new one"})
        d = {"host": host, "groups": [group], "items": items}
        if name:
            d["name"] = name
        hosts.append(d)
    return {"hosts": hosts}


@pytest.fixture
def browse(migrated_url: str) -> Browse:
    engine = engine_for(migrated_url)
    ConfigRepo(engine).apply(doc_from_dict(_doc()))
    return Browse(engine)


def _group(b: Browse, name: str) -> int:
    return next(g for g, n in b.host_groups() if n == name)


@pytest.mark.parametrize("case", ["all", "group", "search", "tag", "hosts", "scope", "denied"])
def test_every_page_is_the_slice_of_the_whole_list(browse: Browse, case: str) -> None:
    odd = _group(browse, "Odd")
    kw: dict = {}
    scope = Scope()
    if case == "group":
        kw["groupid"] = odd
    elif case == "search":
        kw["search"] = "item 1"
    elif case == "tag":
        kw["tag"] = ("component", "cpu")
    elif case == "hosts":
        kw["hostids"] = [browse.host_id("zeta"), browse.host_id("delta"), browse.host_id("mid")]
    elif case == "scope":
        scope = Scope.of([odd])
    elif case == "denied":
        scope = Scope.of(None, [odd])
    whole = browse.items(scope, limit=None, **kw)
    ids = [r.itemid for r in whole.rows]
    assert whole.total == len(ids) > 0
    for limit in (1, 3, 7, 50):
        for offset in range(0, len(ids) + 2):
            page = browse.items(scope, limit=limit, offset=offset, **kw)
            assert page.total == len(ids), (limit, offset)
            assert [r.itemid for r in page.rows] == ids[offset:offset + limit], (limit, offset)


def test_the_whole_list_is_ordered_by_visible_host_name_then_item_name(browse: Browse) -> None:
    rows = browse.items(limit=None).rows
    names = [r.host_name for r in rows]
    assert names[:3] == ["Alpha"] * 3 and "Zulu" == names[-1]
    assert [r.host_name for r in browse.items(limit=4, offset=2).rows] == ["Alpha", "Alpha two", "Alpha two",
                                                                            "Alpha two"]


def test_rights_hold_on_every_page(browse: Browse) -> None:
    even = _group(browse, "Even")
    scope = Scope.of([even])
    seen = {r.host for off in range(0, 12, 3) for r in browse.items(scope, limit=3, offset=off).rows}
    assert seen == {"alpha", "beta", "delta"}
    assert browse.items(scope, limit=50).total == 8


def test_a_configuration_change_shows_at_once(browse: Browse) -> None:
    before = browse.items(limit=5, offset=3)
    assert before.total == 15
    ConfigRepo(browse.engine).apply(doc_from_dict(_doc(extra_item=True)))
    after = browse.items(limit=50)
    assert after.total == 16
    assert "A new one" in [r.name for r in after.rows]
    assert browse.items(search="new", limit=5).total == 1


def test_a_page_past_the_end_is_empty_with_the_total(browse: Browse) -> None:
    page = browse.items(limit=5, offset=100)
    assert page.total == 15 and page.rows == []
    assert browse.items(limit=0).rows == [] and browse.items(limit=0).total == 15
