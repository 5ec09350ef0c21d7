"""Configuration → Hosts → Triggers: the list with filters, and the create / edit form that validates the
expression (errors with their position), shows whether it would fire now and the trigger's recent problems."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.browse_triggers import TRIGGER_SORTS, TriggerFilter
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Permission
from vigil.web import auth, csv_export, exports
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import FormErrors
from vigil.web.params import ids_arg, int_arg, text_arg
from vigil.web.triage import problems_repo, severity_arg, trigger_permission, triggers_repo
from vigil.web.trigger_forms import (
    TriggerForm,
    check_hosts,
    expression_error,
    form_of,
    parse_trigger,
    save,
    would_fire,
)

bp = Blueprint("triggers", __name__)
PAGE = 50


@bp.get("/config/triggers")
def index() -> Any:
    svc = services()
    scope = auth.scope()
    args = request.args
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    sevs = frozenset(severity_arg(v) for v in args.getlist("severity") if v.strip())
    status = text_arg(args, "status", 16)
    if status not in ("", "enabled", "disabled"):
        raise WebError("status: enabled, disabled or empty for both", "status")
    value = text_arg(args, "value", 16)
    if value not in ("", "problem", "ok"):
        raise WebError("value: problem, ok or empty for both", "value")
    sort = text_arg(args, "sort", 16) or "name"
    if sort not in TRIGGER_SORTS:
        raise WebError(f"sort: one of {', '.join(TRIGGER_SORTS)}", "sort")
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    f = TriggerFilter(hostids=tuple(hostids) if hostids is not None else None,
                      groupid=int_arg(args, "groupid", None, 1, 2**31 - 1), search=text_arg(args, "search"),
                      severities=sevs, enabled=None if not status else status == "enabled",
                      value=None if not value else int(value == "problem"))
    if csv_export.wants_csv():
        return exports.triggers(scope, f, sort, args.get("desc") == "1")
    page = triggers_repo().triggers(scope, f, sort=sort, desc=args.get("desc") == "1", limit=PAGE,
                                    offset=(page_no - 1) * PAGE)
    perms = trigger_permission([r.triggerid for r in page.rows]) if page.rows else {}
    writable = {r.triggerid for r in page.rows if perms.get(r.triggerid, 0) >= Permission.READ_WRITE
                and not r.templated} if auth.current_user().can_configure else set()
    host = None
    if hostids and len(hostids) == 1:
        d = svc.browse.host(hostids[0])
        host = d.row if d is not None else None
    can_create = host is not None and auth.current_user().can_configure and \
        auth.access().host(g for g, _ in host.groups) >= Permission.READ_WRITE
    return render_template("triggers.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), host=host, hosts=svc.browse.host_names(scope),
                           groups=svc.browse.host_groups(scope), writable=writable, can_create=can_create,
                           f={"hostid": hostids or [], "groupid": f.groupid, "search": f.search,
                              "severity": sorted(sevs), "status": status, "value": value, "sort": sort,
                              "desc": args.get("desc") == "1"})


def _form(f: TriggerForm, errors: dict[str, str], hostid: int, triggerid: int | None, *, check: bool) -> Any:
    svc = services()
    d = svc.browse.host(hostid)
    assert d is not None
    pos = None
    if f.expression and "expression" not in errors:
        bad = expression_error(f.expression)
        if bad is not None:
            errors["expression"] = f"{bad[0]} at position {bad[1]}"
            pos = bad[1]
    elif f.expression:
        bad = expression_error(f.expression)
        pos = bad[1] if bad else None
    fire = would_fire(f.expression, hostid, d.row.host) if f.expression and pos is None else None
    recent = problems_repo().trigger_problems(triggerid) if triggerid is not None else []
    row = triggers_repo().trigger(triggerid) if triggerid is not None else None
    can_save = auth.current_user().can_configure and auth.access().host(g for g, _ in d.row.groups) >= \
        Permission.READ_WRITE and not (row is not None and row.templated)
    return render_template("trigger_form.html", f=f, errors=errors, d=d, triggerid=triggerid, row=row, fire=fire,
                           can_save=can_save,
                           recent=recent, pos=pos, now=int(time.time()), checked=check,
                           names=[n for n in triggers_repo().trigger_names(hostid) if n != f.name]), \
        400 if errors else 200


def _submit(hostid: int, triggerid: int | None, base: TriggerForm | None) -> Any:
    f, errors = parse_trigger(request.form, form=True, base=base)
    check_hosts(f, errors)
    if request.form.get("action") == "check" or errors:
        return _form(f, errors, hostid, triggerid, check=True)
    d = services().browse.host(hostid)
    assert d is not None
    try:
        new_id = save(d.row.host, f, triggerid)
    except FormErrors as e:
        return _form(f, e.errors, hostid, triggerid, check=True)
    flash(f"Trigger {f.name} {'updated' if triggerid else 'created'}.")
    return redirect(url_for("triggers.edit", triggerid=new_id))


@bp.route("/config/hosts/<int:hostid>/triggers/new", methods=["GET", "POST"])
def create(hostid: int) -> Any:
    auth.require_host(hostid, write=True)
    if request.method == "POST":
        return _submit(hostid, None, None)
    f = TriggerForm()
    item = int_arg(request.args, "itemid", None, 1, 2**31 - 1)
    if item is not None:  # "create trigger" from an item: start with its last value
        it = services().browse.item(item)
        if it is not None and it.hostid == hostid:
            f.expression = f"last(/{it.host}/{it.key})>0"
            f.name = f"{it.name} is above 0"
    return _form(f, {}, hostid, None, check=False)


def _trigger(triggerid: int) -> Any:
    row = triggers_repo().trigger(triggerid)
    if row is None:
        raise NotFound(f"triggerid: no trigger {triggerid}", "triggerid")
    return row


@bp.route("/config/triggers/<int:triggerid>", methods=["GET", "POST"])
def edit(triggerid: int) -> Any:
    row = _trigger(triggerid)
    auth.require_host(row.hostid, write=request.method == "POST")
    if trigger_permission([triggerid]).get(triggerid, 0) < Permission.READ:
        raise WebError(f"triggerid: you have no rights to every host trigger {triggerid} reads", "triggerid",
                       status=403, code="forbidden")
    if request.method == "POST":
        if row.templated:
            raise WebError("triggerid: this trigger comes from a linked template: change it in the template",
                           "triggerid")
        return _submit(row.hostid, triggerid, form_of(row))
    return _form(form_of(row), {}, row.hostid, triggerid, check=True)


@bp.post("/config/triggers/delete")
def delete() -> Any:
    ids = ids_arg(request.form, "triggerid", getlist=request.form.getlist)
    if not ids:
        raise WebError("triggerid: select at least one trigger to delete", "triggerid")
    rows = [_trigger(i) for i in ids]
    for r in rows:
        auth.require_host(r.hostid, write=True)
    names = []
    for r in rows:
        try:
            if services().repo.delete_trigger(r.triggerid):
                names.append(r.name)
        except ConfigError as e:
            raise WebError(str(e).partition(": ")[2] or str(e), "triggerid") from None
    flash(f"Deleted {len(names)} trigger(s): {', '.join(names)}.")
    back = request.form.get("hostid", "")
    return redirect(url_for("triggers.index", hostid=int(back)) if back.isdigit() else url_for("triggers.index"))
