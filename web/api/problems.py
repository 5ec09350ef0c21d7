"""The JSON API's triggers, problems and events (routes on the /api/v1 blueprint).

Problem updates are POST actions on /problems/{acknowledge,comment,severity,close,update} with
{"eventids": [...], "message", "severity"}; every problem is checked before any is changed.
"""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify, request
from vigil.server.config.browse_problems import EventDetail, ProblemView
from vigil.server.config.browse_triggers import TRIGGER_SORTS, TriggerFilter, TriggerRow
from vigil.server.config.tables import Permission
from vigil.web import auth
from vigil.web.api import _json_body, _listing, _page, bp
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.filters import SEVERITY_LABELS
from vigil.web.forms import FormErrors
from vigil.web.params import ids_arg, int_arg, text_arg, time_range
from vigil.web.triage import (
    Update,
    apply_update,
    parse_update,
    problem_args,
    problems_repo,
    require_event,
    severity_arg,
    sort_args,
    trigger_permission,
    triggers_repo,
)
from vigil.web.trigger_forms import check_hosts, form_of, parse_trigger, save, would_fire


def _sev(n: int) -> dict:
    return {"severity": n, "severity_name": SEVERITY_LABELS[n]}


def problem_json(p: ProblemView, now: int) -> dict:
    return {"eventid": p.eventid, "triggerid": p.triggerid, "name": p.name, **_sev(p.severity), "clock": p.clock,
            "status": "resolved" if p.resolved else "problem", "r_eventid": p.r_eventid,
            "r_clock": p.r_clock or None, "duration": p.duration(now), "acknowledged": p.acknowledged,
            "hostid": p.hostid, "host": p.host, "host_name": p.host_name, "manual_close": p.manual_close,
            "tags": [{"tag": k, "value": v} for k, v in p.tags], "updates": p.updates, "alerts": p.alerts}


def trigger_json(r: TriggerRow) -> dict:
    return {"triggerid": r.triggerid, "hostid": r.hostid, "host": r.host, "name": r.name, "expression": r.expression,
            "recovery": {0: "expression", 1: "recovery_expression", 2: "none"}.get(r.recovery_mode, "expression"),
            "recovery_expression": r.recovery_expression, **_sev(r.severity), "multiple": r.multiple,
            "manual_close": r.manual_close, "status": "enabled" if r.enabled else "disabled",
            "description": r.comments, "opdata": r.opdata, "templated": r.templated,
            "value": "problem" if r.value else "ok", "state": "unknown" if r.state else "normal", "error": r.error,
            "lastchange": r.lastchange or None, "tags": [{"tag": k, "value": v} for k, v in r.tags]}


# --- problems ---------------------------------------------------------------------------------------

@bp.get("/problems")
def api_problems() -> Any:
    limit, offset = _page()
    now = int(time.time())
    f, _ = problem_args(request.args, now)
    sort, desc = sort_args(request.args)
    page = problems_repo().problems(auth.scope(), f, now, sort=sort, desc=desc, limit=limit, offset=offset)
    return _listing([problem_json(p, now) for p in page.rows], page.total, limit, offset)


def _update(u: Update | None = None, **force: Any) -> Any:
    body = _json_body()
    unknown = sorted(set(body) - {"eventids", "message", "severity", "acknowledge", "unacknowledge", "close"})
    if unknown:
        raise WebError(f"{unknown[0]}: not a field of a problem update", unknown[0])
    ids = body.get("eventids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise WebError("eventids: a non-empty list of problem event ids", "eventids")
    u = parse_update({**body, **force})
    apply_update(ids, u, auth.current_user().userid)
    return jsonify({"data": {"updated": u.done, "skipped": [{"eventid": e, "message": m} for e, m in u.skipped]}})


@bp.post("/problems/acknowledge")
def api_acknowledge() -> Any:
    return _update(acknowledge=True)


@bp.post("/problems/comment")
def api_comment() -> Any:
    body = request.get_json(silent=True)
    if isinstance(body, dict) and not str(body.get("message") or "").strip():
        raise WebError("message: required: the comment's text", "message")
    return _update()


@bp.post("/problems/severity")
def api_severity() -> Any:
    body = request.get_json(silent=True)
    if isinstance(body, dict) and body.get("severity") in (None, ""):
        raise WebError("severity: required: 0-5 or a severity name", "severity")
    return _update()


@bp.post("/problems/close")
def api_close() -> Any:
    return _update(close=True)


@bp.post("/problems/update")
def api_update() -> Any:
    return _update()


# --- events -----------------------------------------------------------------------------------------

def event_json(ev: EventDetail, now: int) -> dict:
    out = {"eventid": ev.eventid, "triggerid": ev.objectid, "clock": ev.clock, "value": ev.value,
           "status": "ok" if ev.value == 0 else ("resolved" if ev.r_eventid else "problem"), "name": ev.name,
           **_sev(ev.problem.severity if ev.problem else ev.severity), "acknowledged": ev.acknowledged,
           "r_eventid": ev.r_eventid, "r_clock": ev.r_clock or None, "p_eventid": ev.p_eventid,
           "tags": [{"tag": k, "value": v} for k, v in ev.tags]}
    if ev.trigger is not None:
        out["hostid"], out["host"] = ev.trigger.hostid, ev.trigger.host
    return out


@bp.get("/events")
def api_events() -> Any:
    limit, offset = _page()
    args = request.args
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    value = text_arg(args, "value", 16)
    if value not in ("", "problem", "ok"):
        raise WebError("value: problem, ok or empty for both", "value")
    start, end, _, _ = time_range(args, time.time(), "now-7d")
    page = problems_repo().events(auth.scope(), triggerid=int_arg(args, "triggerid", None, 1, 2**31 - 1),
                                  hostids=hostids, start=start, end=end,
                                  value=None if not value else int(value == "problem"), limit=limit, offset=offset)
    rows = [{"eventid": e.eventid, "triggerid": e.triggerid, "clock": e.clock, "value": e.value,
             "status": "problem" if e.value else "ok", "name": e.name, **_sev(e.severity),
             "acknowledged": e.acknowledged, "hostid": e.hostid, "host": e.host} for e in page.rows]
    return _listing(rows, page.total, limit, offset)


@bp.get("/events/<int:eventid>")
def api_event(eventid: int) -> Any:
    require_event(eventid)
    pr = problems_repo()
    ev = pr.event(eventid)
    if ev is None:
        raise NotFound(f"eventid: no event {eventid}", "eventid")
    out = event_json(ev, int(time.time()))
    pid = ev.eventid if ev.value == 1 else (ev.p_eventid or ev.eventid)
    out["updates"] = [{"acknowledgeid": u.acknowledgeid, "clock": u.clock, "userid": u.userid,
                       "username": u.username, "action": u.action, "message": u.message,
                       "old_severity": u.old_severity, "new_severity": u.new_severity} for u in pr.updates(pid)]
    out["alerts"] = [{"alertid": a.alertid, "clock": a.clock, "action": a.action, "mediatype": a.mediatype,
                      "sendto": a.sendto, "subject": a.subject,
                      "status": ["queued", "sent", "failed", "retrying"][a.status] if a.status < 4 else a.status,
                      "retries": a.retries, "error": a.error, "esc_step": a.esc_step}
                     for a in pr.alerts([pid] + ([ev.r_eventid] if ev.r_eventid else []))]
    return jsonify({"data": out})


# --- triggers ---------------------------------------------------------------------------------------

def _trigger_row(triggerid: int, *, write: bool = False) -> TriggerRow:
    row = triggers_repo().trigger(triggerid)
    if row is None:
        raise NotFound(f"triggerid: no trigger {triggerid}", "triggerid")
    auth.require_host(row.hostid, write=write)
    if trigger_permission([triggerid]).get(triggerid, 0) < (Permission.READ_WRITE if write else Permission.READ):
        raise Forbidden(f"triggerid: you have no {'read-write ' if write else ''}rights to every host trigger "
                        f"{triggerid} reads", "triggerid")
    if write and row.templated:
        raise WebError("triggerid: this trigger comes from a linked template: change it in the template", "triggerid")
    return row


@bp.get("/triggers")
def api_triggers() -> Any:
    limit, offset = _page()
    args = request.args
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    status = text_arg(args, "status", 16)
    if status not in ("", "enabled", "disabled"):
        raise WebError("status: enabled, disabled or empty for both", "status")
    value = text_arg(args, "value", 16)
    if value not in ("", "problem", "ok"):
        raise WebError("value: problem, ok or empty for both", "value")
    sort = text_arg(args, "sort", 16) or "name"
    if sort not in TRIGGER_SORTS:
        raise WebError(f"sort: one of {', '.join(TRIGGER_SORTS)}", "sort")
    f = TriggerFilter(hostids=tuple(hostids) if hostids is not None else None,
                      groupid=int_arg(args, "groupid", None, 1, 2**31 - 1), search=text_arg(args, "search"),
                      severities=frozenset(severity_arg(v) for v in args.getlist("severity") if v.strip()),
                      enabled=None if not status else status == "enabled",
                      value=None if not value else int(value == "problem"))
    page = triggers_repo().triggers(auth.scope(), f, sort=sort, desc=args.get("desc") == "1", limit=limit,
                                    offset=offset)
    return _listing([trigger_json(r) for r in page.rows], page.total, limit, offset)


@bp.get("/triggers/<int:triggerid>")
def api_trigger(triggerid: int) -> Any:
    row = _trigger_row(triggerid)
    out = trigger_json(row)
    fire = would_fire(row.expression, row.hostid, row.host)
    out["would_fire"] = {"value": fire.label.lower(), "error": fire.error,
                         "functions": [{"call": c.text, "value": c.value, "error": c.error} for c in fire.calls]}
    out["recent_problems"] = [problem_json(p, int(time.time())) for p in problems_repo().trigger_problems(triggerid)]
    return jsonify({"data": out})


def _host_of_body(body: dict) -> tuple[int, str]:
    hostid = body.get("hostid")
    if isinstance(hostid, bool) or not isinstance(hostid, int):
        raise WebError("hostid: the id of the host the trigger belongs to (a whole number)", "hostid")
    d = services().browse.host(hostid)
    if d is None:
        raise NotFound(f"hostid: no host {hostid}", "hostid")
    auth.require_host(hostid, write=True)
    return hostid, d.row.host


@bp.post("/triggers")
def api_create_trigger() -> Any:
    body = _json_body()
    _check_fields(body, frozenset({"hostid"}))
    hostid, host = _host_of_body(body)
    f, errors = parse_trigger({k: v for k, v in body.items() if k != "hostid"}, form=False)
    check_hosts(f, errors)
    if errors:
        raise FormErrors(errors)
    trid = save(host, f, None)
    resp = api_trigger(trid)
    resp.status_code = 201
    return resp


TRIGGER_FIELDS = {"name", "expression", "recovery", "recovery_expression", "severity", "multiple", "manual_close",
                  "status", "description", "opdata", "tags", "dependencies"}


def _check_fields(body: dict, extra: frozenset[str] = frozenset()) -> None:
    unknown = sorted(set(body) - TRIGGER_FIELDS - extra)
    if unknown:
        raise WebError(f"{unknown[0]}: not a trigger field", unknown[0])


@bp.patch("/triggers/<int:triggerid>")
def api_update_trigger(triggerid: int) -> Any:
    row = _trigger_row(triggerid, write=True)
    body = _json_body()
    _check_fields(body)
    f, errors = parse_trigger(body, form=False, base=form_of(row))
    check_hosts(f, errors)
    if errors:
        raise FormErrors(errors)
    save(row.host, f, triggerid)
    return api_trigger(triggerid)


@bp.delete("/triggers/<int:triggerid>")
def api_delete_trigger(triggerid: int) -> Any:
    _trigger_row(triggerid, write=True)
    services().repo.delete_trigger(triggerid)
    return jsonify({"data": {"triggerid": triggerid, "deleted": True}})


@bp.post("/triggers/check")
def api_check_trigger() -> Any:
    """Would this expression fire now on this host? {"hostid", "expression"} → its value and each function's."""
    body = _json_body()
    hostid = body.get("hostid")
    if isinstance(hostid, bool) or not isinstance(hostid, int):
        raise WebError("hostid: a whole number", "hostid")
    auth.require_host(hostid)
    d = services().browse.host(hostid)
    assert d is not None
    text = body.get("expression")
    if not isinstance(text, str) or not text.strip() or len(text) > 65535:
        raise WebError("expression: text of at most 65535 characters", "expression")
    f, errors = parse_trigger({"name": "check", "expression": text}, form=False)
    check_hosts(f, errors)
    if errors:
        raise FormErrors(errors)
    fire = would_fire(text, hostid, d.row.host)
    if fire.error_pos is not None:
        return jsonify({"error": {"code": "invalid", "message": f"expression: {fire.error} at position "
                                  f"{fire.error_pos}", "field": "expression", "position": fire.error_pos}}), 400
    return jsonify({"data": {"value": fire.label.lower(), "error": fire.error,
                             "functions": [{"call": c.text, "value": c.value, "error": c.error} for c in fire.calls]}})
