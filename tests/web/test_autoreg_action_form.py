"""Configuration → Actions for autoregistration: the event source choice, host-name / metadata / proxy
conditions and the host operations through the form (seen by `config export`), and refusals shown."""

from __future__ import annotations

import pytest
from vigil.server.config.model import doc_from_dict

from tests.web.conftest import Env, form_token

FORM = {"name": "Register web", "enabled": "1", "event_source": "autoregistration", "evaltype": "and",
        "conditions-0-type": "host_metadata", "conditions-0-value": "web",
        "conditions-1-type": "host_name", "conditions-1-operator": "matches", "conditions-1-value": "^web-",
        "conditions-2-type": "proxy", "conditions-2-value": "branch",
        "operations-0-users": "ops", "operations-0-subject": "Registered {HOST.HOST}",
        "host-add_host": "1", "host-add_to_groups": "Web servers, Linux servers", "host-link_templates": "Web tpl",
        "host-add_host_tags": "role:web, autoreg", "host-status": "disable_host"}


@pytest.fixture
def setup(env: Env) -> None:
    env.repo.apply(doc_from_dict({"proxies": [{"name": "branch", "mode": "active"}],
                                  "templates": [{"template": "Web tpl", "items": []}]}))


def post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/config/actions/new"), **data})


def test_an_autoregistration_action_through_the_form(env: Env, setup: None) -> None:
    c = env.client("ops")
    r = post(c, "/config/actions/new", FORM)
    assert r.status_code == 302, r.get_data(as_text=True)[-3000:]
    [a] = env.repo.export()["actions"]
    assert a["event_source"] == "autoregistration" and a["evaltype"] == "and"
    assert a["conditions"] == [{"type": "host_metadata", "value": "web"},
                               {"type": "host_name", "operator": "matches", "value": "^web-"},
                               {"type": "proxy", "value": "branch"}]
    assert a["operations"] == [{"send_to_users": ["ops"], "subject": "Registered {HOST.HOST}"}, {"add_host": True},
                               {"add_to_groups": ["Linux servers", "Web servers"]}, {"link_templates": ["Web tpl"]},
                               {"add_host_tags": [{"tag": "role", "value": "web"}, {"tag": "autoreg", "value": ""}]},
                               {"disable_host": True}]
    aid = int(r.headers["Location"].rsplit("/", 1)[1])
    text = c.get(f"/config/actions/{aid}").get_data(as_text=True)
    assert '<option value="autoregistration" selected>' in text
    assert 'value="Linux servers, Web servers"' in text and 'value="role:web, autoreg"' in text
    assert '<option value="disable_host" selected>' in text
    listing = c.get("/config/actions").get_data(as_text=True)
    assert "host metadata contains web" in listing and "Link templates Web tpl" in listing
    assert "Add host tags role:web, autoreg:" in listing and "Disable host" in listing
    # Saved again unchanged from what the form shows: the same action.
    r = post(c, f"/config/actions/{aid}", FORM)
    assert r.status_code == 302 and env.repo.export()["actions"] == [a]


@pytest.mark.parametrize(("change", "shown"), [
    ({"conditions-1-value": "(x"}, "is not a regular expression"),
    ({"conditions-2-value": "nowhere"}, "no proxy named"),
    ({"host-link_templates": "No such template"}, "no template named"),
    ({"conditions-0-type": "severity", "conditions-0-value": "high"}, "is not a condition of an autoregistration"),
    ({"event_source": "triggers"}, "is not a condition of a triggers action"),
])
def test_bad_autoregistration_forms_are_refused_and_shown(env: Env, setup: None, change: dict, shown: str) -> None:
    c = env.client("ops")
    r = post(c, "/config/actions/new", {**FORM, **change})
    assert r.status_code == 400
    assert shown in r.get_data(as_text=True)
    assert env.repo.export().get("actions", []) == []
