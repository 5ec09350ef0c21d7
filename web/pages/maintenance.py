"""Configuration → Maintenance: maintenance periods (one time, daily, weekly, monthly) over hosts and host
groups, with or without data collection. Times are UTC, as the configuration document writes them."""

from __future__ import annotations

import copy
import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config import alerting as al
from vigil.server.config.alerting_browse import AlertingBrowse
from vigil.server.config.model import ConfigError
from vigil.web import auth
from vigil.web.alerting_forms import config_errors, maintenance_doc, parse
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import FormErrors
from vigil.web.params import ids_arg, int_arg, text_arg

bp = Blueprint("maintenance", __name__)
PAGE = 50


def browse() -> AlertingBrowse:
    return AlertingBrowse(services().engine)


def _spec(maintenanceid: int) -> al.MaintenanceSpec:
    m = browse().maintenance(maintenanceid)
    if m is None:
        raise NotFound(f"maintenanceid: no maintenance {maintenanceid}", "maintenanceid")
    return m


def require_writable(spec: al.MaintenanceSpec) -> None:
    """An admin puts in maintenance only hosts and host groups they may change."""
    svc = services()
    for name in spec.hosts:
        hid = svc.browse.host_id(name)
        if hid is not None:
            auth.require_host(hid, write=True)
    ids = {n: g for g, n in svc.browse.host_groups()}
    auth.require_groups_writable([ids[g] for g in spec.groups if g in ids])


def save(doc: Any, maintenanceid: int | None, full: bool = False) -> int:
    spec = parse("maintenance", doc, al.maintenance_from_doc, "hosts", full)
    require_writable(spec)
    try:
        return services().repo.save_alerting("maintenance", spec, maintenanceid)
    except ConfigError as e:
        raise config_errors(e, "maintenance", "hosts", full) from None


def state(active_since: int, active_till: int, now: int) -> str:
    if active_till <= now:
        return "Expired"
    if active_since > now:
        return "Approaching"
    return "Active"


@bp.get("/config/maintenance")
def index() -> Any:
    auth.require_configure()
    page_no = int_arg(request.args, "page", 1, 1, 100000) or 1
    search = text_arg(request.args, "search")
    page = browse().maintenances(search=search, limit=PAGE, offset=(page_no - 1) * PAGE)
    return render_template("maintenances.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), f={"search": search}, now=int(time.time()),
                           state=state, iso=al.time_to_doc, never=al.NEVER)


def _form(doc: dict[str, Any], errors: dict[str, str], maintenanceid: int | None) -> Any:
    svc = services()
    v = copy.deepcopy(doc)
    v["periods"] = list(v.get("periods") or []) + [{}]
    return render_template("maintenance_form.html", v=v, errors=errors, maintenanceid=maintenanceid,
                           hosts=browse().host_picks(auth.scope()),
                           groups=[n for _, n in svc.browse.host_groups(auth.scope())], days=al.DAYS,
                           months=al.MONTHS, period_types=al.PERIOD_TYPES), 400 if errors else 200


@bp.route("/config/maintenance/new", methods=["GET", "POST"])
def create() -> Any:
    auth.require_configure()
    if request.method == "POST":
        doc = maintenance_doc(request.form)
        try:
            mid = save(doc, None)
        except FormErrors as e:
            return _form(doc, e.errors, None)
        flash(f"Maintenance {doc['name']} added.")
        return redirect(url_for("maintenance.edit", maintenanceid=mid))
    now = int(time.time()) // 60 * 60
    return _form({"name": "", "collect_data": True, "active_since": al.time_to_doc(now),
                  "active_till": al.time_to_doc(now + 86400), "hosts": [], "groups": [],
                  "periods": [{"type": "one_time", "start_date": al.time_to_doc(now), "period": "1h"}]}, {}, None)


@bp.route("/config/maintenance/<int:maintenanceid>", methods=["GET", "POST"])
def edit(maintenanceid: int) -> Any:
    auth.require_configure()
    old = _spec(maintenanceid)
    if request.method == "POST":
        require_writable(old)
        doc = maintenance_doc(request.form)
        try:
            save(doc, maintenanceid)
        except FormErrors as e:
            return _form(doc, e.errors, maintenanceid)
        flash(f"Maintenance {doc['name']} updated.")
        return redirect(url_for("maintenance.edit", maintenanceid=maintenanceid))
    doc = al.maintenance_to_doc(old)
    doc.setdefault("collect_data", True)
    return _form(doc, {}, maintenanceid)


@bp.post("/config/maintenance/delete")
def delete() -> Any:
    auth.require_configure()
    ids = ids_arg(request.form, "maintenanceid", getlist=request.form.getlist) or []
    if not ids:
        raise WebError("maintenanceid: choose at least one maintenance", "maintenanceid")
    b, n = browse(), 0
    for mid in ids:
        spec = b.maintenance(mid)
        if spec is not None:
            require_writable(spec)
            n += services().repo.delete_alerting("maintenance", mid)
    flash(f"{n} maintenance{'s' if n != 1 else ''} deleted.")
    return redirect(url_for("maintenance.index"))
