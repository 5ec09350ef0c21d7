"""Administration → Proxies: the list (mode, address, last seen, version, hosts, delay, proxy group) and
the create / edit / delete forms. Admins see the list; only a super admin changes proxies (Zabbix's Administration).
Fields are ProxySpec's, checked by the configuration document's own rules (proxies_from_doc)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.model import ConfigError, ProxySpec, proxies_from_doc
from vigil.server.config.tables import ProxyMode
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.forms import saved_or_errors, text_field
from vigil.web.params import ids_arg, text_arg

bp = Blueprint("proxies", __name__)
FIELDS = ("name", "mode", "address", "allowed_addresses", "description", "group")
_WHERE = re.compile(r"^proxies\[0\]\.?(\w*)(?:\[\d+\])?:\s*")
LIMITS = {"name": 128, "mode": 16, "address": 255, "allowed_addresses": 1024, "description": 65535, "group": 128}


@dataclass
class ProxyForm:
    name: str = ""
    mode: str = "active"
    address: str = ""
    allowed_addresses: str = ""
    description: str = ""
    group: str = ""  # its proxy group ('': none)


def _require_view() -> None:
    auth.require_configure()


def _require_super_admin() -> None:
    if not auth.current_user().is_super_admin:
        raise Forbidden("only a super admin adds, changes or deletes proxies")


def parse_proxy(data: Any) -> tuple[ProxyForm, ProxySpec | None, dict[str, str]]:
    """The form as given, the ProxySpec it makes (None on errors) and the errors by field."""
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name in FIELDS:
        values[name] = text_field(data.get(name, ""), name, errors, LIMITS[name])
    values["allowed_addresses"] = ", ".join(x.strip() for x in re.split(r"[,\s]+", values["allowed_addresses"])
                                            if x.strip())
    f = ProxyForm(**values)
    if not f.name and "name" not in errors:
        errors["name"] = "required"
    if f.mode not in ("active", "passive") and "mode" not in errors:
        errors["mode"] = f"active or passive, got {f.mode[:40]!r}"
    if errors:
        return f, None, errors
    doc: dict[str, Any] = {"name": f.name, "mode": f.mode, "description": f.description}
    if f.address:
        doc["address"] = f.address
    if f.allowed_addresses:
        doc["allowed_addresses"] = f.allowed_addresses
    if f.group:
        doc["group"] = f.group
    try:
        spec = proxies_from_doc([doc])[0]
    except ConfigError as e:
        m = _WHERE.match(str(e))
        field = (m.group(1) if m else "") or "name"
        errors[field] = str(e)[m.end():] if m else str(e)
        return f, None, errors
    return f, spec, {}


def form_of(spec: ProxySpec) -> ProxyForm:
    return ProxyForm(spec.name, "passive" if spec.mode == ProxyMode.PASSIVE else "active", spec.address,
                     ", ".join(spec.allowed_addresses), spec.description, spec.group)


@bp.get("/admin/proxies")
def index() -> Any:
    _require_view()
    search = text_arg(request.args, "search")
    mode = text_arg(request.args, "mode", 16)
    if mode not in ("", "active", "passive"):
        raise WebError(f"mode: active, passive or empty for both, got {mode[:40]!r}", "mode")
    rows = [r for r in services().repo.proxy_rows()
            if search.lower() in r.ref.name.lower()
            and (not mode or r.ref.mode == (ProxyMode.PASSIVE if mode == "passive" else ProxyMode.ACTIVE))]
    return render_template("proxies.html", rows=rows, f={"search": search, "mode": mode}, now=int(time.time()),
                           can_change=auth.current_user().is_super_admin,
                           groups=services().repo.proxy_groups_of_proxies())


def _form_page(f: ProxyForm, errors: dict[str, str], proxyid: int | None, hosts: int = 0) -> Any:
    groups = [r.name for r in services().repo.proxy_group_rows()]
    return render_template("proxy_form.html", v=f, errors=errors, proxyid=proxyid, hosts=hosts, groups=groups), \
        400 if errors else 200


def _submit(proxyid: int | None) -> Any:
    f, spec, errors = parse_proxy(request.form)
    if spec is not None:
        new_id, errors = saved_or_errors(lambda: services().repo.save_proxy(spec, proxyid), "proxyid")
        if new_id is not None:
            flash(f"Proxy {spec.name} {'updated' if proxyid else 'added'}.")
            return redirect(url_for("proxies.edit", proxyid=new_id))
    return _form_page(f, errors, proxyid)


@bp.route("/admin/proxies/new", methods=["GET", "POST"])
def create() -> Any:
    _require_super_admin()
    if request.method == "POST":
        return _submit(None)
    return _form_page(ProxyForm(), {}, None)


@bp.route("/admin/proxies/<int:proxyid>", methods=["GET", "POST"])
def edit(proxyid: int) -> Any:
    _require_view()
    row = services().repo.proxy_row(proxyid)
    if row is None:
        raise NotFound(f"proxyid: no proxy {proxyid}", "proxyid")
    if request.method == "POST":
        _require_super_admin()
        return _submit(proxyid)
    r = row.ref
    group = services().repo.proxy_groups_of_proxies().get(proxyid, "")
    return _form_page(form_of(ProxySpec(r.name, r.mode, r.address, list(r.allowed_addresses), row.description,
                                        group)), {}, proxyid, row.hosts)


@bp.post("/admin/proxies/delete")
def delete() -> Any:
    _require_super_admin()
    ids = ids_arg(request.form, "proxyid", getlist=request.form.getlist)
    if not ids:
        raise WebError("proxyid: select at least one proxy to delete", "proxyid")
    names = services().repo.delete_proxies(ids)
    if not names:
        raise NotFound(f"proxyid: no proxy {ids[0]}", "proxyid")
    flash(f"Deleted {len(names)} proxy(s): {', '.join(names)}. Their hosts are monitored by the server again.")
    return redirect(url_for("proxies.index"))
