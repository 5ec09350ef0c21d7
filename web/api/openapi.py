"""The OpenAPI 3.1 document of /api/v1, written out by hand next to the routes it describes."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/responses/Error"}


def _param(name: str, desc: str, kind: str = "string", where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": desc, "schema": {"type": kind}}


PAGE = [_param("limit", "at most this many rows (1-1000, default 100)", "integer"),
        _param("offset", "skip this many rows", "integer")]
RANGE = [_param("from", "start: unix seconds, now-1h, now-1d/d, or ISO time (default now-1h)"),
         _param("to", "end: as from (default now)")]
ITEMS = [_param("hostid", "only these hosts (repeat or comma-separated)"), _param("host", "host name"),
         _param("groupid", "host group", "integer"), _param("search", "in item name or key"),
         _param("tag", "TAG or TAG=VALUE"), *PAGE]


def _get(summary: str, params: list[dict[str, Any]], schema: str | None = None) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if schema:
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"get": {"summary": summary, "parameters": params,
                    "responses": {"200": ok, "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR}}}


def document() -> dict[str, Any]:
    host_id = _param("hostid", "host id", "integer", "path")
    item_id = _param("itemid", "item id", "integer", "path")
    paths: dict[str, Any] = {
        "/me": _get("the caller", []),
        "/hostgroups": _get("host groups the caller may read", [], "List"),
        "/hosts": _get("hosts the caller may read", [_param("search", "in host or visible name"),
                                                      _param("groupid", "host group", "integer"),
                                                      _param("status", "enabled or disabled"), *PAGE], "List"),
        "/hosts/{hostid}": _get("one host with macros, interfaces and its proxy", [host_id]),
        "/items": _get("items", ITEMS, "List"),
        "/items/{itemid}": _get("one item", [item_id]),
        "/items/{itemid}/history": _get("values, oldest first", [item_id, *RANGE,
                                                                 _param("limit", "at most (default 10000)",
                                                                        "integer")]),
        "/items/{itemid}/trends": _get("hourly min/avg/max/count", [item_id, *RANGE]),
        "/latest": _get("the newest value of each item", ITEMS, "List"),
        "/graph": _get("a Plotly figure; history for ranges up to 2 days, else trends",
                       [_param("itemid", "items (repeat, at most 20)"), *RANGE]),
    }
    paths["/hosts"]["post"] = {
        "summary": "create a host (admin with read-write rights on its groups)",
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HostIn"}}}},
        "responses": {"201": {"description": "created"}, "400": ERROR, "401": ERROR, "403": ERROR}}
    paths["/hosts/{hostid}"]["patch"] = {
        "summary": "change some fields of a host", "parameters": [host_id],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HostIn"}}}},
        "responses": {"200": {"description": "changed"}, "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR}}
    paths["/hosts/{hostid}"]["delete"] = {
        "summary": "delete a host with its items", "parameters": [host_id],
        "responses": {"200": {"description": "deleted"}, "401": ERROR, "403": ERROR, "404": ERROR}}
    accepted = {"202": {"description": "queued: the item is polled at once (its next value is the answer); "
                                      "data.taskids and data.items (itemid, host, key, by: server or proxy)"},
                "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR}
    paths["/items/{itemid}/check-now"] = {"post": {
        "summary": "execute now (Zabbix's check now): poll the item at once, by the server or the host's proxy; "
                   "a discovery rule runs its discovery. Only polled items (not trapper, active agent, SNMP "
                   "trap or dependent); needs read-write rights on the host",
        "parameters": [item_id], "responses": accepted}}
    paths["/items/check-now"] = {"post": {
        "summary": "execute now for several items, or every polled item a discovery rule discovered; the first "
                   "item refused is named and nothing is queued",
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckNowIn"}}}},
        "responses": accepted}}
    from vigil.web.api.openapi_config import config_paths

    paths.update(config_paths())
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Vigil API", "version": "1",
                 "description": "Send Authorization: Bearer TOKEN (vigil token create USER)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "List": {"type": "object", "properties": {"data": {"type": "array", "items": {"type": "object"}},
                                                          "total": {"type": "integer"},
                                                          "limit": {"type": "integer"},
                                                          "offset": {"type": "integer"}}},
                "Error": {"type": "object", "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "field": {"type": "string"}}}}},
                "CheckNowIn": {"type": "object", "properties": {
                    "itemids": {"type": "array", "items": {"type": "integer"}, "maxItems": 1000},
                    "discovered_by": {"type": "integer", "description": "a discovery rule's id: its items"}},
                    "description": "either itemids or discovered_by"},
                "HostIn": {"type": "object", "required": ["host", "groups"], "properties": {
                    "host": {"type": "string"}, "name": {"type": "string"},
                    "groups": {"type": "array", "items": {"type": "string"}},
                    "templates": {"type": "array", "items": {"type": "string"}},
                    "macros": {"type": "object"}, "description": {"type": "string"},
                    "status": {"enum": ["enabled", "disabled"]}, "ip": {"type": "string"},
                    "dns": {"type": "string"}, "port": {"type": "string"},
                    "proxy": {"type": "string", "description": "the name of the proxy monitoring the host "
                              "(Administration → Proxies); empty: the server itself; left out: unchanged"},
                    "proxy_group": {"type": "string", "description": "the proxy group monitoring the host "
                                    "(Administration → Proxy groups; its proxy is then the balancer's choice, "
                                    "read back as proxy); empty: none; left out: unchanged"},
                    "tags": {"type": "array", "items": {"type": "object", "properties": {
                        "tag": {"type": "string"}, "value": {"type": "string"}}}}}},
            },
            "responses": {"Error": {"description": "an error naming the field",
                                    "content": {"application/json": {"schema": {
                                        "$ref": "#/components/schemas/Error"}}}}},
        },
    }
    from vigil.web.api import openapi_problems

    openapi_problems.add(paths, doc["components"]["schemas"])
    return doc
