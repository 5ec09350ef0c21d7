"""Execute now (check now) in the web UI and the JSON API, on both stores: the latest data and host
pages' bulk button, the item form's button and POST /api/v1/items/…/check-now queue type-6 tasks
(server/store/tasks.py) for polled items only, with read-write rights on the host and CSRF on forms;
a trapper item, an unknown item and a user without rights each get an error naming what was wrong."""

from __future__ import annotations

import re

import sqlalchemy as sa
from vigil.server.config.model import item_from_doc

from tests.web.conftest import Env, form_token
from tests.web.test_api import bearer


def polled(env: Env, host: str = "web-01", key: str = "net.if.in[eth0]") -> int:
    env.repo.upsert_item(host, item_from_doc({"key": key, "type": "simple" if key.startswith("net.tcp") else
                                              "http_agent", "url": "http://127.0.0.1:1/", "delay": "1h"}, "item"))
    return env.itemid(host, key)


def queued(env: Env) -> list[tuple[int, int, int]]:
    """(type, status, itemid) of the check now tasks."""
    with env.repo.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT t.type, t.status, n.itemid FROM task t JOIN task_check_now n ON n.taskid = t.taskid "
            "ORDER BY t.taskid"))]


def test_api_queues_a_polled_item_and_names_what_it_refuses(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    item = polled(env)
    r = c.post(f"/api/v1/items/{item}/check-now", headers=h)
    assert r.status_code == 202, r.get_data(as_text=True)
    (one,) = r.get_json()["data"]["items"]
    assert one["itemid"] == item and one["host"] == "web-01" and one["by"] == "server"
    assert queued(env) == [(6, 1, item)]  # NEW, for the server's pollers
    trap = env.itemid("web-01", "cpu.util")
    r = c.post(f"/api/v1/items/{trap}/check-now", headers=h)
    err = r.get_json()["error"]
    assert r.status_code == 400 and err["field"] == "itemid" and err["code"] == "wrong_type"
    assert "Cannot send request: wrong item type" in err["message"] and '"CPU utilization" (cpu.util,' in err["message"]
    assert "web-01" in err["message"] and "trapper" in err["message"]
    r = c.post("/api/v1/items/987654/check-now", headers=h)
    assert r.status_code == 404 and r.get_json()["error"] == {"code": "not_found", "message": "itemid: no item 987654",
                                                               "field": "itemid"}
    assert queued(env) == [(6, 1, item)]  # nothing more


def test_api_bulk_is_all_or_nothing(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    a, b = polled(env), polled(env, key="web.page.get[x]")
    trap = env.itemid("web-01", "net.bytes")
    r = c.post("/api/v1/items/check-now", headers=h, json={"itemids": [a, trap, b]})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "itemids"
    assert "net.bytes" in r.get_json()["error"]["message"]
    assert queued(env) == []
    r = c.post("/api/v1/items/check-now", headers=h, json={"itemids": [a, b, a]})
    assert r.status_code == 202 and [x["itemid"] for x in r.get_json()["data"]["items"]] == [a, b]
    assert [q[2] for q in queued(env)] == [a, b]
    for body, field in [({}, "itemids"), ({"itemids": "1"}, "itemids"), ({"itemids": [True]}, "itemids"),
                        ({"itemids": []}, "itemids"), ({"item": [a]}, "item"), ({"discovered_by": "x"},
                                                                                  "discovered_by"),
                        ({"discovered_by": a}, "discovered_by"), ({"itemids": [a], "discovered_by": a}, "itemids")]:
        r = c.post("/api/v1/items/check-now", headers=h, json=body)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, (body, r.get_json())


def test_api_needs_read_write_rights_on_the_host(env: Env) -> None:
    c = env.app.test_client()
    mine, secret = polled(env), polled(env, host="db-secret")
    for user, item, status in [("viewer", mine, 403), ("guest", mine, 403), ("ops", secret, 403),
                               ("nobody", mine, 403), ("ops", mine, 202)]:
        r = c.post(f"/api/v1/items/{item}/check-now", headers=bearer(env, user))
        assert r.status_code == status, (user, r.get_data(as_text=True))
        if status == 403:
            assert r.get_json()["error"]["code"] == "forbidden"
    assert queued(env) == [(6, 1, mine)]


def test_openapi_lists_check_now(env: Env) -> None:
    doc = env.app.test_client().get("/api/v1/openapi.json").get_json()
    assert "post" in doc["paths"]["/items/{itemid}/check-now"]
    assert "post" in doc["paths"]["/items/check-now"]
    assert "CheckNowIn" in doc["components"]["schemas"]


def test_latest_data_execute_now_button_with_csrf(env: Env) -> None:
    c = env.client("admin")
    item = polled(env)
    page = c.get("/latest").get_data(as_text=True)
    assert 'value="check_now"' in page and "Execute now" in page
    assert f'name="itemid" value="{item}"' in page
    token = form_token(c, "/latest")
    r = c.post("/latest/bulk", data={"itemid": [str(item)], "action": "check_now"})  # no token
    assert r.status_code == 400 and "csrf_token" in r.get_data(as_text=True)
    assert queued(env) == []
    r = c.post("/latest/bulk", data={"csrf_token": token, "itemid": [str(item)], "action": "check_now",
                                     "back": "/latest?search=net"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/latest?search=net")
    assert queued(env) == [(6, 1, item)]
    assert "Request sent successfully: web-01: net.if.in[eth0] will be checked now." in \
        c.get("/latest").get_data(as_text=True)
    r = c.post("/latest/bulk", data={"csrf_token": token, "itemid": [str(env.itemid("web-01", "app.version"))],
                                     "action": "check_now"})
    assert r.status_code == 400 and "wrong item type" in r.get_data(as_text=True)
    r = c.post("/latest/bulk", data={"csrf_token": token, "action": "check_now"})
    assert r.status_code == 400 and "choose at least one item" in r.get_data(as_text=True)
    r = c.post("/latest/bulk", data={"csrf_token": token, "action": "check_now", "itemid": [str(item)],
                                     "back": "https://evil.example/"})
    assert r.status_code == 303 and "evil" not in r.headers["Location"]


def test_the_bulk_form_still_graphs_numeric_items(env: Env) -> None:
    c = env.client("admin")
    token = form_token(c, "/latest")
    cpu, ver = env.itemid("web-01", "cpu.util"), env.itemid("web-01", "app.version")
    r = c.post("/latest/bulk", data={"csrf_token": token, "itemid": [str(cpu), str(ver)], "action": "graph"})
    assert r.status_code == 303 and re.search(rf"/graphs\?itemid={cpu}$", r.headers["Location"])
    r = c.post("/latest/bulk", data={"csrf_token": token, "itemid": [str(ver)], "action": "graph"})
    assert r.status_code == 400 and "numeric" in r.get_data(as_text=True)


def test_viewer_sees_no_button_and_is_refused(env: Env) -> None:
    c = env.client("viewer")
    item = polled(env)
    assert 'value="check_now"' not in c.get("/latest").get_data(as_text=True)
    token = form_token(c, "/latest")
    r = c.post("/latest/bulk", data={"csrf_token": token, "itemid": [str(item)], "action": "check_now"})
    assert r.status_code == 403
    assert queued(env) == []


def test_host_page_and_item_form_buttons(env: Env) -> None:
    c = env.client("ops")
    item, host = polled(env), env.hostid("web-01")
    assert 'value="check_now"' in c.get(f"/hosts/{host}").get_data(as_text=True)
    form = c.get(f"/config/hosts/{host}/items/{item}").get_data(as_text=True)
    assert f"/config/hosts/{host}/items/{item}/check-now" in form and "Execute now" in form
    trap = env.itemid("web-01", "cpu.util")
    assert "/check-now" not in c.get(f"/config/hosts/{host}/items/{trap}").get_data(as_text=True)
    token = form_token(c, f"/config/hosts/{host}/items/{item}")
    r = c.post(f"/config/hosts/{host}/items/{item}/check-now", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/config/hosts/{host}/items/{item}")
    assert queued(env) == [(6, 1, item)]
    r = c.post(f"/config/hosts/{host}/items/{trap}/check-now", data={"csrf_token": token})
    assert r.status_code == 400 and "wrong item type" in r.get_data(as_text=True)
    secret_host = env.hostid("db-secret")
    r = c.post(f"/config/hosts/{secret_host}/items/{env.itemid('db-secret', 'cpu.util')}/check-now",
               data={"csrf_token": token})
    assert r.status_code == 403
