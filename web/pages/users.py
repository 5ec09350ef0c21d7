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


# --- one user: name, role, groups, media, unlock, password; user groups ---------------------------------


def _user_form(userid: int, errors: dict[str, str], v: dict[str, Any] | None = None) -> Any:
    import time

    from vigil.server.config import alerting as al
    from vigil.server.config.alerting_browse import AlertingBrowse

    svc = services()
    b = AlertingBrowse(svc.engine)
    spec = b.user_spec(userid)
    if spec is None:
        raise WebError(f"userid: no user {userid}", "userid", status=404, code="not_found")
    if v is None:
        v = al.user_to_doc(spec)
        v.setdefault("role", "user")
    medias = [dict(m) for m in v.get("medias", [])]
    for m in medias:
        sev = m.get("severity")
        m["severity"] = list(al.SEVERITY_NAMES) if sev is None else (
            al.severity_mask_to_doc(sev) or [] if isinstance(sev, int) else sev)
    medias.append({"severity": list(al.SEVERITY_NAMES), "period": "1-7,00:00-24:00"})
    st = b.user_states().get(userid)
    now = int(time.time())
    locked = bool(st and st.attempt_failed >= svc.settings.login_attempts
                  and now - st.attempt_clock < svc.settings.login_block)
    return render_template("user_form.html", userid=userid, v=v, medias=medias, errors=errors,
                           roles=list(ROLE_NAMES), user_groups=[n for _, n in b.user_group_names()],
                           media_types=[n for _, n in b.media_type_names()], severity_names=list(al.SEVERITY_NAMES),
                           locked=locked, failed=st.attempt_failed if st else 0), 400 if errors else 200


@bp.route("/config/users/<int:userid>", methods=["GET", "POST"])
def edit(userid: int) -> Any:
    from vigil.server.config import alerting as al
    from vigil.web.alerting_forms import config_errors, parse, user_doc
    from vigil.web.forms import FormErrors

    _super_admin()
    svc = services()
    target = svc.users.user(userid)
    if target is None:
        raise WebError(f"userid: no user {userid}", "userid", status=404, code="not_found")
    if request.method == "GET":
        return _user_form(userid, {})
    doc = user_doc(request.form, target.username)
    if userid == auth.current_user().userid and doc["role"] != "super admin":
        return _user_form(userid, {"role": "you cannot take the super admin role from yourself"}, doc)
    try:
        spec = parse("user", doc, al.user_from_doc, "username")
        svc.repo.save_user(spec)
    except FormErrors as e:
        return _user_form(userid, e.errors, doc)
    except ConfigError as e:
        return _user_form(userid, config_errors(e, "user", "username").errors, doc)
    flash(f"User {target.username} updated.")
    return redirect(url_for("users.edit", userid=userid))


@bp.post("/config/users/<int:userid>/unlock")
def unlock(userid: int) -> Any:
    _super_admin()
    if not services().users.unlock(userid):
        raise WebError(f"userid: no user {userid}", "userid", status=404, code="not_found")
    flash("User unlocked: failed sign-ins forgotten.")
    return redirect(url_for("users.edit", userid=userid))


def set_password(userid: int, new: str, again: str) -> dict[str, str]:
    """Set a user's password (as a super admin); the Admin initial-password file goes with the first change."""
    from flask import session

    svc = services()
    target = svc.users.user(userid)
    if target is None:
        raise WebError(f"userid: no user {userid}", "userid", status=404, code="not_found")
    if new != again:
        return {"new_password2": "the two passwords differ"}
    try:
        svc.users.set_password(userid, new)
    except ConfigError as e:
        return {"new_password": str(e).partition(": ")[2] or str(e)}
    if target.username == "Admin":
        (svc.settings.data_dir / "initial-admin-password").unlink(missing_ok=True)
    if userid == auth.current_user().userid:  # keep this session signed in
        fresh = svc.users.user(userid)
        assert fresh is not None
        session["pw"] = fresh.passwd_tag
    return {}


@bp.post("/config/users/<int:userid>/password")
def password(userid: int) -> Any:
    _super_admin()
    errors = set_password(userid, request.form.get("new_password", "")[:2048],
                          request.form.get("new_password2", "")[:2048])
    if errors:
        return _user_form(userid, errors)
    flash("Password changed.")
    return redirect(url_for("users.edit", userid=userid))


@bp.post("/config/users/<int:userid>/delete")
def delete(userid: int) -> Any:
    _super_admin()
    svc = services()
    target = svc.users.user(userid)
    if target is None:
        raise WebError(f"userid: no user {userid}", "userid", status=404, code="not_found")
    if userid == auth.current_user().userid:
        raise WebError("userid: you cannot delete yourself", "userid")
    svc.users.delete_user(userid)
    flash(f"User {target.username} deleted.")
    return redirect(url_for("users.index"))


def save_group(name: str, usrgrpid: int | None) -> int:
    from vigil.web.alerting_forms import check_name, config_errors
    from vigil.web.forms import FormErrors

    errors = check_name({"name": name.strip()}, "name", 64)
    if errors:
        raise FormErrors(errors)
    try:
        return services().repo.save_alerting("user_group", name.strip(), usrgrpid)
    except ConfigError as e:
        raise config_errors(e, "user_group") from None


@bp.post("/config/usergroups")
def create_group() -> Any:
    from vigil.web.forms import FormErrors

    _super_admin()
    name = request.form.get("name", "")[:1024]
    try:
        save_group(name, None)
    except FormErrors as e:
        return _page({f"group_{k}": v for k, v in e.errors.items()}, {"group_name": name})
    flash(f"User group {name.strip()} created.")
    return redirect(url_for("users.index"))


@bp.post("/config/usergroups/<int:usrgrpid>/delete")
def delete_group(usrgrpid: int) -> Any:
    _super_admin()
    if not services().repo.delete_alerting("user_group", usrgrpid):
        raise WebError(f"usrgrpid: no user group {usrgrpid}", "usrgrpid", status=404, code="not_found")
    flash("User group deleted.")
    return redirect(url_for("users.index"))
