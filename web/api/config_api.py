"""/api/v1 for alerting and access configuration: media types (+ POST test), actions, maintenances,
users, user groups, templates and API tokens.

Bodies are the entries of the configuration document (docs/config-format.md) as JSON, so what
`vigil config import` accepts the API accepts, with the same errors; the field of an error is its
path in the entry (`operations[0].step_from`). POST creates, PATCH changes the fields given (the
others keep their values), DELETE deletes. Lists take limit/offset and a search.
"""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify, request
from vigil.server.config import alerting as al
from vigil.server.config.alerting_browse import AlertingBrowse
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.tables import MEDIA_KIND_NAMES, Permission
from vigil.server.config.template_browse import TemplateBrowse
from vigil.server.config.users import ROLE_NAMES, validate_password
from vigil.web import auth
from vigil.web.alerting_forms import check_name, config_errors, error_field, parse
from vigil.web.api import _json_body, _listing, _page, bp
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.forms import FormErrors
from vigil.web.pages import actions as actions_page
from vigil.web.pages import maintenance as maintenance_page
from vigil.web.pages import mediatypes as mediatypes_page
from vigil.web.params import int_arg, text_arg

PERMISSION_NAMES = {"deny": Permission.DENY, "read": Permission.READ, "read-write": Permission.READ_WRITE}
PERMISSION_LABELS = {v: k for k, v in PERMISSION_NAMES.items()}


def _ab() -> AlertingBrowse:
    return AlertingBrowse(services().engine)


def _status_arg() -> bool | None:
    status = text_arg(request.args, "status")
    if status not in ("", "enabled", "disabled"):
        raise WebError(f"status: enabled or disabled, got {status[:40]!r}", "status")
    return None if not status else status == "enabled"


def _merged(old: dict[str, Any], body: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    unknown = sorted(set(body) - fields)
    if unknown:
        raise WebError(f"{unknown[0]}: not a field here (known: {', '.join(sorted(fields))})", unknown[0])
    return {**old, **body}


def _created(payload: dict[str, Any]) -> Any:
    resp = jsonify({"data": payload})
    resp.status_code = 201
    return resp


def _super_admin() -> None:
    if not auth.current_user().is_super_admin:
        raise Forbidden("only a super admin manages users, user groups and their rights")


# --- media types ---------------------------------------------------------------------------------------

MEDIA_FIELDS = al.MEDIA_TYPE_FIELDS | {p for ps in al.MEDIA_PARAMS.values() for p in ps}


def media_type_json(mid: int, m: al.MediaTypeSpec) -> dict[str, Any]:
    d = al.media_type_to_doc(m)
    if "password" in d or m.params.get("password"):
        d.pop("password", None)
        d["password_set"] = True
    return {"mediatypeid": mid, **d}


def _media_type(mid: int) -> al.MediaTypeSpec:
    auth.require_configure()
    m = _ab().media_type(mid)
    if m is None:
        raise NotFound(f"mediatypeid: no media type {mid}", "mediatypeid")
    return m


@bp.get("/mediatypes")
def mediatypes() -> Any:
    auth.require_configure()
    limit, offset = _page()
    kind = text_arg(request.args, "type")
    if kind not in ("", *MEDIA_KIND_NAMES):
        raise WebError(f"type: one of {', '.join(MEDIA_KIND_NAMES)}", "type")
    b = _ab()
    page = b.media_types(search=text_arg(request.args, "search"), kind=int(MEDIA_KIND_NAMES[kind]) if kind else None,
                         enabled=_status_arg(), limit=limit, offset=offset)
    specs = {r.mediatypeid: b.media_type(r.mediatypeid) for r in page.rows}
    return _listing([media_type_json(i, m) for i, m in specs.items() if m], page.total, limit, offset)


@bp.get("/mediatypes/<int:mediatypeid>")
def mediatype(mediatypeid: int) -> Any:
    return jsonify({"data": media_type_json(mediatypeid, _media_type(mediatypeid))})


@bp.post("/mediatypes")
def create_mediatype() -> Any:
    auth.require_configure()
    mid = mediatypes_page.save(_json_body(), None, full=True)
    return _created(media_type_json(mid, _media_type(mid)))


@bp.patch("/mediatypes/<int:mediatypeid>")
def update_mediatype(mediatypeid: int) -> Any:
    old = _media_type(mediatypeid)
    current = al.media_type_to_doc(old)
    body = _json_body()
    if "type" in body and body["type"] != current["type"]:  # another kind: its own parameters, none carried over
        current = {k: v for k, v in current.items() if k in al.MEDIA_TYPE_FIELDS}
    mediatypes_page.save(_merged(current, body, MEDIA_FIELDS), mediatypeid, full=True)
    return mediatype(mediatypeid)


@bp.delete("/mediatypes/<int:mediatypeid>")
def delete_mediatype(mediatypeid: int) -> Any:
    _media_type(mediatypeid)
    services().repo.delete_alerting("media_type", mediatypeid)
    return jsonify({"data": {"mediatypeid": mediatypeid, "deleted": True}})


@bp.post("/mediatypes/<int:mediatypeid>/test")
def test_mediatype(mediatypeid: int) -> Any:
    """Send one message now; 200 {"sent": true}, or 502 with what the server or receiver answered."""
    spec = _media_type(mediatypeid)
    sendto, subject, message, errors = mediatypes_page.test_fields(_json_body())
    if errors:
        raise FormErrors(errors)
    error = mediatypes_page.send_test(spec, mediatypeid, sendto, subject, message)
    if error is not None:
        raise WebError(error, None, status=502, code="delivery_failed")
    return jsonify({"data": {"mediatypeid": mediatypeid, "sent": True, "sendto": sendto}})


# --- actions -------------------------------------------------------------------------------------------


def _action(aid: int) -> al.ActionSpec:
    auth.require_configure()
    a = _ab().action(aid)
    if a is None:
        raise NotFound(f"actionid: no action {aid}", "actionid")
    return a


@bp.get("/actions")
def actions() -> Any:
    auth.require_configure()
    limit, offset = _page()
    b = _ab()
    page = b.actions(search=text_arg(request.args, "search"), enabled=_status_arg(), limit=limit, offset=offset)
    cfg = services().repo.alerting().actions if page.rows else {}
    return _listing([{"actionid": r.actionid, **al.action_to_doc(cfg[r.actionid])} for r in page.rows
                     if r.actionid in cfg], page.total, limit, offset)


@bp.get("/actions/<int:actionid>")
def action(actionid: int) -> Any:
    return jsonify({"data": {"actionid": actionid, **al.action_to_doc(_action(actionid))}})


@bp.post("/actions")
def create_action() -> Any:
    auth.require_configure()
    aid = actions_page.save(_json_body(), None, full=True)
    return _created({"actionid": aid, **al.action_to_doc(_action(aid))})


@bp.patch("/actions/<int:actionid>")
def update_action(actionid: int) -> Any:
    doc = _merged(al.action_to_doc(_action(actionid)), _json_body(), al.ACTION_FIELDS)
    actions_page.save(doc, actionid, full=True)
    return action(actionid)


@bp.delete("/actions/<int:actionid>")
def delete_action(actionid: int) -> Any:
    _action(actionid)
    services().repo.delete_alerting("action", actionid)
    return jsonify({"data": {"actionid": actionid, "deleted": True}})


# --- maintenances --------------------------------------------------------------------------------------

MAINTENANCE_FIELDS = {"name", "collect_data", "active_since", "active_till", "description", "hosts", "groups",
                      "periods"}


def _maintenance(mid: int) -> al.MaintenanceSpec:
    auth.require_configure()
    m = _ab().maintenance(mid)
    if m is None:
        raise NotFound(f"maintenanceid: no maintenance {mid}", "maintenanceid")
    return m


@bp.get("/maintenances")
def maintenances() -> Any:
    auth.require_configure()
    limit, offset = _page()
    b = _ab()
    page = b.maintenances(search=text_arg(request.args, "search"), limit=limit, offset=offset)
    cfg = services().repo.alerting().maintenances if page.rows else {}
    return _listing([{"maintenanceid": r.maintenanceid, **al.maintenance_to_doc(cfg[r.maintenanceid])}
                     for r in page.rows if r.maintenanceid in cfg], page.total, limit, offset)


@bp.get("/maintenances/<int:maintenanceid>")
def maintenance(maintenanceid: int) -> Any:
    return jsonify({"data": {"maintenanceid": maintenanceid,
                             **al.maintenance_to_doc(_maintenance(maintenanceid))}})


@bp.post("/maintenances")
def create_maintenance() -> Any:
    auth.require_configure()
    mid = maintenance_page.save(_json_body(), None, full=True)
    return _created({"maintenanceid": mid, **al.maintenance_to_doc(_maintenance(mid))})


@bp.patch("/maintenances/<int:maintenanceid>")
def update_maintenance(maintenanceid: int) -> Any:
    old = _maintenance(maintenanceid)
    maintenance_page.require_writable(old)
    doc = _merged(al.maintenance_to_doc(old), _json_body(), MAINTENANCE_FIELDS)
    maintenance_page.save(doc, maintenanceid, full=True)
    return maintenance(maintenanceid)


@bp.delete("/maintenances/<int:maintenanceid>")
def delete_maintenance(maintenanceid: int) -> Any:
    maintenance_page.require_writable(_maintenance(maintenanceid))
    services().repo.delete_alerting("maintenance", maintenanceid)
    return jsonify({"data": {"maintenanceid": maintenanceid, "deleted": True}})


# --- users and user groups -----------------------------------------------------------------------------

USER_FIELDS = {"username", "name", "surname", "role", "groups", "medias", "password"}


def user_json(uid: int) -> dict[str, Any]:
    svc = services()
    b = _ab()
    spec = b.user_spec(uid)
    if spec is None:
        raise NotFound(f"userid: no user {uid}", "userid")
    d = al.user_to_doc(spec)
    d.setdefault("role", "user")
    st = b.user_states().get(uid)
    now = int(time.time())
    d["locked"] = bool(st and st.attempt_failed >= svc.settings.login_attempts
                       and now - st.attempt_clock < svc.settings.login_block)
    return {"userid": uid, **d}


def _save_user(doc: dict[str, Any]) -> None:
    try:
        spec = parse("user", doc, al.user_from_doc, "username", True)
        services().repo.save_user(spec)
    except ConfigError as e:
        raise config_errors(e, "user", "username", True) from None


@bp.get("/users")
def users() -> Any:
    _super_admin()
    limit, offset = _page()
    search = text_arg(request.args, "search").lower()
    role = text_arg(request.args, "role")
    if role and role not in ROLE_NAMES:
        raise WebError(f"role: one of {', '.join(ROLE_NAMES)}", "role")
    rows = [u for u in services().users.users() if (not search or search in u.username.lower())
            and (not role or u.role == ROLE_NAMES[role])]
    return _listing([user_json(u.userid) for u in rows[offset:offset + limit]], len(rows), limit, offset)


@bp.get("/users/<int:userid>")
def user(userid: int) -> Any:
    _super_admin()
    return jsonify({"data": user_json(userid)})


@bp.post("/users")
def create_user() -> Any:
    """{"username", "password", "role", "groups", "medias", ...}: the user, then the rest as the document has it."""
    _super_admin()
    svc = services()
    body = _json_body()
    unknown = sorted(set(body) - USER_FIELDS)
    if unknown:
        raise WebError(f"{unknown[0]}: not a user field", unknown[0])
    password = body.pop("password", None)
    if not isinstance(password, str):
        raise FormErrors({"password": "required: at least 8 characters"})
    doc = {"role": "user", **body}
    parse("user", doc, al.user_from_doc, "username", True)  # every field checked before anything is written
    for i, g in enumerate(doc.get("groups") or []):
        if g not in {n for _, n in _ab().user_group_names()}:
            raise FormErrors({f"groups[{i}]": f"no user group named {g!r}"})
    for i, m in enumerate(doc.get("medias") or []):
        if m.get("media_type") not in {n for _, n in _ab().media_type_names()}:
            raise FormErrors({f"medias[{i}].media_type": f"no media type named {m.get('media_type')!r}"})
    try:
        uid = svc.users.create_user(doc["username"], password, ROLE_NAMES[doc["role"]])
    except ConfigError as e:
        name, _, msg = str(e).partition(": ")
        raise FormErrors({name if name in ("username", "password") else "username": msg or str(e)}) from None
    _save_user(doc)
    return _created(user_json(uid))


@bp.patch("/users/<int:userid>")
def update_user(userid: int) -> Any:
    _super_admin()
    current = user_json(userid)
    body = _json_body()
    if "username" in body and body["username"] != current["username"]:
        raise WebError("username: a user's name does not change; create another user", "username")
    password = body.pop("password", None)
    doc = _merged({k: v for k, v in current.items() if k in USER_FIELDS}, body, USER_FIELDS)
    if userid == auth.current_user().userid and doc.get("role") != "super admin":
        raise WebError("role: you cannot take the super admin role from yourself", "role")
    if password is not None:
        if not isinstance(password, str):
            raise FormErrors({"password": "expected text"})
        try:
            validate_password(password, "password")
        except ConfigError as e:
            raise FormErrors({"password": str(e).partition(": ")[2]}) from None
    _save_user(doc)
    if password is not None:
        from vigil.web.pages.users import set_password

        set_password(userid, password, password)
    return user(userid)


@bp.post("/users/<int:userid>/unlock")
def unlock_user(userid: int) -> Any:
    _super_admin()
    if not services().users.unlock(userid):
        raise NotFound(f"userid: no user {userid}", "userid")
    return user(userid)


@bp.delete("/users/<int:userid>")
def delete_user(userid: int) -> Any:
    _super_admin()
    if userid == auth.current_user().userid:
        raise WebError("userid: you cannot delete yourself", "userid")
    if not services().users.delete_user(userid):
        raise NotFound(f"userid: no user {userid}", "userid")
    return jsonify({"data": {"userid": userid, "deleted": True}})


def usergroup_json(gid: int) -> dict[str, Any]:
    svc = services()
    groups = {g: (n, r) for g, n, r in svc.users.groups()}
    if gid not in groups:
        raise NotFound(f"usrgrpid: no user group {gid}", "usrgrpid")
    name, rights = groups[gid]
    hg = dict(svc.browse.host_groups())
    members = [u for u, gs in svc.users.memberships().items() if name in gs]
    names = {u.userid: u.username for u in svc.users.users()}
    return {"usrgrpid": gid, "name": name,
            "rights": [{"groupid": h, "name": hg.get(h, ""), "permission": PERMISSION_LABELS[Permission(p)]}
                       for h, p in sorted(rights.items())],
            "users": sorted(names[u] for u in members if u in names)}


def _rights(body: dict[str, Any]) -> dict[int, int] | None:
    if "rights" not in body:
        return None
    v = body["rights"]
    if not isinstance(v, list):
        raise FormErrors({"rights": "expected a list of {groupid or name, permission}"})
    hg = {n: g for g, n in services().browse.host_groups()}
    out: dict[int, int] = {}
    for i, r in enumerate(v):
        if not isinstance(r, dict) or set(r) - {"groupid", "name", "permission"}:
            raise FormErrors({f"rights[{i}]": "expected {groupid or name, permission}"})
        gid = r.get("groupid")
        if gid is None:
            gid = hg.get(r.get("name"))  # type: ignore[arg-type]
        if not isinstance(gid, int) or gid not in hg.values():
            raise FormErrors({f"rights[{i}].groupid": f"no host group {r.get('groupid', r.get('name'))!r}"})
        if r.get("permission") not in PERMISSION_NAMES:
            raise FormErrors({f"rights[{i}].permission": "one of deny, read, read-write"})
        out[gid] = int(PERMISSION_NAMES[r["permission"]])
    return out


@bp.get("/usergroups")
def usergroups() -> Any:
    _super_admin()
    limit, offset = _page()
    search = text_arg(request.args, "search").lower()
    rows = [g for g, n, _ in services().users.groups() if not search or search in n.lower()]
    return _listing([usergroup_json(g) for g in rows[offset:offset + limit]], len(rows), limit, offset)


@bp.get("/usergroups/<int:usrgrpid>")
def usergroup(usrgrpid: int) -> Any:
    _super_admin()
    return jsonify({"data": usergroup_json(usrgrpid)})


def _save_group(body: dict[str, Any], gid: int | None) -> int:
    unknown = sorted(set(body) - {"name", "rights"})
    if unknown:
        raise WebError(f"{unknown[0]}: not a user group field (name, rights)", unknown[0])
    rights = _rights(body)
    if "name" in body or gid is None:
        errors = check_name({"name": body.get("name")}, "name", 64)
        if errors:
            raise FormErrors(errors)
        try:
            gid = services().repo.save_alerting("user_group", str(body["name"]).strip(), gid)
        except ConfigError as e:
            raise config_errors(e, "user_group", full=True) from None
    assert gid is not None
    if rights is not None:
        services().users.set_rights_by_id(gid, rights)
    return gid


@bp.post("/usergroups")
def create_usergroup() -> Any:
    _super_admin()
    body = _json_body()
    _rights(body)  # checked before the group is made
    return _created(usergroup_json(_save_group(body, None)))


@bp.patch("/usergroups/<int:usrgrpid>")
def update_usergroup(usrgrpid: int) -> Any:
    _super_admin()
    usergroup_json(usrgrpid)
    _save_group(_json_body(), usrgrpid)
    return usergroup(usrgrpid)


@bp.delete("/usergroups/<int:usrgrpid>")
def delete_usergroup(usrgrpid: int) -> Any:
    _super_admin()
    if not services().repo.delete_alerting("user_group", usrgrpid):
        raise NotFound(f"usrgrpid: no user group {usrgrpid}", "usrgrpid")
    return jsonify({"data": {"usrgrpid": usrgrpid, "deleted": True}})


# --- templates -----------------------------------------------------------------------------------------


def template_json(tid: int) -> dict[str, Any]:
    tb = TemplateBrowse(services().engine)
    row = tb.template(tid)
    if row is None:
        raise NotFound(f"templateid: no template {tid}", "templateid")
    doc = next(x for x in services().repo.export().get("templates", []) if x["template"] == row.host)
    return {"templateid": tid, **doc, "linked_hosts": [h for _, h in tb.linked_hosts(tid)]}


def _apply_template(doc: Any) -> int:
    if not isinstance(doc, dict):
        raise FormErrors({"body": "expected a JSON object"})
    errors = check_name({"template": doc.get("template")}, "template", 128)
    if errors:
        raise FormErrors(errors)
    try:
        services().repo.apply(doc_from_dict({"templates": [doc]}))
    except ConfigError as e:
        raise FormErrors(dict([error_field(str(e), "templates[0]", "template", True)])) from None
    hid = services().browse.host_id(doc["template"])
    tid = hid if hid is not None else next(t for t, n in services().browse.templates() if n == doc["template"])
    return int(tid)


@bp.get("/templates")
def templates() -> Any:
    limit, offset = _page()
    page = TemplateBrowse(services().engine).templates(search=text_arg(request.args, "search"), limit=limit,
                                                       offset=offset)
    return _listing([{"templateid": r.templateid, "template": r.host, "name": r.name, "description": r.description,
                      "items": r.items, "triggers": r.triggers, "linked_hosts": r.linked} for r in page.rows],
                    page.total, limit, offset)


@bp.get("/templates/<int:templateid>")
def template(templateid: int) -> Any:
    auth.current_user()
    return jsonify({"data": template_json(templateid)})


@bp.post("/templates")
def create_template() -> Any:
    auth.require_configure()
    body = _json_body()
    if isinstance(body.get("template"), str) and services().repo.host_exists(body["template"].strip()):
        raise FormErrors({"template": f"a host or template named {body['template'].strip()!r} exists already"})
    return _created(template_json(_apply_template(body)))


@bp.patch("/templates/<int:templateid>")
def update_template(templateid: int) -> Any:
    auth.require_configure()
    current = template_json(templateid)
    current.pop("templateid")
    current.pop("linked_hosts")
    body = _json_body()
    if "template" in body and body["template"] != current["template"]:
        raise WebError("template: a template's name does not change here", "template")
    _apply_template({**current, **body})
    return template(templateid)


@bp.delete("/templates/<int:templateid>")
def delete_template(templateid: int) -> Any:
    auth.require_configure()
    row = TemplateBrowse(services().engine).template(templateid)
    if row is None:
        raise NotFound(f"templateid: no template {templateid}", "templateid")
    services().repo.delete_host(row.host)
    return jsonify({"data": {"templateid": templateid, "deleted": True}})


# --- API tokens ----------------------------------------------------------------------------------------


def token_json(tk: Any) -> dict[str, Any]:
    return {"tokenid": tk.tokenid, "name": tk.name, "userid": tk.userid, "username": tk.username,
            "status": "active" if tk.status == 0 else "revoked", "expires_at": tk.expires_at or None,
            "created_at": tk.created_at, "lastaccess": tk.lastaccess or None}


@bp.get("/tokens")
def tokens() -> Any:
    """The caller's tokens; a super admin's ?userid=N (or ?all=1) lists another's (or everyone's)."""
    me = auth.current_user()
    limit, offset = _page()
    uid = int_arg(request.args, "userid", None, 1, 2**31 - 1)
    everyone = request.args.get("all") == "1"
    if (uid not in (None, me.userid) or everyone) and not me.is_super_admin:
        raise Forbidden("userid: only a super admin lists other users' tokens", "userid")
    rows = services().users.tokens(None if everyone else (uid or me.userid))
    return _listing([token_json(t) for t in rows[offset:offset + limit]], len(rows), limit, offset)


@bp.post("/tokens")
def create_token() -> Any:
    """{"name", "expires_days"?} → the token's secret, in this answer only."""
    me = auth.current_user()
    if not me.can_act:
        raise Forbidden("a guest cannot create tokens")
    body = _json_body()
    unknown = sorted(set(body) - {"name", "expires_days", "userid"})
    if unknown:
        raise WebError(f"{unknown[0]}: not a token field (name, expires_days, userid)", unknown[0])
    uid = body.get("userid", me.userid)
    if uid != me.userid and not me.is_super_admin:
        raise Forbidden("userid: only a super admin creates tokens for other users", "userid")
    if not isinstance(uid, int) or services().users.user(uid) is None:
        raise FormErrors({"userid": f"no user {uid!r}"})
    days = body.get("expires_days")
    now = int(time.time())
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650):
        raise FormErrors({"expires_days": "a number of days from 1 to 3650, or leave it out for never"})
    name = body.get("name")
    if not isinstance(name, str):
        raise FormErrors({"name": "required: 1 to 64 characters"})
    try:
        tid, secret = services().users.create_token(uid, name, now, now + days * 86400 if days else 0,
                                                    creator=me.userid)
    except ConfigError as e:
        raise FormErrors({"name": str(e).partition(": ")[2] or str(e)}) from None
    tk = next(t for t in services().users.tokens(uid) if t.tokenid == tid)
    return _created({**token_json(tk), "token": secret})


@bp.delete("/tokens/<int:tokenid>")
def revoke_token(tokenid: int) -> Any:
    me = auth.current_user()
    if not me.can_act:
        raise Forbidden("a guest cannot revoke tokens")
    if not services().users.revoke_token(tokenid, None if me.is_super_admin else me.userid):
        raise NotFound(f"tokenid: no token {tokenid} of yours", "tokenid")
    return jsonify({"data": {"tokenid": tokenid, "revoked": True}})
