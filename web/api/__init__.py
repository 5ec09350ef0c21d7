"""The JSON API under /api/v1: hosts, host groups, items, history, trends, latest values, graph data.

Lists answer {"data": [...], "total", "limit", "offset"}; errors {"error": {"code", "message", "field"}}.
Send `Authorization: Bearer TOKEN` (`vigil token create USER`), or call it from a signed-in page.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request
from vigil.server.config.browse import HostRow, ItemRow
from vigil.server.config.tables import HostStatus, ValueType
from vigil.web import auth, charts, data
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import FormErrors, parse_host, save_host
from vigil.web.params import ids_arg, int_arg, tag_arg, text_arg, time_range

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 1000


def _page() -> tuple[int, int]:
    limit = int_arg(request.args, "limit", 100, 1, MAX_LIMIT)
    offset = int_arg(request.args, "offset", 0, 0, 2**31 - 1)
    assert limit is not None and offset is not None
    return limit, offset


def _listing(rows: list[dict], total: int, limit: int, offset: int) -> Any:
    return jsonify({"data": rows, "total": total, "limit": limit, "offset": offset})


def host_json(h: HostRow) -> dict:
    return {"hostid": h.hostid, "host": h.host, "name": h.name, "status": "enabled" if h.enabled else "disabled",
            "description": h.description, "groups": [{"groupid": g, "name": n} for g, n in h.groups],
            "templates": list(h.templates), "items": h.items,
            "available": ["unknown", "available", "unavailable"][h.available]}


def item_json(i: ItemRow) -> dict:
    return {"itemid": i.itemid, "hostid": i.hostid, "host": i.host, "key": i.key, "name": i.name,
            "type": i.type.name.lower(), "value_type": i.value_type.name.lower(), "units": i.units,
            "delay": i.delay, "status": "enabled" if i.status == 0 else "disabled", "templated": i.templated,
            "tags": [{"tag": k, "value": v} for k, v in i.tags]}


@bp.errorhandler(FormErrors)
def form_errors(e: FormErrors) -> Any:
    name, msg = next(iter(e.errors.items()))
    return jsonify({"error": {"code": "invalid", "message": f"{name}: {msg}", "field": name,
                              "fields": e.errors}}), 400


@bp.get("/me")
def me() -> Any:
    u = auth.current_user()
    return jsonify({"data": {"userid": u.userid, "username": u.username, "role": u.role_label}})


@bp.get("/hostgroups")
def hostgroups() -> Any:
    rows = services().browse.host_groups(auth.scope())
    return _listing([{"groupid": g, "name": n} for g, n in rows], len(rows), len(rows), 0)


@bp.get("/hosts")
def hosts() -> Any:
    limit, offset = _page()
    status = text_arg(request.args, "status")
    if status not in ("", "enabled", "disabled"):
        raise WebError(f"status: enabled or disabled, got {status[:40]!r}", "status")
    page = services().browse.hosts(
        auth.scope(), search=text_arg(request.args, "search"),
        groupid=int_arg(request.args, "groupid", None, 1, 2**31 - 1),
        status=None if not status else int(HostStatus.MONITORED if status == "enabled" else HostStatus.DISABLED),
        limit=limit, offset=offset)
    ids = [h.hostid for h in page.rows]
    proxies = services().repo.host_proxy_names(ids) if ids else {}
    groups = services().repo.host_proxy_group_names(ids) if ids else {}
    return _listing([{**host_json(h), "proxy": proxies.get(h.hostid, ""), "proxy_group": groups.get(h.hostid, "")}
                     for h in page.rows], page.total, limit, offset)


@bp.get("/hosts/<int:hostid>")
def host(hostid: int) -> Any:
    auth.require_host(hostid)
    d = services().browse.host(hostid)
    if d is None:
        raise NotFound(f"hostid: no host {hostid}", "hostid")
    out = host_json(d.row)
    out["macros"] = d.macros
    out["tags"] = [{"tag": k, "value": v} for k, v in services().browse.host_tags(hostid)]
    out["interfaces"] = [{"type": t, "ip": ip, "dns": dns, "port": port} for t, ip, dns, port in d.interfaces]
    out["proxy"] = services().repo.host_proxy_names([hostid]).get(hostid, "")
    out["proxy_group"] = services().repo.host_proxy_group_names([hostid]).get(hostid, "")
    return jsonify({"data": out})


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise WebError("body: expected a JSON object (Content-Type: application/json)", "body")
    return body


@bp.post("/hosts")
def create_host() -> Any:
    auth.require_configure()
    svc = services()
    form, errors = parse_host(_json_body())
    if errors:
        raise FormErrors(errors)
    ids = {n: g for g, n in svc.browse.host_groups()}
    auth.require_groups_writable([ids[g] for g in form.groups if g in ids])
    hostid = save_host(svc.repo, svc.browse, form, None, may_create_groups=auth.current_user().is_super_admin)
    resp = host(hostid)
    resp.status_code = 201
    return resp


@bp.patch("/hosts/<int:hostid>")
def update_host(hostid: int) -> Any:
    """Change some of a host's fields; the others keep their values (groups, templates, macros replace)."""
    auth.require_host(hostid, write=True)
    svc = services()
    d = svc.browse.host(hostid)
    assert d is not None
    body = _json_body()
    unknown = sorted(set(body) - {"host", "name", "groups", "templates", "macros", "description", "status",
                                  "ip", "dns", "port", "tags", "proxy", "proxy_group"})
    if unknown:
        raise WebError(f"{unknown[0]}: not a host field", unknown[0])
    agent = next((i for i in d.interfaces if i[0] == 1), (1, "", "", "10050"))
    merged = {"host": d.row.host, "name": d.row.name if d.row.name != d.row.host else "",
              "groups": [n for _, n in d.row.groups], "templates": list(d.row.templates), "macros": d.macros,
              "description": d.row.description, "status": "enabled" if d.row.enabled else "disabled",
              "ip": agent[1], "dns": agent[2], "port": agent[3],
              "tags": [{"tag": k, "value": v} for k, v in svc.browse.host_tags(hostid)], **body}
    form, errors = parse_host(merged)
    if errors:
        raise FormErrors(errors)
    ids = {n: g for g, n in svc.browse.host_groups()}
    auth.require_groups_writable([ids[g] for g in form.groups if g in ids])
    save_host(svc.repo, svc.browse, form, hostid, may_create_groups=auth.current_user().is_super_admin)
    return host(hostid)


@bp.delete("/hosts/<int:hostid>")
def delete_host(hostid: int) -> Any:
    auth.require_host(hostid, write=True)
    svc = services()
    d = svc.browse.host(hostid)
    assert d is not None
    svc.repo.delete_host(d.row.host)
    return jsonify({"data": {"hostid": hostid, "deleted": True}})


def _items_query(limit: int | None, offset: int) -> Any:
    args = request.args
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    host_name = text_arg(args, "host", 128)
    if host_name:
        hid = services().browse.host_id(host_name)
        hostids = (hostids or []) + [hid if hid is not None else -1]
    return services().browse.items(
        auth.scope(), hostids=hostids, groupid=int_arg(args, "groupid", None, 1, 2**31 - 1),
        search=text_arg(args, "search"), tag=tag_arg(args), itemids=ids_arg(args, "itemid", getlist=args.getlist),
        limit=limit, offset=offset)


@bp.get("/items")
def items() -> Any:
    limit, offset = _page()
    page = _items_query(limit, offset)
    return _listing([item_json(i) for i in page.rows], page.total, limit, offset)


def _item(itemid: int) -> ItemRow:
    it = services().browse.item(itemid)
    if it is None:
        raise NotFound(f"itemid: no item {itemid}", "itemid")
    auth.require_host(it.hostid)
    return it


@bp.get("/items/<int:itemid>")
def item(itemid: int) -> Any:
    return jsonify({"data": item_json(_item(itemid))})


@bp.get("/items/<int:itemid>/history")
def history(itemid: int) -> Any:
    it = _item(itemid)
    start, end, _, _ = time_range(request.args, time.time())
    limit = int_arg(request.args, "limit", 10000, 1, 100000)
    store = services().store
    if it.value_type == ValueType.LOG:
        rows = [{"clock": e.clock, "ns": e.ns, "value": e.value, "source": e.source, "severity": e.severity,
                 "timestamp": e.timestamp, "logeventid": e.logeventid}
                for e in store.log_history(itemid, start, end, limit)]
    else:
        rows = [{"clock": c, "ns": n, "value": v} for c, n, v in store.history(itemid, it.value_type, start, end,
                                                                               limit)]
    return jsonify({"data": rows, "itemid": itemid, "from": start, "to": end, "total": len(rows), "limit": limit})


@bp.get("/items/<int:itemid>/trends")
def trends(itemid: int) -> Any:
    it = _item(itemid)
    if it.value_type not in data.NUMERIC:
        raise WebError(f"itemid: item {itemid} holds {it.value_type.name.lower()} values, which have no trends",
                       "itemid")
    start, end, _, _ = time_range(request.args, time.time(), "now-7d")
    rows = [{"clock": t.clock, "num": t.num, "min": t.min, "avg": t.avg, "max": t.max}
            for t in services().store.trends(itemid, it.value_type, start, end)]
    return jsonify({"data": rows, "itemid": itemid, "from": start, "to": end, "total": len(rows)})


@bp.get("/latest")
def latest() -> Any:
    limit, offset = _page()
    page = _items_query(limit, offset)
    rows = data.latest(services().store, page.rows, int(time.time()), sparklines=False)
    return _listing([r.to_json() for r in rows], page.total, limit, offset)


@bp.get("/graph")
def graph() -> Any:
    """A Plotly figure of the items (?itemid=1&itemid=2) over ?from&to: history or trends, chosen by range."""
    ids = ids_arg(request.args, "itemid", getlist=request.args.getlist)
    if not ids:
        raise WebError("itemid: name at least one item (itemid=1&itemid=2)", "itemid")
    if len(ids) > 20:
        raise WebError("itemid: at most 20 items on one graph", "itemid")
    rows = [_item(i) for i in ids]
    start, end, _, _ = time_range(request.args, time.time())
    series, source = data.series(services().store, rows, start, end, services().browse)
    return jsonify({"data": charts.figure(series, start, end), "source": source, "from": start, "to": end})


@bp.get("/openapi.json")
def openapi() -> Any:
    from vigil.web.api.openapi import document

    return jsonify(document())


from vigil.web.api import checknow_api as _checknow  # noqa: E402,F401  (POST /items/…/check-now)
from vigil.web.api import config_api  # noqa: E402,F401  (its routes are on bp)
from vigil.web.api import problems as _problems  # noqa: E402,F401  (triggers, problems, events routes)
