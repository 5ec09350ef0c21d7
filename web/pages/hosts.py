"""Hosts: the monitoring list, a host's page, and Configuration → Hosts (create, edit, delete, items)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.tables import HostStatus, Permission
from vigil.web import auth, csv_export, data, exports
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.forms import ITEM_FORM_FIELDS, FormErrors, HostForm, parse_host, save_host, save_item
from vigil.web.params import ids_arg, int_arg, text_arg

bp = Blueprint("hosts", __name__)
PAGE = 50


def _list(config: bool) -> Any:
    svc = services()
    args = request.args
    status = text_arg(args, "status")
    if status not in ("", "enabled", "disabled"):
        raise WebError(f"status: enabled or disabled, got {status[:40]!r}", "status")
    available = text_arg(args, "available")
    if available not in ("", "0", "1", "2"):
        raise WebError("available: 0 (unknown), 1 (available) or 2 (not available)", "available")
    sort = text_arg(args, "sort") or "name"
    if sort not in ("name", "host", "status"):
        raise WebError("sort: name, host or status", "sort")
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    groupid = int_arg(args, "groupid", None, 1, 2**31 - 1)
    search = text_arg(args, "search")
    filters: dict[str, Any] = dict(
        search=search, groupid=groupid,
        status=None if not status else int(HostStatus.MONITORED if status == "enabled" else HostStatus.DISABLED),
        available=int(available) if available else None, sort=sort, desc=args.get("desc") == "1")
    if csv_export.wants_csv():
        return exports.hosts(auth.scope(), **filters)
    page = svc.browse.hosts(auth.scope(), **filters, limit=PAGE, offset=(page_no - 1) * PAGE)
    alive = data.active_available(svc.store, svc.browse, [h.hostid for h in page.rows if h.available == 0],
                                  int(time.time()))
    a = auth.access()
    writable = {h.hostid for h in page.rows if a.host(g for g, _ in h.groups) >= Permission.READ_WRITE}
    return render_template("hosts.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), groups=svc.browse.host_groups(auth.scope()),
                           f={"search": search, "groupid": groupid, "status": status, "available": available,
                              "sort": sort, "desc": args.get("desc") == "1"},
                           config=config, writable=writable, alive=alive)


@bp.get("/hosts")
def monitoring() -> Any:
    return _list(False)


@bp.get("/config/hosts")
def configuration() -> Any:
    return _list(True)


@bp.get("/config/templates")
def templates() -> Any:
    return render_template("templates.html", rows=services().browse.template_rows())


@bp.get("/hosts/<int:hostid>")
def host(hostid: int) -> Any:
    auth.require_host(hostid)
    svc = services()
    d = svc.browse.host(hostid)
    if d is None:
        raise NotFound(f"hostid: no host {hostid}", "hostid")
    if csv_export.wants_csv():
        return exports.items(auth.scope(), hostids=[hostid])
    items = svc.browse.items(hostids=[hostid], limit=200)
    rows = data.latest(svc.store, items.rows, int(time.time()))
    perm = auth.access().host(g for g, _ in d.row.groups)
    alive = data.active_available(svc.store, svc.browse, [hostid], int(time.time()))
    return render_template("host.html", d=d, rows=rows, total=items.total, available=1 if alive else d.row.available,
                           tags=svc.browse.host_tags(hostid),
                           can_edit=auth.current_user().can_configure and perm >= Permission.READ_WRITE)


def _form_page(f: HostForm, errors: dict[str, str], hostid: int | None) -> Any:
    svc = services()
    return render_template("host_form.html", f=f, errors=errors, hostid=hostid,
                           groups=svc.browse.host_groups(), templates=svc.browse.templates(),
                           proxies=[r.ref.name for r in svc.repo.proxy_rows()],
                           proxy_groups=[r.name for r in svc.repo.proxy_group_rows()],
                           may_create_groups=auth.current_user().is_super_admin), 400 if errors else 200


def _submit(hostid: int | None) -> Any:
    svc = services()
    f, errors = parse_host(request.form, lists={"groups": request.form.getlist("groups"),
                                                "templates": request.form.getlist("templates")})
    if not errors:
        ids = {n: g for g, n in svc.browse.host_groups()}
        try:
            auth.require_groups_writable([ids[g] for g in f.groups if g in ids])
        except Forbidden as e:
            errors["groups"] = e.message.partition(": ")[2]
    if not errors:
        try:
            new_id = save_host(svc.repo, svc.browse, f, hostid, may_create_groups=auth.current_user().is_super_admin)
        except FormErrors as e:
            errors = e.errors
        else:
            flash(f"Host {f.host} {'updated' if hostid else 'created'}.")
            return redirect(url_for("hosts.host", hostid=new_id))
    return _form_page(f, errors, hostid)


@bp.route("/config/hosts/new", methods=["GET", "POST"])
@auth.configure_required
def create() -> Any:
    if request.method == "POST":
        return _submit(None)
    return _form_page(HostForm(), {}, None)


@bp.route("/config/hosts/<int:hostid>", methods=["GET", "POST"])
def edit(hostid: int) -> Any:
    auth.require_host(hostid, write=True)
    if request.method == "POST":
        return _submit(hostid)
    d = services().browse.host(hostid)
    assert d is not None
    agent = next((i for i in d.interfaces if i[0] == 1), (1, "", "", "10050"))
    f = HostForm(d.row.host, d.row.name if d.row.name != d.row.host else "", [n for _, n in d.row.groups],
                 list(d.row.templates), d.macros, d.row.description, d.row.enabled, agent[1], agent[2], agent[3],
                 services().browse.host_tags(hostid), services().repo.host_proxy_names([hostid]).get(hostid, ""),
                 services().repo.host_proxy_group_names([hostid]).get(hostid, ""))
    if f.proxy_group:  # its proxy is the balancer's choice, shown beside the group
        f.proxy = ""
    return _form_page(f, {}, hostid)


@bp.post("/config/hosts/delete")
def delete() -> Any:
    svc = services()
    action = request.form.get("action", "delete")
    if action not in ("delete", "enable", "disable"):
        raise WebError("action: delete, enable or disable", "action")
    ids = ids_arg(request.form, "hostid", getlist=request.form.getlist)
    if not ids:
        raise WebError(f"hostid: select at least one host to {action}", "hostid")
    for hid in ids:
        auth.require_host(hid, write=True)
    if action != "delete":
        n = svc.browse.set_status(ids, action == "enable")
        flash(f"{action.capitalize()}d {n} host(s).")
        return redirect(url_for("hosts.configuration"))
    names = []
    for hid in ids:
        d = svc.browse.host(hid)
        if d is not None:
            svc.repo.delete_host(d.row.host)
            names.append(d.row.host)
    flash(f"Deleted {len(names)} host(s): {', '.join(names)}.")
    return redirect(url_for("hosts.configuration"))


@bp.route("/config/hosts/<int:hostid>/items/new", methods=["GET", "POST"])
def new_item(hostid: int) -> Any:
    auth.require_host(hostid, write=True)
    svc = services()
    d = svc.browse.host(hostid)
    assert d is not None
    values = {k: "" for k in ITEM_FORM_FIELDS}
    values.update(type="trapper", value_type="float", delay="1m", history="31d", trends="365d", tags="")
    errors: dict[str, str] = {}
    if request.method == "POST":
        values.update({k: request.form.get(k, "") for k in (*ITEM_FORM_FIELDS, "tags")})
        try:
            save_item(svc.repo, svc.browse, d.row.host, hostid, request.form, new=True)
        except FormErrors as e:
            errors = e.errors
        else:
            flash(f"Item {values['key']} created.")
            return redirect(url_for("hosts.host", hostid=hostid))
    return render_template("item_form.html", d=d, v=values, errors=errors), 400 if errors else 200
