"""A host's items: edit (only the form's fields change) and delete; templates: a template's page with
items and triggers, linked and unlinked from the host form."""

from __future__ import annotations

import pytest
from vigil.server.config.model import doc_from_dict

from tests.web.conftest import Env, form_token

TEMPLATE = {"templates": [{"template": "Tpl Web", "items": [{"key": "http.up", "name": "HTTP up"}],
                           "triggers": [{"name": "Site down", "expression": "last(/Tpl Web/http.up)=0",
                                         "severity": "high"}]}]}


def post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c), **data})


def item_doc(env: Env, host: str, key: str) -> dict:
    h = next(x for x in env.repo.export()["hosts"] if x["host"] == host)
    return next(i for i in h.get("items", []) if i["key"] == key)


FORM = {"key": "cpu.util", "name": "CPU busy", "type": "trapper", "value_type": "float", "units": "%",
        "delay": "1m", "history": "7d", "trends": "365d", "tags": "component=cpu\nteam=web", "description": ""}


def test_edit_an_item_keeps_what_the_form_does_not_show(env: Env) -> None:
    env.repo.apply(doc_from_dict({"hosts": [{"host": "web-01", "groups": ["Linux servers"], "items": [
        {"key": "cpu.util", "name": "CPU utilization", "units": "%", "tags": {"component": "cpu"},
         "preprocessing": [{"type": "multiplier", "params": ["100"]}]}]}]}))
    c = env.client("ops")
    web, cpu = env.hostid("web-01"), env.itemid("web-01", "cpu.util")
    assert f"/config/hosts/{web}/items/{cpu}" in c.get(f"/hosts/{web}").get_data(as_text=True)
    assert 'value="CPU utilization"' in c.get(f"/config/hosts/{web}/items/{cpu}").get_data(as_text=True)
    r = post(c, f"/config/hosts/{web}/items/{cpu}", FORM)
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    it = item_doc(env, "web-01", "cpu.util")
    assert it["name"] == "CPU busy" and it["history"] == "7d"
    assert it["tags"] == [{"tag": "component", "value": "cpu"}, {"tag": "team", "value": "web"}]
    assert it["preprocessing"][0]["type"] == "multiplier"
    assert env.itemid("web-01", "cpu.util") == cpu  # the same item, its history kept


@pytest.mark.parametrize("change, field", [({"delay": "every so often"}, "delay"), ({"history": "1y1"}, "history"),
                                           ({"key": "other.key"}, "key"), ({"name": "n" * 300}, "name"),
                                           ({"tags": "=x"}, "tags"), ({"value_type": "colour"}, "value_type")])
def test_garbage_in_an_item_edit_changes_nothing(env: Env, change: dict, field: str) -> None:
    c = env.client("admin")
    web, cpu = env.hostid("web-01"), env.itemid("web-01", "cpu.util")
    before = item_doc(env, "web-01", "cpu.util")
    r = post(c, f"/config/hosts/{web}/items/{cpu}", {**FORM, **change})
    assert r.status_code == 400 and f'id="err-{field}"' in r.get_data(as_text=True), r.get_data(as_text=True)[-1500:]
    assert item_doc(env, "web-01", "cpu.util") == before


def test_delete_an_item_and_rights(env: Env) -> None:
    web, ver = env.hostid("web-01"), env.itemid("web-01", "app.version")
    secret = env.hostid("db-secret")
    for user in ("viewer", "guest"):
        assert post(env.client(user), f"/config/hosts/{web}/items/{ver}/delete", {}).status_code == 403
    c = env.client("ops")
    sid = env.itemid("db-secret", "cpu.util")
    assert c.get(f"/config/hosts/{secret}/items/{sid}").status_code == 403
    assert c.get(f"/config/hosts/{web}/items/{sid}").status_code == 404  # not an item of that host
    assert c.post(f"/config/hosts/{web}/items/{ver}/delete").status_code == 400  # no CSRF token
    assert post(c, f"/config/hosts/{web}/items/{ver}/delete", {}).status_code == 302
    assert env.repo.item("web-01", "app.version") is None


def test_template_page_and_link_unlink_from_the_host_form(env: Env) -> None:
    env.repo.apply(doc_from_dict(TEMPLATE))
    c = env.client("admin")
    templates = c.get("/config/templates").get_data(as_text=True)
    tid = int(templates.split("/config/templates/")[1].split('"')[0])
    page = c.get(f"/config/templates/{tid}").get_data(as_text=True)
    assert "HTTP up" in page and "Site down" in page and "last(/Tpl Web/http.up)=0" in page
    web = env.hostid("web-01")
    host = {"host": "web-01", "name": "Web 01", "groups": "Linux servers", "port": "10050", "enabled": "1"}
    r = post(c, f"/config/hosts/{web}", {**host, "templates": "Tpl Web"})
    assert r.status_code == 302, r.get_data(as_text=True)[-1500:]
    assert env.repo.item("web-01", "http.up") is not None
    assert "Web 01" in c.get(f"/config/templates/{tid}").get_data(as_text=True) or \
        "web-01" in c.get(f"/config/templates/{tid}").get_data(as_text=True)
    # a templated item is changed in the template, not on the host
    hid_item = env.itemid("web-01", "http.up")
    assert c.get(f"/config/hosts/{web}/items/{hid_item}").status_code == 409
    r = post(c, f"/config/hosts/{web}", host)
    assert r.status_code == 302 and env.repo.item("web-01", "http.up") is None
    assert c.get("/config/templates/999999").status_code == 404


HOST = {"host": "web-01", "name": "Web 01", "groups": "Linux servers", "port": "10050", "enabled": "1"}


def test_host_tags_in_the_host_form_the_export_and_the_api(env: Env) -> None:
    c = env.client("ops")
    web = env.hostid("web-01")
    r = post(c, f"/config/hosts/{web}", {**HOST, "tags": "env=prod\nservice=shop\nowner"})
    assert r.status_code == 302, r.get_data(as_text=True)[-1500:]
    h = next(x for x in env.repo.export()["hosts"] if x["host"] == "web-01")
    assert h["tags"] == [{"tag": "env", "value": "prod"}, {"tag": "service", "value": "shop"},
                         {"tag": "owner", "value": ""}]
    assert "env=prod" in c.get(f"/config/hosts/{web}").get_data(as_text=True)
    assert "service: shop" in c.get(f"/hosts/{web}").get_data(as_text=True)
    for bad in ("=nameless", "x" * 300 + "=v", "k=" + "v" * 300):
        r = post(c, f"/config/hosts/{web}", {**HOST, "tags": bad})
        assert r.status_code == 400 and 'id="err-tags"' in r.get_data(as_text=True)
    assert len(next(x for x in env.repo.export()["hosts"] if x["host"] == "web-01")["tags"]) == 3
    from tests.web.test_api import bearer

    api, h2 = env.app.test_client(), bearer(env, "ops")
    r = api.patch(f"/api/v1/hosts/{web}", json={"tags": [{"tag": "env", "value": "staging"}]}, headers=h2)
    assert r.status_code == 200 and r.get_json()["data"]["tags"] == [{"tag": "env", "value": "staging"}]
    r = api.patch(f"/api/v1/hosts/{web}", json={"tags": "nonsense"}, headers=h2)
    assert r.status_code == 200  # a TAG=VALUE line: the tag 'nonsense' with no value
    r = api.patch(f"/api/v1/hosts/{web}", json={"tags": [{"value": "x"}]}, headers=h2)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "tags"
    # a host untouched by the form keeps its tags when an import does not name them
    env.repo.apply(doc_from_dict({"hosts": [{"host": "web-01", "groups": ["Linux servers"]}]}))
    assert env.app.test_client().get(f"/api/v1/hosts/{web}", headers=h2).get_json()["data"]["tags"] == [
        {"tag": "nonsense", "value": ""}]
