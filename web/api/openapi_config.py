"""The OpenAPI paths of web/api/config_api.py: media types, actions, maintenances, users, user groups,
templates and tokens. Bodies are configuration-document entries (docs/config-format.md)."""

from __future__ import annotations

from typing import Any

from vigil.web.api.openapi import ERROR, PAGE, _param

ENTRY = {"type": "object", "description": "an entry of the configuration document (docs/config-format.md)"}


def _body(desc: str = "") -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {**ENTRY, "description": desc or
                                                                          ENTRY["description"]}}}}


def _ok(desc: str, code: str = "200") -> dict[str, Any]:
    return {code: {"description": desc}, "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR}


def _crud(base: str, idname: str, what: str, filters: list[dict[str, Any]], section: str) -> dict[str, Any]:
    pid = _param(idname, f"{what} id", "integer", "path")
    body = _body(f"a `{section}` entry of the configuration document")
    return {
        base: {"get": {"summary": f"{what}s", "parameters": [_param("search", "in the name"), *filters, *PAGE],
                       "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                           "$ref": "#/components/schemas/List"}}}}, "400": ERROR, "401": ERROR, "403": ERROR}},
               "post": {"summary": f"create a {what}", "requestBody": body, "responses": _ok("created", "201")}},
        f"{base}/{{{idname}}}": {
            "get": {"summary": f"one {what}", "parameters": [pid], "responses": _ok("OK")},
            "patch": {"summary": f"change some fields of a {what} (the others keep their values)", "parameters": [pid],
                      "requestBody": body, "responses": _ok("changed")},
            "delete": {"summary": f"delete a {what}", "parameters": [pid], "responses": _ok("deleted")}},
    }


def config_paths() -> dict[str, Any]:
    status = _param("status", "enabled or disabled")
    paths: dict[str, Any] = {}
    paths.update(_crud("/mediatypes", "mediatypeid", "media type", [status, _param("type", "email, script or webhook")],
                       "media_types"))
    paths["/mediatypes/{mediatypeid}/test"] = {"post": {
        "summary": "send one test message now through the media type; 502 delivery_failed with the answer",
        "parameters": [_param("mediatypeid", "media type id", "integer", "path")],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["sendto"],
                                                                    "properties": {"sendto": {"type": "string"},
                                                                                   "subject": {"type": "string"},
                                                                                   "message": {"type": "string"}}}}}},
        "responses": {**_ok("sent"), "502": ERROR}}}
    paths.update(_crud("/actions", "actionid", "action", [status], "actions"))
    paths.update(_crud("/maintenances", "maintenanceid", "maintenance", [], "maintenances"))
    paths.update(_crud("/users", "userid", "user", [_param("role", "user, admin, super admin or guest")], "users"))
    paths["/users"]["post"]["summary"] = "create a user (super admin): a users entry with password"
    paths["/users/{userid}/unlock"] = {"post": {"summary": "forget the user's failed sign-ins",
                                                "parameters": [_param("userid", "user id", "integer", "path")],
                                                "responses": _ok("unlocked")}}
    paths.update(_crud("/usergroups", "usrgrpid", "user group", [], "user_groups"))
    paths["/usergroups"]["post"]["requestBody"] = _body(
        '{"name", "rights": [{"groupid" or "name", "permission": "deny" | "read" | "read-write"}]}')
    paths.update(_crud("/templates", "templateid", "template", [], "templates"))
    paths["/tokens"] = {
        "get": {"summary": "the caller's API tokens (super admin: ?userid=N or ?all=1)",
                "parameters": [_param("userid", "another user's (super admin)", "integer"),
                               _param("all", "1: everyone's (super admin)"), *PAGE],
                "responses": _ok("OK")},
        "post": {"summary": "create a token; the answer's `token` is the secret, shown this once",
                 "requestBody": _body('{"name", "expires_days"?, "userid"? (super admin)}'),
                 "responses": _ok("created", "201")}}
    paths["/tokens/{tokenid}"] = {"delete": {"summary": "revoke a token",
                                             "parameters": [_param("tokenid", "token id", "integer", "path")],
                                             "responses": _ok("revoked")}}
    return paths
