"""Configuration → Actions: conditions, escalation steps, recovery and update operations through the form
(seen by `config export`), garbage refused field by field with nothing changed, rights and CSRF."""

from __future__ import annotations

import pytest
from vigil.server.config.model import doc_from_dict

from tests.web.conftest import Env, form_token

BASE = {"name": "Page on-call", "enabled": "1", "evaltype": "and/or", "step_duration": "30m",
        "pause_suppressed": "1",
        "conditions-0-type": "severity", "conditions-0-operator": ">=", "conditions-0-value": "high",
        "conditions-1-type": "host_group", "conditions-1-value": "Linux servers",
        "conditions-2-type": "tag_value", "conditions-2-value": "cpu", "conditions-2-value2": "component",
        "conditions-3-type": "maintenance", "conditions-3-operator": "no",
        "operations-0-users": "ops", "operations-0-media_type": "Mail", "operations-0-step_from": "1",
        "operations-0-step_to": "2", "operations-0-step_duration": "0",
        "operations-1-groups": "Operators", "operations-1-step_from": "3", "operations-1-step_to": "0",
        "operations-1-step_duration": "2h", "operations-1-subject": "Still: {EVENT.NAME}",
        "recovery_operations-0-users": "ops", "update_operations-0-groups": "Operators"}


@pytest.fixture
def mail(env: Env) -> None:
    env.repo.apply(doc_from_dict({"media_types": [{"name": "Mail", "type": "email", "smtp_server": "localhost",
                                                   "smtp_email": "v@example.com"}]}))


def post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/config/actions/new"), **data})


def actions(env: Env) -> list[dict]:
    return env.repo.export().get("actions", [])


def test_create_an_action_and_edit_it(env: Env, mail: None) -> None:
    c = env.client("ops")
    r = post(c, "/config/actions/new", BASE)
    assert r.status_code == 302, r.get_data(as_text=True)[-3000:]
    [a] = actions(env)
    assert a["name"] == "Page on-call" and a["step_duration"] == "30m"
    assert a["conditions"] == [{"type": "severity", "operator": ">=", "value": "high"},
                               {"type": "host_group", "value": "Linux servers"},
                               {"type": "tag_value", "value": "cpu", "value2": "component"},
                               {"type": "maintenance", "operator": "no"}]
    assert a["operations"] == [
        {"step_from": 1, "step_to": 2, "send_to_users": ["ops"], "media_type": "Mail"},
        {"step_from": 3, "step_to": 0, "step_duration": "2h", "send_to_groups": ["Operators"],
         "subject": "Still: {EVENT.NAME}"}]
    assert a["recovery_operations"] == [{"send_to_users": ["ops"]}]
    assert a["update_operations"] == [{"send_to_groups": ["Operators"]}]
    aid = int(r.headers["Location"].rsplit("/", 1)[1])
    text = c.get(f"/config/actions/{aid}").get_data(as_text=True)
    assert 'value="Linux servers"' in text and "Still: {EVENT.NAME}" in text
    listing = c.get("/config/actions").get_data(as_text=True)
    assert "severity &gt;= high" in listing and "Send message to ops via Mail" in listing
    edited = {k: v for k, v in BASE.items() if not k.startswith(("conditions-1", "conditions-2", "conditions-3"))}
    r = post(c, f"/config/actions/{aid}", {**edited, "name": "Page the team", "evaltype": "or"})
    assert r.status_code == 302
    [a] = actions(env)
    assert a["name"] == "Page the team" and a["evaltype"] == "or" and len(a["conditions"]) == 1
    r = post(c, "/config/actions/delete", {"actionid": str(aid), "action": "disable"})
    assert actions(env)[0]["status"] == "disabled"
    r = post(c, "/config/actions/delete", {"actionid": str(aid), "action": "delete"})
    assert r.status_code == 302 and actions(env) == []


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"), ({"name": "<script>x</script>"}, "name"), ({"name": "n" * 300}, "name"),
    ({"step_duration": "5s"}, "step_duration"), ({"step_duration": "soon"}, "step_duration"),
    ({"evaltype": "xor"}, "evaltype"),
    ({"conditions-1-value": "No such group"}, "conditions-1"), ({"conditions-0-value": "apocalyptic"}, "conditions-0"),
    ({"conditions-0-operator": "contains"}, "conditions-0"), ({"conditions-2-value2": ""}, "conditions-2"),
    ({"operations-0-step_from": "x"}, "operations-0"), ({"operations-0-step_to": "0", "operations-0-step_from": "5",
                                                         "operations-1-step_from": "1"}, None),
    ({"operations-1-step_duration": "10s"}, "operations-1"), ({"operations-0-media_type": "Carrier pigeon"},
                                                               "operations-0"),
    ({"operations-0-users": "ghost"}, "operations-0"),
])
def test_garbage_is_refused_and_changes_nothing(env: Env, mail: None, change: dict, field: str | None) -> None:
    c = env.client("admin")
    r = post(c, "/config/actions/new", {**BASE, **change})
    if field is None:  # a valid variant: step 5 onwards
        assert r.status_code == 302
        return
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and f'id="err-{field}"' in text, text[-2500:]
    assert "<script>x</script>" not in text
    assert actions(env) == []


def test_an_action_needs_operations_and_a_unique_name(env: Env, mail: None) -> None:
    c = env.client("admin")
    bare = {k: v for k, v in BASE.items() if "operations" not in k}
    r = post(c, "/config/actions/new", bare)
    assert r.status_code == 400 and 'id="err-operations"' in r.get_data(as_text=True)
    assert post(c, "/config/actions/new", BASE).status_code == 302
    r = post(c, "/config/actions/new", BASE)
    assert r.status_code == 400 and 'id="err-name"' in r.get_data(as_text=True)
    assert len(actions(env)) == 1


def test_only_admins_change_actions_and_csrf_is_required(env: Env, mail: None) -> None:
    for user in ("guest", "viewer"):
        c = env.client(user)
        assert c.get("/config/actions").status_code == 403
        assert c.post("/config/actions/new", data={"csrf_token": form_token(c), **BASE}).status_code == 403
    c = env.client("admin")
    assert c.post("/config/actions/new", data=BASE).status_code == 400
    assert c.get("/config/actions").status_code == 200 and actions(env) == []
