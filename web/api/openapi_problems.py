"""The OpenAPI paths of triggers, problems and events, added to the document by openapi.document()."""

from __future__ import annotations

from typing import Any

from vigil.web.api.openapi import ERROR, PAGE, RANGE, _get, _param

PROBLEM_FILTERS = [
    _param("severity", "only these severities, 0-5 or names (repeat)"), _param("hostid", "hosts (repeat)"),
    _param("groupid", "host group", "integer"), _param("triggerid", "one trigger", "integer"),
    _param("tag", "TAG or TAG=VALUE"), _param("name", "in the problem name"),
    _param("age", "started at most this long ago (30m, 2h, 7d)"), _param("ack", "yes or no"),
    _param("show", "problems (open, default), recent (and resolved in the last hour) or history (from/to)"),
    *RANGE, _param("sort", "clock, severity, host, name or duration"), _param("desc", "1 (default) or 0"), *PAGE]
TRIGGER_FILTERS = [_param("hostid", "hosts (repeat)"), _param("groupid", "host group", "integer"),
                   _param("search", "in name or expression"), _param("severity", "severities (repeat)"),
                   _param("status", "enabled or disabled"), _param("value", "problem or ok"),
                   _param("sort", "name, severity, status or value"), *PAGE]


def _post(summary: str, schema: str, params: list[dict[str, Any]] | None = None, created: bool = False) -> dict:
    return {"summary": summary, "parameters": params or [],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
            "responses": {"201" if created else "200": {"description": "done"}, "400": ERROR, "401": ERROR,
                          "403": ERROR, "404": ERROR}}


def add(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    tid = _param("triggerid", "trigger id", "integer", "path")
    eid = _param("eventid", "event id", "integer", "path")
    paths["/problems"] = _get("problems the caller may read, with the Problems page's filters", PROBLEM_FILTERS,
                              "List")
    for action, what in (("acknowledge", "acknowledge (with an optional message)"),
                         ("comment", "add a message"), ("severity", "change the severity"),
                         ("close", "close (only problems whose trigger allows manual close)"),
                         ("update", "any of acknowledge, unacknowledge, message, severity, close at once")):
        paths[f"/problems/{action}"] = {"post": _post(f"{what}: every problem is checked before any changes "
                                                      "(read-write rights to its hosts; not a guest)", "ProblemUpdate")}
    paths["/events"] = _get("trigger events (problem and OK), newest first",
                            [_param("triggerid", "one trigger", "integer"), _param("hostid", "hosts (repeat)"),
                             _param("value", "problem or ok"), *RANGE, *PAGE], "List")
    paths["/events/{eventid}"] = _get("one event with its updates and the alerts sent", [eid])
    paths["/triggers"] = _get("triggers of hosts the caller may read, with their state", TRIGGER_FILTERS, "List")
    paths["/triggers"]["post"] = _post("create a trigger (admin, read-write rights to the host)", "TriggerIn",
                                       created=True)
    paths["/triggers/{triggerid}"] = _get("one trigger, whether it would fire now, its recent problems", [tid])
    paths["/triggers/{triggerid}"]["patch"] = _post("change some fields of a trigger", "TriggerIn", [tid])
    paths["/triggers/{triggerid}"]["delete"] = {"summary": "delete a trigger", "parameters": [tid],
                                                "responses": {"200": {"description": "deleted"}, "401": ERROR,
                                                              "403": ERROR, "404": ERROR}}
    paths["/triggers/check"] = {"post": _post("would this expression fire now on this host? (a parse error names "
                                              "its position)", "TriggerCheck")}
    schemas["ProblemUpdate"] = {"type": "object", "required": ["eventids"], "properties": {
        "eventids": {"type": "array", "items": {"type": "integer"}}, "message": {"type": "string"},
        "severity": {"type": ["integer", "string"]}, "acknowledge": {"type": "boolean"},
        "unacknowledge": {"type": "boolean"}, "close": {"type": "boolean"}}}
    schemas["TriggerIn"] = {"type": "object", "required": ["hostid", "name", "expression"], "properties": {
        "hostid": {"type": "integer"}, "name": {"type": "string"}, "expression": {"type": "string"},
        "recovery": {"enum": ["expression", "recovery_expression", "none"]},
        "recovery_expression": {"type": "string"}, "severity": {"type": ["integer", "string"]},
        "multiple": {"type": "boolean"}, "manual_close": {"type": "boolean"},
        "status": {"enum": ["enabled", "disabled"]}, "description": {"type": "string"},
        "opdata": {"type": "string"}, "dependencies": {"type": "array", "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "object"}}}}
    schemas["TriggerCheck"] = {"type": "object", "required": ["hostid", "expression"], "properties": {
        "hostid": {"type": "integer"}, "expression": {"type": "string"}}}
