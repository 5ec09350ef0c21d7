"""Administration → Proxy groups (Zabbix 7.0's page): the list (state, online proxies of how many, the
minimum, hosts) and the create / edit / delete forms. Admins see the list; only a super admin changes
groups. Fields are ProxyGroupSpec's, checked by the configuration document's own rules
(proxy_groups_from_doc). A proxy joins a group on the proxy form, a host on the host form."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.model import ConfigError, ProxyGroupSpec, proxy_groups_from_doc
from vigil.server.config.tables import ProxyGroupState
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.forms import saved_or_errors, text_field
from vigil.web.params import ids_arg, text_arg

bp = Blueprint("proxy_groups", __name__)
FIELDS = ("name", "failover_delay", "min_online", "description")
_WHERE = re.compile(r"^proxy_groups\[0\]\.?(\w*):\s*")
LIMITS = {"name": 128, "failover_delay": 32, "min_online": 16, "description": 65535}
STATES = {int(ProxyGroupState.UNKNOWN): ("Unknown", "unknown"), int(ProxyGroupState.OFFLINE): ("Offline", "bad"),
          int(ProxyGroupState.ONLINE): ("Online", "ok")}


@dataclass
class ProxyGroupForm:
    name: str = ""
    failover_delay: str = "1m"
    min_online: str = "1"
    description: str = ""


def _require_super_admin() -> None:
    if not auth.current_user().is_super_admin:
        raise Forbidden("only a super admin adds, changes or deletes proxy groups")


def parse_proxy_group(data: Any) -> tuple[ProxyGroupForm, ProxyGroupSpec | None, dict[str, str]]:
    """The form as given, the ProxyGroupSpec it makes (None on errors) and the errors by field."""
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name in FIELDS:
        values[name] = text_field(data.get(name, ""), name, errors, LIMITS[name])
    f = ProxyGroupForm(**values)
    for name in ("name", "failover_delay", "min_online"):
        if not values[name] and name not in errors:
            errors[name] = "required"
    if errors:
        return f, None, errors
    doc = {"name": f.name, "failover_delay": f.failover_delay, "min_online": f.min_online,
           "description": f.description}
    try:
        spec = proxy_groups_from_doc([doc])[0]
    except ConfigError as e:
        m = _WHERE.match(str(e))
        field = (m.group(1) if m else "") or "name"
        errors[field] = str(e)[m.end():] if m else str(e)
        return f, None, errors
    return f, spec, {}


@bp.get("/admin/proxy-groups")
def index() -> Any:
    auth.require_configure()
    search = text_arg(request.args, "search")
    state = text_arg(request.args, "state", 16)
    by_state = {label.lower(): code for code, (label, _) in STATES.items()}
    if state and state not in by_state:
        raise WebError(f"state: online, offline, unknown or empty for any, got {state[:40]!r}", "state")
    rows = [r for r in services().repo.proxy_group_rows()
            if search.lower() in r.name.lower() and (not state or r.state == by_state[state])]
    return render_template("proxy_groups.html", rows=rows, f={"search": search, "state": state}, states=STATES,
                           can_change=auth.current_user().is_super_admin)


def _form_page(f: ProxyGroupForm, errors: dict[str, str], proxy_groupid: int | None, row: Any = None) -> Any:
    return render_template("proxy_group_form.html", v=f, errors=errors, proxy_groupid=proxy_groupid, row=row,
                           states=STATES, now=int(time.time())), 400 if errors else 200


def _submit(proxy_groupid: int | None, row: Any = None) -> Any:
    f, spec, errors = parse_proxy_group(request.form)
    if spec is not None:
        new_id, errors = saved_or_errors(lambda: services().repo.write_proxy_group(spec, proxy_groupid),
                                         "proxy_groupid")
        if new_id is not None:
            flash(f"Proxy group {spec.name} {'updated' if proxy_groupid else 'added'}.")
            return redirect(url_for("proxy_groups.edit", proxy_groupid=new_id))
    return _form_page(f, errors, proxy_groupid, row)


@bp.route("/admin/proxy-groups/new", methods=["GET", "POST"])
def create() -> Any:
    _require_super_admin()
    if request.method == "POST":
        return _submit(None)
    return _form_page(ProxyGroupForm(), {}, None)


@bp.route("/admin/proxy-groups/<int:proxy_groupid>", methods=["GET", "POST"])
def edit(proxy_groupid: int) -> Any:
    auth.require_configure()
    row = services().repo.proxy_group_row(proxy_groupid)
    if row is None:
        raise NotFound(f"proxy_groupid: no proxy group {proxy_groupid}", "proxy_groupid")
    if request.method == "POST":
        _require_super_admin()
        return _submit(proxy_groupid, row)
    return _form_page(ProxyGroupForm(row.name, row.failover_delay, str(row.min_online), row.description), {},
                      proxy_groupid, row)


@bp.post("/admin/proxy-groups/delete")
def delete() -> Any:
    _require_super_admin()
    ids = ids_arg(request.form, "proxy_groupid", getlist=request.form.getlist)
    if not ids:
        raise WebError("proxy_groupid: select at least one proxy group to delete", "proxy_groupid")
    names = services().repo.delete_proxy_groups(ids)
    if not names:
        raise NotFound(f"proxy_groupid: no proxy group {ids[0]}", "proxy_groupid")
    flash(f"Deleted {len(names)} proxy group(s): {', '.join(names)}. Their hosts are monitored by the server "
          "again; their proxies stay, in no group.")
    return redirect(url_for("proxy_groups.index"))
