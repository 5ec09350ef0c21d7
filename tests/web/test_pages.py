"""The pages: render with data, filter through the URL, refuse garbage field by field, enforce rights."""

from __future__ import annotations

import pytest

from tests.web.conftest import Env, form_token


def page(c, path: str, status: int = 200) -> str:  # type: ignore[no-untyped-def]
    r = c.get(path)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:300])
    text = r.get_data(as_text=True)
    assert "Traceback" not in text
    return text


def test_every_page_renders_for_a_super_admin(env: Env) -> None:
    c = env.client("admin")
    cpu = env.itemid("web-01", "cpu.util")
    web = env.hostid("web-01")
    for path in ("/", "/hosts", "/config/hosts", f"/hosts/{web}", "/latest", f"/graphs?itemid={cpu}",
                 "/graphs", "/config/hosts/new", f"/config/hosts/{web}", f"/config/hosts/{web}/items/new",
                 "/profile", f"/graphs?itemid={cpu}&from=now-30d", "/config/templates", "/config/users"):
        page(c, path)


def test_latest_data_shows_value_change_sparkline_and_escapes_text(env: Env) -> None:
    c = env.client("admin")
    text = page(c, "/latest?search=cpu")
    assert "19 %" in text and "+1 %" in text and "<polyline" in text
    text = page(c, "/latest?search=version")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert "10 KB" in page(c, f"/latest?hostid={env.hostid('web-01')}")
    assert "No items match" in page(c, "/latest?search=nothing-like-this")
    assert "CPU utilization" in page(c, "/latest?tag=component=cpu")
    assert "Bytes in" not in page(c, "/latest?tag=component=cpu")


@pytest.mark.parametrize("path, field", [("/latest?hostid=abc", "hostid"), ("/latest?page=0", "page"),
                                         ("/hosts?status=maybe", "status"), ("/hosts?page=-1", "page"),
                                         ("/graphs?itemid=1&from=abc", "from"), ("/graphs?itemid=x", "itemid"),
                                         ("/hosts?sort=password", "sort"), ("/latest?groupid=1e9", "groupid")])
def test_bad_query_parameters_answer_a_page_naming_the_field(env: Env, path: str, field: str) -> None:
    text = page(env.client("admin"), path, 400)
    assert f"<code>{field}</code>" in text


def test_graph_page_embeds_the_points(env: Env) -> None:
    c = env.client("admin")
    cpu, net = env.itemid("web-01", "cpu.util"), env.itemid("web-01", "net.bytes")
    text = page(c, f"/graphs?itemid={cpu}&itemid={net}&from=now-1h")
    assert "from history" in text and "19.0" in text and '"yaxis2"' in text
    assert "from trends" in page(c, f"/graphs?itemid={cpu}&from=now-1y")
    assert "/static/plotly.min.js" in text


def test_plotly_is_served_locally_gzipped(env: Env) -> None:
    c = env.client()
    r = c.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
    import gzip

    assert b"plotly" in gzip.decompress(r.data)[:2000].lower()


def test_host_pages_and_lists_respect_rights(env: Env) -> None:
    secret = env.hostid("db-secret")
    for user in ("viewer", "ops", "nobody"):
        c = env.client(user)
        assert "db-secret" not in page(c, "/hosts")
        assert "db-secret" not in page(c, "/latest")
        page(c, f"/hosts/{secret}", 403)
        page(c, f"/latest?hostid={secret}", 403)
        page(c, f"/graphs?itemid={env.itemid('db-secret', 'cpu.util')}", 403)
    c = env.client("viewer")
    page(c, f"/config/hosts/{env.hostid('web-01')}", 403)  # a user reads, never configures
    page(c, "/config/hosts/new", 403)


def _host_form(c, path: str, **fields: object):  # type: ignore[no-untyped-def]
    data = {"csrf_token": form_token(c, path), "host": "", "name": "", "groups": ["Linux servers"], "ip": "",
            "dns": "", "port": "10050", "macros": "", "description": "", "enabled": "1"}
    data.update(fields)
    return c.post(path, data=data)


def test_host_create_edit_delete(env: Env) -> None:
    c = env.client("ops")
    r = _host_form(c, "/config/hosts/new", host="app-02", name="App two", ip="10.0.0.2", macros="{$A}=1")
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    hostid = env.hostid("app-02")
    text = page(c, f"/hosts/{hostid}")
    assert "App two" in text and "10.0.0.2:10050" in text
    r = _host_form(c, f"/config/hosts/{hostid}", host="app-03", name="", enabled="")
    assert r.status_code == 302
    assert env.repo.host_exists("app-03") and not env.repo.host_exists("app-02")
    r = c.post("/config/hosts/delete", data={"csrf_token": form_token(c, "/config/hosts"), "hostid": str(hostid)})
    assert r.status_code == 302 and not env.repo.host_exists("app-03")


@pytest.mark.parametrize("fields, field", [
    ({"host": ""}, "host"), ({"host": "<script>alert(1)</script>"}, "host"), ({"host": "x" * 10_000}, "host"),
    ({"host": "web-01"}, "host"), ({"host": "ok", "groups": []}, "groups"), ({"host": "ok", "ip": "1.2.3"}, "ip"),
    ({"host": "ok", "port": "99999"}, "port"), ({"host": "ok", "macros": "{$lower}=1"}, "macros"),
    ({"host": "ok", "groups": ["Secret"]}, "groups"), ({"host": "ok", "groups": ["New group"]}, "groups"),
    ({"host": "ok", "description": "d" * 1_000_000}, "description"),
])
def test_garbage_host_forms_answer_field_errors_and_change_nothing(env: Env, fields: dict, field: str) -> None:
    c = env.client("ops")
    before = env.repo.export()
    r = _host_form(c, "/config/hosts/new", **fields)
    text = r.get_data(as_text=True)
    assert r.status_code == 400, text[:500]
    assert f'id="err-{field}"' in text and "Nothing was saved" in text
    assert "<script>alert(1)</script>" not in text
    assert env.repo.export() == before


def test_a_ten_megabyte_field_is_refused_cleanly(env: Env) -> None:
    c = env.client("ops")
    r = _host_form(c, "/config/hosts/new", host="big", description="x" * (10 * 1024 * 1024))
    assert r.status_code == 413 and "Traceback" not in r.get_data(as_text=True)
    assert not env.repo.host_exists("big")


def test_item_form_creates_a_trapper_item_and_refuses_garbage(env: Env) -> None:
    c = env.client("ops")
    hostid = env.hostid("web-01")
    path = f"/config/hosts/{hostid}/items/new"

    def post(**fields: str):  # type: ignore[no-untyped-def]
        data = {"csrf_token": form_token(c, path), "key": "", "name": "", "type": "trapper", "value_type": "float",
                "units": "", "delay": "1m", "history": "31d", "trends": "365d", "tags": "", "description": ""}
        data.update(fields)
        return c.post(path, data=data)

    for fields, field in (({"key": ""}, "key"), ({"key": "cpu.util"}, "key"), ({"key": "bad[key"}, "key"),
                          ({"key": "q", "delay": "often"}, "delay"), ({"key": "q", "history": "-1"}, "history"),
                          ({"key": "q", "value_type": "flot"}, "value_type"), ({"key": "q", "tags": "=x"}, "tags"),
                          ({"key": "q", "type": "agent", "delay": "0"}, "delay")):
        r = post(**fields)
        assert r.status_code == 400 and f'id="err-{field}"' in r.get_data(as_text=True), (fields, r.status_code)
    assert env.repo.item("web-01", "q") is None
    r = post(key="queue.len", name="Queue length", tags="team=ops")
    assert r.status_code == 302 and env.repo.item("web-01", "queue.len") is not None


def test_a_guest_cannot_change_anything(env: Env) -> None:
    c = env.client("guest")
    assert "Web 01" in page(c, "/hosts")
    page(c, "/config/hosts/new", 403)
    r = _host_form(c, "/config/hosts/new", host="g-1")
    assert r.status_code == 403 and not env.repo.host_exists("g-1")
    r = c.post("/config/hosts/delete", data={"csrf_token": form_token(c, "/hosts"),
                                             "hostid": str(env.hostid("web-01"))})
    assert r.status_code == 403 and env.repo.host_exists("web-01")
    r = c.post("/profile", data={"csrf_token": form_token(c), "action": "token", "name": "g"})
    assert r.status_code == 403 and env.users.tokens() == []


def test_dashboard_counts_and_empty_states(env: Env) -> None:
    text = page(env.client("admin"), "/")
    assert "Host availability" in text and "Problems by severity" in text
    assert "Unknown" in text
    text = page(env.client("nobody"), "/")
    assert "No hosts to show" in text


def test_users_page_creates_users_and_sets_rights_super_admin_only(env: Env) -> None:
    page(env.client("ops"), "/config/users", 403)
    c = env.client("admin")
    text = page(c, "/config/users")
    assert "viewer" in text and "Operators" in text
    tok = form_token(c, "/config/users")
    for fields, field in (({"username": "", "password": "long enough 1", "role": "user"}, "username"),
                          ({"username": "eve", "password": "short", "role": "user"}, "password"),
                          ({"username": "eve", "password": "long enough 1", "role": "root"}, "role"),
                          ({"username": "viewer", "password": "long enough 1", "role": "user"}, "username")):
        r = c.post("/config/users", data={"csrf_token": tok, **fields})
        assert r.status_code == 400 and f'id="err-{field}"' in r.get_data(as_text=True), fields
    assert env.users.by_name("eve") is None
    r = c.post("/config/users", data={"csrf_token": tok, "username": "eve", "password": "long enough 1",
                                      "role": "user", "group": "Auditors"})
    assert r.status_code == 302
    gid = next(g for g, n, _ in env.users.groups() if n == "Auditors")
    secret = next(g for g, n in __import__("vigil.server.config.browse", fromlist=["Browse"]).Browse(
        env.repo.engine).host_groups() if n == "Secret")
    assert env.client("eve", "long enough 1").get(f"/hosts/{env.hostid('db-secret')}").status_code == 403
    r = c.post(f"/config/users/rights/{gid}", data={"csrf_token": tok, f"perm_{secret}": "read"})
    assert r.status_code == 302
    assert env.client("eve", "long enough 1").get(f"/hosts/{env.hostid('db-secret')}").status_code == 200
    r = c.post(f"/config/users/rights/{gid}", data={"csrf_token": tok, f"perm_{secret}": "everything"})
    assert r.status_code == 400


def test_bulk_enable_disable_and_bad_bulk_requests(env: Env) -> None:
    c = env.client("ops")
    tok = form_token(c, "/config/hosts")
    web = env.hostid("web-01")
    r = c.post("/config/hosts/delete", data={"csrf_token": tok, "hostid": str(web), "action": "disable"})
    assert r.status_code == 302
    assert "Disabled" in page(c, "/config/hosts?status=disabled")
    c.post("/config/hosts/delete", data={"csrf_token": tok, "hostid": str(web), "action": "enable"})
    assert "No hosts match" in page(c, "/config/hosts?status=disabled")
    r = c.post("/config/hosts/delete", data={"csrf_token": tok, "action": "enable"})
    assert r.status_code == 400 and "<code>hostid</code>" in r.get_data(as_text=True)
    r = c.post("/config/hosts/delete", data={"csrf_token": tok, "hostid": str(web), "action": "explode"})
    assert r.status_code == 400
    r = c.post("/config/hosts/delete", data={"csrf_token": tok, "hostid": str(env.hostid("db-secret")),
                                             "action": "disable"})
    assert r.status_code == 403
