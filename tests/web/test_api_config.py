"""/api/v1 for configuration: media types (+ test through a real SMTP server), actions, maintenances,
users, user groups, templates and tokens; pagination, filters, the one error shape naming the field,
roles (a guest changes nothing), and the OpenAPI document listing every path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.alerts.conftest import Mailbox, smtp_server
from tests.web.conftest import Env
from tests.web.test_api import bearer

MAIL = {"name": "Mail", "type": "email", "smtp_server": "127.0.0.1", "smtp_email": "vigil@example.com"}
ACTION = {"name": "Page", "conditions": [{"type": "severity", "operator": ">=", "value": "high"}],
          "operations": [{"send_to_users": ["ops"], "media_type": "Mail"}]}
MAINT = {"name": "Night", "hosts": ["web-01"], "periods": [{"type": "daily", "start_time": "02:00", "period": "1h"}]}


@pytest.fixture
def box() -> Iterator[Mailbox]:
    b = Mailbox()
    stop = smtp_server(b)
    try:
        yield b
    finally:
        stop()


def call(c: FlaskClient, method: str, path: str, h: dict[str, str], body: Any = None, status: int = 200) -> dict:
    r = c.open(path, method=method, headers=h, json=body)
    assert r.status_code == status, (method, path, r.status_code, r.get_data(as_text=True)[:600])
    assert r.mimetype == "application/json"
    return r.get_json()  # type: ignore[no-any-return]


def error(c: FlaskClient, method: str, path: str, h: dict[str, str], body: Any, status: int, field: str | None) -> dict:
    err = call(c, method, path, h, body, status)["error"]
    assert set(err) >= {"code", "message"} and err.get("field") == field, err
    return err  # type: ignore[no-any-return]


def test_media_types_crud_test_and_errors(env: Env, box: Mailbox) -> None:
    c, h = env.app.test_client(), bearer(env, "ops")
    mt = call(c, "POST", "/api/v1/mediatypes", h, {**MAIL, "smtp_port": box.port, "password": "pw"},  # type: ignore
              201)["data"]
    assert mt["smtp_port"] == box.port and "password" not in mt and mt["password_set"] is True  # type: ignore
    mid = mt["mediatypeid"]
    call(c, "POST", "/api/v1/mediatypes", h, {"name": "Hook", "type": "webhook", "url": "http://127.0.0.1:1/x"}, 201)
    assert call(c, "GET", "/api/v1/mediatypes?type=webhook", h)["total"] == 1
    page = call(c, "GET", "/api/v1/mediatypes?limit=1&offset=1", h)
    assert page["total"] == 2 and len(page["data"]) == 1 and page["data"][0]["name"] == "Mail"
    sent = call(c, "POST", f"/api/v1/mediatypes/{mid}/test", h, {"sendto": "oncall@example.com", "subject": "Hi"})
    assert sent["data"]["sent"] is True and box.messages[0][1] == ["oncall@example.com"]
    box.refuse_rcpt = "550 5.1.1 nobody here"
    err = error(c, "POST", f"/api/v1/mediatypes/{mid}/test", h, {"sendto": "x@example.com"}, 502, None)
    assert err["code"] == "delivery_failed" and "nobody here" in err["message"]
    error(c, "POST", f"/api/v1/mediatypes/{mid}/test", h, {}, 400, "sendto")
    changed = call(c, "PATCH", f"/api/v1/mediatypes/{mid}", h, {"smtp_security": "ssl", "status": "disabled"})["data"]
    assert changed["smtp_security"] == "ssl" and changed["status"] == "disabled" and changed["password_set"]
    error(c, "PATCH", f"/api/v1/mediatypes/{mid}", h, {"smtp_port": 70000}, 400, "smtp_port")
    error(c, "PATCH", f"/api/v1/mediatypes/{mid}", h, {"colour": "red"}, 400, "colour")
    error(c, "POST", "/api/v1/mediatypes", h, MAIL, 400, "name")  # a duplicate
    error(c, "POST", "/api/v1/mediatypes", h, {**MAIL, "name": "<script>"}, 400, "name")
    error(c, "POST", "/api/v1/mediatypes", h, {**MAIL, "name": "B", "smtp_email": "nope"}, 400, "smtp_email")
    error(c, "POST", "/api/v1/mediatypes", h, [1, 2], 400, "body")
    error(c, "GET", "/api/v1/mediatypes/999", h, None, 404, "mediatypeid")
    assert call(c, "DELETE", f"/api/v1/mediatypes/{mid}", h)["data"]["deleted"] is True
    assert [m["name"] for m in env.repo.export()["media_types"]] == ["Hook"]


def test_actions_and_maintenances_crud_with_field_paths(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    call(c, "POST", "/api/v1/mediatypes", h, MAIL, 201)
    a = call(c, "POST", "/api/v1/actions", h, ACTION, 201)["data"]
    assert a["conditions"] == ACTION["conditions"] and a["operations"][0]["step_from"] == 1
    aid = a["actionid"]
    a = call(c, "PATCH", f"/api/v1/actions/{aid}", h, {"evaltype": "or", "step_duration": "2h"})["data"]
    assert a["evaltype"] == "or" and a["conditions"] == ACTION["conditions"]
    error(c, "PATCH", f"/api/v1/actions/{aid}", h, {"operations": [{"send_to_users": ["ops"], "step_from": 0}]},
          400, "operations[0].step_from")
    error(c, "POST", "/api/v1/actions", h, {**ACTION, "name": "B", "conditions": [{"type": "host", "value": "nope"}]},
          400, "conditions[0].value")
    error(c, "POST", "/api/v1/actions", h, {**ACTION, "name": "C", "operations": []}, 400, "operations")
    assert call(c, "GET", "/api/v1/actions?status=enabled", h)["total"] == 1
    assert call(c, "GET", "/api/v1/actions?search=nothing", h)["total"] == 0
    m = call(c, "POST", "/api/v1/maintenances", h, MAINT, 201)["data"]
    mid = m["maintenanceid"]
    assert m["periods"] == [{"type": "daily", "start_time": "02:00", "period": "1h", "every": 1}]
    m = call(c, "PATCH", f"/api/v1/maintenances/{mid}", h, {"collect_data": False})["data"]
    assert m["collect_data"] is False and m["hosts"] == ["web-01"]
    error(c, "PATCH", f"/api/v1/maintenances/{mid}", h, {"periods": [{"type": "weekly", "start_time": "02:00",
                                                                        "dayofweek": ["someday"]}]},
          400, "periods[0].dayofweek[0]")
    assert call(c, "GET", "/api/v1/maintenances", h)["data"][0]["name"] == "Night"
    call(c, "DELETE", f"/api/v1/maintenances/{mid}", h)
    call(c, "DELETE", f"/api/v1/actions/{aid}", h)
    assert "actions" not in env.repo.export() and "maintenances" not in env.repo.export()


def test_users_and_user_groups(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "admin")
    call(c, "POST", "/api/v1/mediatypes", h, MAIL, 201)
    g = call(c, "POST", "/api/v1/usergroups", h, {"name": "Night shift", "rights": [
        {"name": "Linux servers", "permission": "read"}]}, 201)["data"]
    assert g["rights"][0]["permission"] == "read" and g["users"] == []
    u = call(c, "POST", "/api/v1/users", h, {"username": "olga", "password": "long enough pw", "role": "admin",
                                              "groups": ["Night shift"], "medias": [
                                                  {"media_type": "Mail", "send_to": "olga@example.com"}]}, 201)["data"]
    assert u["role"] == "admin" and u["groups"] == ["Night shift"] and u["medias"][0]["send_to"] == "olga@example.com"
    assert call(c, "GET", f"/api/v1/usergroups/{g['usrgrpid']}", h)["data"]["users"] == ["olga"]
    u = call(c, "PATCH", f"/api/v1/users/{u['userid']}", h, {"role": "user", "password": "another long one"})["data"]
    assert u["role"] == "user" and env.users.authenticate("olga", "another long one", 0, 5, 30)
    error(c, "PATCH", f"/api/v1/users/{u['userid']}", h, {"password": "short"}, 400, "password")
    error(c, "PATCH", f"/api/v1/users/{u['userid']}", h, {"medias": [{"media_type": "Mail", "send_to": "x",
                                                                      "period": "always"}]}, 400, "medias[0].period")
    error(c, "POST", "/api/v1/users", h, {"username": "olga", "password": "long enough pw"}, 400, "username")
    error(c, "POST", "/api/v1/users", h, {"username": "p", "password": "long enough pw", "groups": ["ghosts"]},
          400, "groups[0]")
    assert env.users.by_name("p") is None
    error(c, "POST", "/api/v1/usergroups", h, {"name": "Night shift"}, 400, "name")
    error(c, "POST", "/api/v1/usergroups", h, {"name": "X", "rights": [{"name": "Linux servers",
                                                                        "permission": "all"}]},
          400, "rights[0].permission")
    assert "X" not in {n for _, n, _ in env.users.groups()}
    me = env.users.by_name("admin").userid  # type: ignore[union-attr]
    error(c, "PATCH", f"/api/v1/users/{me}", h, {"role": "user"}, 400, "role")
    assert call(c, "GET", "/api/v1/users?role=guest", h)["total"] == 1
    assert call(c, "GET", "/api/v1/users?limit=2", h)["total"] == 6
    call(c, "DELETE", f"/api/v1/users/{u['userid']}", h)
    call(c, "DELETE", f"/api/v1/usergroups/{g['usrgrpid']}", h)
    ops = bearer(env, "ops")  # an admin, not a super admin
    error(c, "GET", "/api/v1/users", ops, None, 403, None)
    error(c, "POST", "/api/v1/usergroups", ops, {"name": "Mine"}, 403, None)


def test_templates_crud(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "ops")
    t = call(c, "POST", "/api/v1/templates", h, {"template": "Tpl App", "items": [{"key": "app.up"}]}, 201)["data"]
    tid = t["templateid"]
    assert t["items"][0]["key"] == "app.up" and t["linked_hosts"] == []
    t = call(c, "PATCH", f"/api/v1/templates/{tid}", h, {"description": "the app", "items": [
        {"key": "app.up"}, {"key": "app.queue", "value_type": "unsigned"}]})["data"]
    assert t["description"] == "the app" and len(t["items"]) == 2
    assert call(c, "GET", "/api/v1/templates?search=app", h)["data"][0]["items"] == 2
    error(c, "PATCH", f"/api/v1/templates/{tid}", h, {"items": [{"key": "bad key["}]}, 400, "items[0].key")
    error(c, "POST", "/api/v1/templates", h, {"template": "web-01"}, 400, "template")
    error(c, "POST", "/api/v1/templates", h, {"template": ""}, 400, "template")
    call(c, "DELETE", f"/api/v1/templates/{tid}", h)
    error(c, "GET", f"/api/v1/templates/{tid}", h, None, 404, "templateid")


def test_tokens_created_once_listed_and_revoked(env: Env) -> None:
    c, h = env.app.test_client(), bearer(env, "viewer")
    t = call(c, "POST", "/api/v1/tokens", h, {"name": "ci", "expires_days": 7}, 201)["data"]
    secret = t["token"]
    assert len(secret) == 64 and t["expires_at"] > 0
    listed = call(c, "GET", "/api/v1/tokens", h)["data"]
    assert "ci" in [x["name"] for x in listed] and all("token" not in x for x in listed)
    mine = {"Authorization": f"Bearer {secret}"}
    assert call(c, "GET", "/api/v1/me", mine)["data"]["username"] == "viewer"
    error(c, "POST", "/api/v1/tokens", h, {"name": "ci"}, 400, "name")  # a duplicate
    error(c, "POST", "/api/v1/tokens", h, {"name": "x", "expires_days": 0}, 400, "expires_days")
    error(c, "GET", "/api/v1/tokens?all=1", h, None, 403, "userid")
    call(c, "DELETE", f"/api/v1/tokens/{t['tokenid']}", h)
    error(c, "GET", "/api/v1/me", mine, None, 401, "Authorization")
    other = env.users.by_name("ops").userid  # type: ignore[union-attr]
    error(c, "POST", "/api/v1/tokens", h, {"name": "theirs", "userid": other}, 403, "userid")
    assert len(call(c, "GET", "/api/v1/tokens?all=1", bearer(env, "admin"))["data"]) >= 2


def test_a_guest_and_a_user_change_no_configuration(env: Env) -> None:
    c = env.app.test_client()
    for user in ("guest", "viewer"):
        h = bearer(env, user)
        for path, body in (("/api/v1/mediatypes", MAIL), ("/api/v1/actions", ACTION), ("/api/v1/maintenances", MAINT),
                           ("/api/v1/templates", {"template": "T"}), ("/api/v1/usergroups", {"name": "G"})):
            error(c, "POST", path, h, body, 403, None)
        error(c, "GET", "/api/v1/mediatypes", h, None, 403, None)
    error(c, "POST", "/api/v1/tokens", bearer(env, "guest"), {"name": "g"}, 403, None)
    exported = env.repo.export()
    assert not any(k in exported for k in ("media_types", "actions", "maintenances")) and not exported.get("templates")


def test_a_signed_in_browser_needs_the_csrf_token(env: Env) -> None:
    from tests.web.conftest import form_token

    c = env.client("admin")
    r = c.post("/api/v1/mediatypes", json=MAIL)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "csrf_token"
    r = c.post("/api/v1/mediatypes", json=MAIL, headers={"X-CSRF-Token": form_token(c)})
    assert r.status_code == 201


def test_openapi_lists_the_configuration_paths(env: Env) -> None:
    doc = env.app.test_client().get("/api/v1/openapi.json").get_json()
    for p in ("/mediatypes", "/mediatypes/{mediatypeid}", "/mediatypes/{mediatypeid}/test", "/actions",
              "/actions/{actionid}", "/maintenances/{maintenanceid}", "/users/{userid}", "/usergroups",
              "/templates/{templateid}", "/tokens", "/tokens/{tokenid}"):
        assert p in doc["paths"], p
    assert set(doc["paths"]["/actions/{actionid}"]) == {"get", "patch", "delete"}
    # every route of the blueprint is documented
    routes = {str(r.rule)[len("/api/v1"):].replace("<int:", "{").replace(">", "}")
              for r in env.app.url_map.iter_rules() if str(r.rule).startswith("/api/v1/")}
    assert routes - set(doc["paths"]) - {"/openapi.json"} == set()
