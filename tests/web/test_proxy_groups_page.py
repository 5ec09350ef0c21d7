"""Administration → Proxy groups, a proxy's group on the proxy form, "Monitored by proxy group" on the
host form and in the API, on both stores: the list with state, online proxies and hosts (as the real
balancer leaves them), create / edit / delete with field errors on garbage, rights."""

from __future__ import annotations

import re

from vigil.server.ingest.proxybalancer import ProxyBalancer

from tests.web.conftest import Env, form_token


def _post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/admin/proxy-groups"), **data})


def _group(c, data: dict, path: str = "/admin/proxy-groups/new"):  # type: ignore[no-untyped-def]
    return _post(c, path, {"failover_delay": "1m", "min_online": "1", **data})


def _names(env: Env) -> list[str]:
    return [r.name for r in env.repo.proxy_group_rows()]


def _row(page: str, name: str) -> list[str]:
    row = re.search(rf'<tr data-proxy-group="{name}">(.*?)</tr>', page, re.S)
    assert row is not None, page[:3000]
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)


def _host_form(c, hid: int, **fields: str) -> dict:  # type: ignore[no-untyped-def]
    return {"csrf_token": form_token(c, f"/config/hosts/{hid}"), "host": "web-01", "name": "Web 01",
            "groups": "Linux servers", "enabled": "1", "port": "10050", **fields}


def test_create_list_with_state_join_balance_edit_and_delete(env: Env) -> None:
    c = env.client("admin")
    assert "No proxy groups" in c.get("/admin/proxy-groups").get_data(as_text=True)
    r = _group(c, {"name": "dc-east", "failover_delay": "30s", "min_online": "1", "description": "east side"})
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    # two proxies join it on the proxy form
    for name in ("px-1", "px-2"):
        form = c.get("/admin/proxies/new").get_data(as_text=True)
        assert '<option value="dc-east"' in form
        r = _post(c, "/admin/proxies/new", {"name": name, "mode": "active", "group": "dc-east"})
        assert r.status_code == 302, r.get_data(as_text=True)[:400]
    px = env.repo.proxies()
    assert env.repo.proxy_groups_of_proxies() == {px["px-1"].proxyid: "dc-east", px["px-2"].proxyid: "dc-east"}
    listing = c.get("/admin/proxies").get_data(as_text=True)
    assert re.search(r'<tr data-proxy="px-1">.*?<td class="group">dc-east</td>', listing, re.S)
    # a host joins it on the host form
    hid = env.hostid("web-01")
    page = c.get(f"/config/hosts/{hid}").get_data(as_text=True)
    assert '<select name="proxy_group"' in page and '<option value="dc-east"' in page
    assert c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="", proxy_group="dc-east")).status_code == 302
    assert env.repo.host_proxy_group_names() == {hid: "dc-east"}

    # px-1 reports in, px-2 never did: one of two online; the balancer puts the host on px-1
    cells = _row(c.get("/admin/proxy-groups").get_data(as_text=True), "dc-east")
    assert "Unknown" in cells[2]  # not balanced yet
    env.repo.touch_proxy(px["px-1"].proxyid, env.now - 5, "6.0.14")
    ProxyBalancer(env.repo, 1, started=0).run_once(env.now)
    assert env.repo.host_proxy_names() == {hid: "px-1"}
    cells = _row(c.get("/admin/proxy-groups").get_data(as_text=True), "dc-east")
    assert "Online" in cells[2] and cells[3] == "30s" and cells[4] == "1 of 2" and cells[5] == "1"
    assert re.search(r'class="ok-text"[^>]*>px-1</a>', cells[6]) and re.search(r'class="bad-text"[^>]*>px-2</a>',
                                                                              cells[6])
    assert cells[7] == "1" and "east side" in cells[8]
    assert "dc-east" in c.get("/admin/proxy-groups?state=online").get_data(as_text=True)
    assert "dc-east" not in c.get("/admin/proxy-groups?state=offline").get_data(as_text=True)
    assert "dc-east" not in c.get("/admin/proxy-groups?search=west").get_data(as_text=True)

    # the host form shows the group (its proxy is the balancer's); saving it as it is keeps that proxy
    page = c.get(f"/config/hosts/{hid}").get_data(as_text=True)
    assert '<option value="dc-east" selected>' in page and '<option value="px-1" selected>' not in page
    assert c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="", proxy_group="dc-east")).status_code == 302
    assert env.repo.host_proxy_names() == {hid: "px-1"} and env.repo.host_proxy_group_names() == {hid: "dc-east"}

    # edit: rename, a longer failover period, two proxies at least (only one online: offline)
    gid = env.repo.proxy_group_rows()[0].proxy_groupid
    edit = c.get(f"/admin/proxy-groups/{gid}").get_data(as_text=True)
    assert 'value="dc-east"' in edit and "1 of 2 proxies online, 1 host(s)" in edit
    r = _group(c, {"name": "dc-e", "failover_delay": "2m", "min_online": "2"}, f"/admin/proxy-groups/{gid}")
    assert r.status_code == 302
    assert _names(env) == ["dc-e"] and env.repo.host_proxy_group_names() == {hid: "dc-e"}
    assert set(env.repo.proxy_groups_of_proxies().values()) == {"dc-e"}
    ProxyBalancer(env.repo, 1, started=0).run_once(env.now)
    cells = _row(c.get("/admin/proxy-groups").get_data(as_text=True), "dc-e")
    assert "Offline" in cells[2] and cells[3] == "2m" and cells[5] == "2"
    assert env.repo.host_proxy_names() == {hid: "px-1"}  # offline: nothing moves

    # the proxy form shows its group; leaving it there takes the proxy out
    pid = px["px-2"].proxyid
    assert '<option value="dc-e" selected>' in c.get(f"/admin/proxies/{pid}").get_data(as_text=True)
    assert _post(c, f"/admin/proxies/{pid}", {"name": "px-2", "mode": "active", "group": ""}).status_code == 302
    assert env.repo.proxy_groups_of_proxies() == {px["px-1"].proxyid: "dc-e"}

    # delete: the host goes back to the server, the proxy stays in no group
    r = _post(c, "/admin/proxy-groups/delete", {"proxy_groupid": str(gid)})
    assert r.status_code == 302 and _names(env) == []
    assert env.repo.host_proxy_names() == {} and env.repo.host_proxy_group_names() == {}
    assert env.repo.proxy_groups_of_proxies() == {} and sorted(env.repo.proxies()) == ["px-1", "px-2"]


GARBAGE = [
    ({"name": ""}, "name", "required"),
    ({"name": "<script>alert(1)</script>"}, "name", "may contain only"),
    ({"name": "g" * 129}, "name", "longer than 128"),
    ({"name": "dup"}, "name", "exists already"),
    ({"name": "g", "failover_delay": ""}, "failover_delay", "required"),
    ({"name": "g", "failover_delay": "5s"}, "failover_delay", "outside 10s..15m"),
    ({"name": "g", "failover_delay": "1h"}, "failover_delay", "outside 10s..15m"),
    ({"name": "g", "failover_delay": "soon"}, "failover_delay", "soon"),
    ({"name": "g", "min_online": "0"}, "min_online", "from 1 to 1000"),
    ({"name": "g", "min_online": "two"}, "min_online", "from 1 to 1000"),
    ({"name": "g", "min_online": "1001"}, "min_online", "from 1 to 1000"),
]


def test_garbage_gets_field_errors_and_changes_nothing(env: Env) -> None:
    c = env.client("admin")
    assert _group(c, {"name": "dup"}).status_code == 302
    gid = env.repo.proxy_group_rows()[0].proxy_groupid
    for path in ("/admin/proxy-groups/new", f"/admin/proxy-groups/{gid}"):
        for data, field, message in GARBAGE:
            if path != "/admin/proxy-groups/new" and data == {"name": "dup"}:
                continue  # its own name
            r = _group(c, data, path)
            page = r.get_data(as_text=True)
            assert r.status_code == 400, (path, data, page[:300])
            err = re.search(rf'<div class="field-error" id="err-{field}">([^<]*)</div>', page)
            assert err is not None and message in err.group(1), (path, data, page[:3000])
            assert "<script>alert" not in page
    [row] = env.repo.proxy_group_rows()
    assert (row.name, row.failover_delay, row.min_online) == ("dup", "1m", 1)


def test_the_proxy_and_host_forms_refuse_unknown_groups_and_both_at_once(env: Env) -> None:
    c = env.client("admin")
    assert _group(c, {"name": "pg"}).status_code == 302
    r = _post(c, "/admin/proxies/new", {"name": "px", "mode": "active", "group": "ghost"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and re.search(r'id="err-group">[^<]*no proxy group &#39;ghost&#39;', page), page[:3000]
    assert env.repo.proxies() == {}
    assert _post(c, "/admin/proxies/new", {"name": "px", "mode": "active", "group": "pg"}).status_code == 302
    hid = env.hostid("web-01")
    r = c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="", proxy_group="ghost"))
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and re.search(r'id="err-proxy_group">[^<]*no proxy group &#39;ghost&#39;', page)
    r = c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="px", proxy_group="pg"))
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and re.search(r'id="err-proxy_group">[^<]*not both', page), page[:3000]
    assert env.repo.host_proxy_group_names() == {} and env.repo.host_proxy_names() == {}
    # a proxy chosen for a grouped host takes it out of the group
    assert c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="", proxy_group="pg")).status_code == 302
    assert c.post(f"/config/hosts/{hid}", data=_host_form(c, hid, proxy="px", proxy_group="")).status_code == 302
    assert env.repo.host_proxy_group_names() == {} and env.repo.host_proxy_names() == {hid: "px"}


def test_rights_admins_read_super_admins_change_others_nothing(env: Env) -> None:
    assert _group(env.client("admin"), {"name": "g1"}).status_code == 302
    gid = env.repo.proxy_group_rows()[0].proxy_groupid
    ops = env.client("ops")
    page = ops.get("/admin/proxy-groups").get_data(as_text=True)
    assert "g1" in page and "Create proxy group" not in page and 'name="proxy_groupid"' not in page
    assert "Proxy groups</a>" in page  # in the navigation
    assert ops.get(f"/admin/proxy-groups/{gid}").status_code == 200
    assert _group(ops, {"name": "g2"}).status_code == 403
    assert _group(ops, {"name": "renamed"}, f"/admin/proxy-groups/{gid}").status_code == 403
    assert _post(ops, "/admin/proxy-groups/delete", {"proxy_groupid": str(gid)}).status_code == 403
    for user in ("viewer", "guest"):
        assert env.client(user).get("/admin/proxy-groups").status_code == 403
    r = env.client("admin").post("/admin/proxy-groups/new", data={"name": "nocsrf", "failover_delay": "1m",
                                                                  "min_online": "1"})
    assert r.status_code == 400
    assert _names(env) == ["g1"]
    admin = env.client("admin")
    assert admin.get("/admin/proxy-groups/999999").status_code == 404
    assert _post(admin, "/admin/proxy-groups/delete", {"proxy_groupid": "999999"}).status_code == 404
    assert _post(admin, "/admin/proxy-groups/delete", {}).status_code == 400
    assert admin.get("/admin/proxy-groups?state=sideways").status_code == 400


def test_api_hosts_read_and_set_the_proxy_group(env: Env) -> None:
    admin = env.client("admin")
    assert _group(admin, {"name": "pg"}).status_code == 302
    assert _post(admin, "/admin/proxies/new", {"name": "p1", "mode": "active"}).status_code == 302
    _, token = env.users.create_token(env.users.by_name("admin").userid, "t", env.now)  # type: ignore[union-attr]
    c = env.app.test_client()
    h = {"Authorization": f"Bearer {token}"}
    hid = env.hostid("web-01")
    assert c.get(f"/api/v1/hosts/{hid}", headers=h).get_json()["data"]["proxy_group"] == ""
    r = c.patch(f"/api/v1/hosts/{hid}", json={"proxy_group": "pg"}, headers=h)
    assert r.status_code == 200 and r.get_json()["data"]["proxy_group"] == "pg"
    assert {x["host"]: x["proxy_group"] for x in c.get("/api/v1/hosts", headers=h).get_json()["data"]} == \
        {"web-01": "pg", "db-secret": ""}
    r = c.patch(f"/api/v1/hosts/{hid}", json={"description": "kept"}, headers=h)  # left out: unchanged
    assert r.get_json()["data"]["proxy_group"] == "pg"
    for bad in ({"proxy_group": "nope"}, {"proxy_group": 5}, {"proxy_group": "pg", "proxy": "p1"}):
        r = c.patch(f"/api/v1/hosts/{hid}", json=bad, headers=h)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == "proxy_group", (bad, r.get_json())
    r = c.post("/api/v1/hosts", json={"host": "new-1", "groups": ["Linux servers"], "proxy_group": "pg"}, headers=h)
    assert r.status_code == 201 and r.get_json()["data"]["proxy_group"] == "pg"
    r = c.patch(f"/api/v1/hosts/{hid}", json={"proxy_group": ""}, headers=h)
    assert r.get_json()["data"]["proxy_group"] == "" and r.get_json()["data"]["proxy"] == ""
    spec = c.get("/api/v1/openapi.json", headers=h).get_json()
    assert "proxy_group" in spec["components"]["schemas"]["HostIn"]["properties"]
