"""Configuration → Users: users with their roles and groups, and user groups' rights on host groups.
Super admins only, as in Zabbix."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Permission
from vigil.server.config.users import ROLE_NAMES
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import Forbidden, WebError

bp = Blueprint("users", __name__)
PERMS = {"": None, "deny": Permission.DENY, "read": Permission.READ, "rw": Permission.READ_WRITE}


def _super_admin() -> None:
    if not auth.current_user().is_super_admin:
        raise Forbidden("only a super admin manages users and their rights")


def _page(errors: dict[str, str], values: dict[str, str]) -> Any:
    svc = services()
    return render_template("users.html", users=svc.users.users(), memberships=svc.users.memberships(),
                           usergroups=svc.users.groups(), hostgroups=svc.browse.host_groups(), errors=errors,
                           v=values, roles=list(ROLE_NAMES)), 400 if errors else 200


@bp.get("/config/users")
def index() -> Any:
    _super_admin()
    return _page({}, {})


@bp.post("/config/users")
def create() -> Any:
    _super_admin()
    svc = services()
    v = {k: request.form.get(k, "")[:1024] for k in ("username", "role", "group")}
    errors: dict[str, str] = {}
    if v["role"] not in ROLE_NAMES:
        errors["role"] = f"one of {', '.join(ROLE_NAMES)}"
    group = v["group"].strip()
    if len(group) > 64:
        errors["group"] = "longer than 64 characters"
    if not errors:
        try:
            svc.users.create_user(v["username"], request.form.get("password", "")[:2048], ROLE_NAMES[v["role"]],
                                  groups=[group] if group else [])
        except ConfigError as e:
            name, _, msg = str(e).partition(": ")
            errors[name if name in ("username", "password") else "username"] = msg or str(e)
    if errors:
        return _page(errors, v)
    flash(f"User {v['username'].strip()} created.")
    return redirect(url_for("users.index"))


@bp.post("/config/users/rights/<int:usrgrpid>")
def rights(usrgrpid: int) -> Any:
    _super_admin()
    svc = services()
    if usrgrpid not in {g for g, _, _ in svc.users.groups()}:
        raise WebError(f"usrgrpid: no user group {usrgrpid}", "usrgrpid", status=404, code="not_found")
    out: dict[int, int] = {}
    for hgid, _ in svc.browse.host_groups():
        choice = request.form.get(f"perm_{hgid}", "")
        if choice not in PERMS:
            raise WebError(f"perm_{hgid}: one of deny, read, rw or empty", f"perm_{hgid}")
        if PERMS[choice] is not None:
            out[hgid] = int(PERMS[choice])  # type: ignore[arg-type]
    svc.users.set_rights_by_id(usrgrpid, out)
    flash("Rights saved.")
    return redirect(url_for("users.index"))
