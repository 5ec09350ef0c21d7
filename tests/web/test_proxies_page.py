"""Administration → Proxies and "Monitored by proxy" on the host form and in the API, on both stores:
the list with runtime state, create / edit / delete with field errors on garbage, rights."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.web.conftest import Env, form_token


def _names(env: Env) -> list[str]:
    return sorted(env.repo.proxies())


def _add(c, data: dict, path: str = "/admin/proxies/new"):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/admin/proxies"), **data})


def test_create_list_with_state_edit_and_delete(env: Env) -> None:
    c = env.client("admin")
    assert "No proxies" in c.get("/admin/proxies").get_data(as_text=True)
    r = _add(c, {"name": "branch-1", "mode": "active", "allowed_addresses": "10.0.0.5, 192.168.1.0/24",
                 "description": "the branch office"})
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    r = _add(c, {"name": "dmz", "mode": "passive", "address": "127.0.0.1:10071"})
    assert r.status_code == 302
    px = env.repo.proxies()
    assert px["branch-1"].allowed_addresses == ("10.0.0.5", "192.168.1.0/24") and px["dmz"].mode == 1
    # the proxy reports in: last seen, version and delay show; a host it monitors is counted
    env.repo.touch_proxy(px["branch-1"].proxyid, env.now - 12, "6.0.14", delay=75)
    hid = env.hostid("web-01")
    page = c.get(f"/config/hosts/{hid}").get_data(as_text=True)
    assert '<option value="branch-1"' in page and "(no proxy: the server)" in page
    form = {"csrf_token": form_token(c, f"/config/hosts/{hid}"), "host": "web-01", "name": "Web 01",
            "groups": "Linux servers", "enabled": "1", "port": "10050", "proxy": "branch-1"}
    assert c.post(f"/config/hosts/{hid}", data=form).status_code == 302
    assert env.repo.host_proxy_names() == {hid: "branch-1"}
    listing = c.get("/admin/proxies").get_data(as_text=True)
    row = re.search(r'<tr data-proxy="branch-1">(.*?)</tr>', listing, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert "Active" in cells[2] and "10.0.0.5, 192.168.1.0/24" in cells[3]
    assert re.search(r"1[2-9]s ago", cells[4]) and cells[5] == "6.0.14" and cells[6] == "1" and "1m 15s" in cells[7]
    dmz = re.search(r'<tr data-proxy="dmz">(.*?)</tr>', listing, re.S)
    assert dmz is not None and "never" in dmz.group(1) and "127.0.0.1:10071" in dmz.group(1)
    assert "branch-1" in c.get("/admin/proxies?mode=active").get_data(as_text=True)
    assert "branch-1" not in c.get("/admin/proxies?mode=passive").get_data(as_text=True)
    # edit: rename and switch to passive; its host stays with it
    pid = px["branch-1"].proxyid
    edit = c.get(f"/admin/proxies/{pid}").get_data(as_text=True)
    assert 'value="branch-1"' in edit and "Monitors 1 host(s)" in edit
    r = _add(c, {"name": "branch-one", "mode": "passive", "address": "10.0.0.5"}, f"/admin/proxies/{pid}")
    assert r.status_code == 302
    assert _names(env) == ["branch-one", "dmz"] and env.repo.host_proxy_names() == {hid: "branch-one"}
    # the host's form and the hosts CSV show it
    assert '<option value="branch-one" selected>' in c.get(f"/config/hosts/{hid}").get_data(as_text=True)
    exported = list(csv.DictReader(io.StringIO(c.get("/config/hosts?format=csv").get_data(as_text=True))))
    assert {r["Host"]: r["Monitored by proxy"] for r in exported} == {"web-01": "branch-one", "db-secret": ""}
    # delete: the host goes back to the server
    r = c.post("/admin/proxies/delete", data={"csrf_token": form_token(c, "/admin/proxies"), "proxyid": str(pid)})
    assert r.status_code == 302 and _names(env) == ["dmz"] and env.repo.host_proxy_names() == {}


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"name": ""}, "name", "required"),
    ({"name": "<script>alert(1)</script>"}, "name", "may contain only"),
    ({"name": "p", "mode": "sideways"}, "mode", "active or passive"),
    ({"name": "p", "mode": "passive"}, "address", "needs the host:port"),
    ({"name": "p", "mode": "passive", "address": "h:99999"}, "address", "port 99999"),
    ({"name": "p", "mode": "active", "address": "10.0.0.1:10051"}, "address", "only a passive proxy"),
    ({"name": "p", "mode": "active", "allowed_addresses": "10.0.0.0/33"}, "allowed_addresses", "10.0.0.0/33"),
    ({"name": "p", "mode": "active", "allowed_addresses": "ok.example, bad!name"}, "allowed_addresses",
     "is not an IP address, CIDR or DNS name"),
    ({"name": "p" * 129}, "name", "longer than 128"),
    ({"name": "dup"}, "name", "exists already"),
])
def test_garbage_gets_field_errors_and_changes_nothing(env: Env, data: dict, field: str, message: str) -> None:
    c = env.client("admin")
    assert _add(c, {"name": "dup", "mode": "active"}).status_code == 302
    r = _add(c, {"mode": "active", **data})
    page = r.get_data(as_text=True)
    assert r.status_code == 400, page[:300]
    err = re.search(rf'<div class="field-error" id="err-{field}">([^<]*)</div>', page)
    assert err is not None and message in err.group(1), page[:2000]
    assert _names(env) == ["dup"]
    assert "&lt;script&gt;" in page or "<script>alert" not in page


def test_a_10_mb_field_is_refused_before_it_is_read(env: Env) -> None:
    c = env.client("admin")
    r = _add(c, {"name": "big", "description": "x" * (10 * 1024 * 1024)})
    assert r.status_code == 413 and _names(env) == []


def test_rights_admins_read_super_admins_change_others_nothing(env: Env) -> None:
    _add(env.client("admin"), {"name": "p1", "mode": "active"})
    pid = env.repo.proxies()["p1"].proxyid
    ops = env.client("ops")
    page = ops.get("/admin/proxies").get_data(as_text=True)
    assert "p1" in page and "Create proxy" not in page and 'name="proxyid"' not in page
    assert _add(ops, {"name": "p2", "mode": "active"}).status_code == 403
    assert _add(ops, {"name": "renamed", "mode": "active"}, f"/admin/proxies/{pid}").status_code == 403
    r = ops.post("/admin/proxies/delete", data={"csrf_token": form_token(ops, "/admin/proxies"), "proxyid": pid})
    assert r.status_code == 403
    for user in ("viewer", "guest"):
        assert env.client(user).get("/admin/proxies").status_code == 403
    r = env.client("admin").post("/admin/proxies/new", data={"name": "nocsrf", "mode": "active"})
    assert r.status_code == 400
    assert _names(env) == ["p1"]
    assert env.client("admin").get("/admin/proxies/999999").status_code == 404


def test_host_form_refuses_an_unknown_proxy(env: Env) -> None:
    c = env.client("admin")
    hid = env.hostid("web-01")
    form = {"csrf_token": form_token(c, f"/config/hosts/{hid}"), "host": "web-01", "groups": "Linux servers",
            "enabled": "1", "port": "10050", "proxy": "ghost"}
    r = c.post(f"/config/hosts/{hid}", data=form)
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and re.search(r'id="err-proxy">[^<]*no proxy &#39;ghost&#39;', page), page[:3000]
    assert env.repo.host_proxy_names() == {}


def test_api_hosts_read_and_set_the_proxy(env: Env) -> None:
    _add(env.client("admin"), {"name": "p1", "mode": "active"})
    _, token = env.users.create_token(env.users.by_name("admin").userid, "t", env.now)  # type: ignore[union-attr]
    c = env.app.test_client()
    h = {"Authorization": f"Bearer {token}"}
    hid = env.hostid("web-01")
    assert c.get(f"/api/v1/hosts/{hid}", headers=h).get_json()["data"]["proxy"] == ""
    r = c.patch(f"/api/v1/hosts/{hid}", json={"proxy": "p1"}, headers=h)
    assert r.status_code == 200 and r.get_json()["data"]["proxy"] == "p1"
    assert {x["host"]: x["proxy"] for x in c.get("/api/v1/hosts", headers=h).get_json()["data"]} == \
        {"web-01": "p1", "db-secret": ""}
    r = c.patch(f"/api/v1/hosts/{hid}", json={"description": "kept"}, headers=h)  # left out: unchanged
    assert r.get_json()["data"]["proxy"] == "p1"
    r = c.patch(f"/api/v1/hosts/{hid}", json={"proxy": "nope"}, headers=h)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "proxy"
    r = c.patch(f"/api/v1/hosts/{hid}", json={"proxy": 5}, headers=h)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "proxy"
    r = c.post("/api/v1/hosts", json={"host": "new-1", "groups": ["Linux servers"], "proxy": "p1"}, headers=h)
    assert r.status_code == 201 and r.get_json()["data"]["proxy"] == "p1"
    assert c.patch(f"/api/v1/hosts/{hid}", json={"proxy": ""}, headers=h).get_json()["data"]["proxy"] == ""
    spec = c.get("/api/v1/openapi.json", headers=h).get_json()
    assert "proxy" in spec["components"]["schemas"]["HostIn"]["properties"]
