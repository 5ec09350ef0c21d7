"""The templates' cached url_for gives exactly what Flask's url_for gives, for every route."""

from __future__ import annotations

import pytest
from flask import Flask, url_for
from vigil.web.urls import fast_url_for

from tests.web.conftest import Env


def _cases(app: Flask) -> list[tuple[str, dict]]:
    cases = []
    for rule in app.url_map.iter_rules():
        path_args = sorted(rule.arguments)
        for n in (0, 1, 7, 123456):
            cases.append((rule.endpoint, {a: n + i for i, a in enumerate(path_args)}))
            cases.append((rule.endpoint, {**{a: n for a in path_args}, "page": n + 2, "hostid": 5}))
    return cases


def test_same_urls_as_flask(env: Env) -> None:
    app = env.app
    with app.test_request_context("/"):
        cases = _cases(app)
        assert len(cases) > 100
        for endpoint, values in cases * 2:  # the second round comes from the cache
            assert fast_url_for(endpoint, **values) == url_for(endpoint, **values), (endpoint, values)
        # text and lists in the query string, encoded as werkzeug does; what the cache leaves to Flask:
        # None, flags, negative numbers, anchors, empty lists
        for values in ({"hostid": 3, "from": "now-1h"}, {"itemid": [1, 2], "to": "now"}, {"itemid": [7]},
                       {"tag": "a b&c=d/é?+%", "page": 2}, {"tag": ["x y", 3, "ü"]}, {"search": ""},
                       {"_anchor": "x", "hostid": 1}, {"hostid": -1}, {"hostid": True}, {"hostid": None},
                       {"itemid": []}, {"hostid": 1.5}):
            for endpoint in ("latest.index", "graphs.index", "hosts.host", "problems.event"):
                try:
                    want = url_for(endpoint, **values)
                except Exception as e:  # noqa: BLE001 - a path part that does not take the value
                    with pytest.raises(type(e)):
                        fast_url_for(endpoint, **values)
                else:
                    assert fast_url_for(endpoint, **values) == want, (endpoint, values)
    with app.test_request_context("/", environ_overrides={"SCRIPT_NAME": "/vigil"}):
        assert fast_url_for("hosts.host", hostid=9) == url_for("hosts.host", hostid=9) == "/vigil/hosts/9"


def test_templates_use_it(env: Env) -> None:
    assert env.app.jinja_env.globals["url_for"] is fast_url_for

