"""Sign-in, sessions, CSRF, API tokens and permission checks.

A session is a signed cookie holding the user id and a digest of the password hash (changing the
password ends every other session). Every unsafe request made with the cookie must carry the
session's CSRF token (form field `csrf_token` or header X-CSRF-Token); API calls made with
`Authorization: Bearer TOKEN` carry no cookie and need none.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, g, redirect, render_template, request, session, url_for
from vigil.server.config.browse import Scope
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Permission
from vigil.server.config.users import Access, AuthError, User
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotSignedIn, WebError

bp = Blueprint("auth", __name__)
PUBLIC = {"auth.login", "static", "plotly", "api.openapi"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def csrf_token() -> str:
    tok = session.get("csrf")
    if not tok:
        tok = session["csrf"] = secrets.token_urlsafe(32)
    return str(tok)


def _load_user() -> None:
    g.user, g.access, g.via_token = None, None, False
    svc = services()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise NotSignedIn("Authorization: expected 'Bearer TOKEN'", "Authorization")
        user = svc.users.token_user(secret.strip(), int(time.time()))
        if user is None:
            raise NotSignedIn("the API token is unknown, revoked or expired: create one with "
                              "`vigil token create USER` or under User settings", "Authorization")
        g.user, g.via_token = user, True
    elif "uid" in session:
        user = svc.users.user(int(session["uid"]))
        if user is not None and hmac.compare_digest(str(session.get("pw", "")), user.passwd_tag):
            g.user = user
        else:
            session.clear()
    if g.user is not None:
        g.access = svc.users.access(g.user)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def authenticate() -> Any:
        _load_user()
        if request.method in UNSAFE and not g.via_token:
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
            want = session.get("csrf", "")
            if not want or not sent or not hmac.compare_digest(str(sent), str(want)):
                raise WebError("csrf_token: the form has expired or did not come from this site; "
                               "reload the page and try again", "csrf_token", status=400, code="csrf")
        if g.user is None and request.endpoint not in PUBLIC:
            raise NotSignedIn("sign in first, or send Authorization: Bearer TOKEN")


def current_user() -> User:
    if g.get("user") is None:
        raise NotSignedIn("sign in first")
    return g.user  # type: ignore[no-any-return]


def access() -> Access:
    current_user()
    return g.access  # type: ignore[no-any-return]


def scope() -> Scope:
    a = access()
    return Scope.of(a.readable, a.denied)


def require_host(hostid: int, *, write: bool = False) -> None:
    """403 unless the user may read (or change) the host; 404 if there is no such host."""
    groups = services().browse.host_groups_of([hostid])[hostid]
    if not groups and services().browse.host(hostid) is None:
        from vigil.web.errors import NotFound

        raise NotFound(f"hostid: no host {hostid}", "hostid")
    perm = access().host(groups)
    if perm < Permission.READ:
        raise Forbidden(f"hostid: you have no rights to host {hostid}; ask an administrator for access "
                        "to one of its host groups", "hostid")
    if write:
        require_configure()
        if perm < Permission.READ_WRITE:
            raise Forbidden(f"hostid: you may read host {hostid} but not change it", "hostid")


def require_groups_writable(groupids: Iterable[int], field: str = "groups") -> None:
    a = access()
    for gid in groupids:
        if a.group(gid) < Permission.READ_WRITE:
            raise Forbidden(f"{field}: you have no read-write rights to host group {gid}", field)


def require_configure() -> None:
    if not current_user().can_configure:
        raise Forbidden(f"your role ({current_user().role_label}) cannot change configuration")


def configure_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_configure()
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    svc = services()
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "")[:100]
        password = request.form.get("password", "")[:1024]
        if not username.strip():
            error = "username: enter your user name"
        else:
            try:
                user = svc.users.authenticate(username.strip(), password, int(time.time()),
                                              svc.settings.login_attempts, svc.settings.login_block)
            except AuthError as e:
                error = str(e)
            else:
                session.clear()
                session["uid"], session["pw"] = user.userid, user.passwd_tag
                session["csrf"] = secrets.token_urlsafe(32)
                session.permanent = bool(request.form.get("remember"))
                return redirect(_safe_next(request.args.get("next")))
    elif g.user is not None:
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, username=username), 200 if error is None else 401


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/profile", methods=["GET", "POST"])
def profile() -> Any:
    svc = services()
    user = current_user()
    errors: dict[str, str] = {}
    new_token = None
    if request.method == "POST":
        if not user.can_act:
            raise Forbidden("a guest cannot change settings or create tokens")
        action = request.form.get("action", "")
        if action == "password":
            current = request.form.get("current_password", "")[:1024]
            new = request.form.get("new_password", "")[:2048]
            if new != request.form.get("new_password2", "")[:2048]:
                errors["new_password2"] = "the two new passwords differ"
            else:
                try:
                    svc.users.authenticate(user.username, current, int(time.time()), svc.settings.login_attempts,
                                           svc.settings.login_block)
                except AuthError:
                    errors["current_password"] = "not your current password"
                else:
                    try:
                        svc.users.set_password(user.userid, new)
                    except ConfigError as e:
                        errors["new_password"] = str(e).partition(": ")[2] or str(e)
            if not errors:
                fresh = svc.users.user(user.userid)
                assert fresh is not None
                session["pw"] = fresh.passwd_tag
                initial = svc.settings.data_dir / "initial-admin-password"
                if user.username == "Admin" and initial.exists():
                    initial.unlink()
                flash("Password changed.")
                return redirect(url_for("auth.profile"))
        elif action == "token":
            name = request.form.get("name", "").strip()
            days_text = request.form.get("expires_days", "").strip()
            expires = 0
            if days_text:
                if not days_text.isdigit() or not 1 <= int(days_text) <= 3650:
                    errors["expires_days"] = "a number of days from 1 to 3650, or empty for never"
                else:
                    expires = int(time.time()) + int(days_text) * 86400
            if not errors:
                try:
                    _, new_token = svc.users.create_token(user.userid, name, int(time.time()), expires,
                                                          creator=user.userid)
                except ConfigError as e:
                    errors["name"] = str(e).partition(": ")[2] or str(e)
        elif action == "revoke":
            tid = request.form.get("tokenid", "")
            if not tid.isdigit() or not svc.users.revoke_token(int(tid), user.userid):
                errors["tokenid"] = "no such token of yours"
            else:
                flash("Token revoked.")
                return redirect(url_for("auth.profile"))
        else:
            errors["action"] = "unknown action"
    return (render_template("profile.html", errors=errors, tokens=svc.users.tokens(user.userid),
                            new_token=new_token, now=int(time.time())),
            400 if errors else 200)
