"""Problems (filter bar → sortable table → bulk triage), an event's page, and the event history."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.tables import Permission
from vigil.web import auth, charts, csv_export, data, exports
from vigil.web.app import services
from vigil.web.auth import _safe_next
from vigil.web.errors import NotFound
from vigil.web.params import ids_arg, int_arg, time_range
from vigil.web.triage import (
    RECENT_SECONDS,
    apply_update,
    parse_update,
    problem_args,
    problems_repo,
    require_event,
    sort_args,
    trigger_permission,
)

bp = Blueprint("problems", __name__)
PAGE = 50
GRAPH_BEFORE = 3600  # the event page's graph starts this long before the problem


@bp.get("/problems")
def index() -> Any:
    svc = services()
    scope = auth.scope()
    now = int(time.time())
    f, given = problem_args(request.args, now)
    sort, desc = sort_args(request.args)
    if csv_export.wants_csv():
        return exports.problems(scope, f, now, sort, desc)
    page_no = int_arg(request.args, "page", 1, 1, 100000) or 1
    pr = problems_repo()
    page = pr.problems(scope, f, now, sort=sort, desc=desc, limit=PAGE, offset=(page_no - 1) * PAGE)
    perms = trigger_permission(list({p.triggerid for p in page.rows})) if page.rows else {}
    writable = {p.eventid for p in page.rows if perms.get(p.triggerid, 0) >= Permission.READ_WRITE}
    if not auth.current_user().can_act:
        writable = set()
    advanced = bool(given["tag"] or given["name"] or given["age"] or given["groupid"] or given["show"] == "history")
    filtered = any(given[k] for k in ("severity", "hostid", "groupid", "tag", "name", "age", "ack", "triggerid"))
    return render_template("problems.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), f=given, sort=sort, desc=desc, now=now,
                           hosts=svc.browse.host_names(scope), groups=svc.browse.host_groups(scope),
                           tags=pr.problem_tags(scope), writable=writable, advanced=advanced, filtered=filtered,
                           counts=pr.counts(scope), recent_minutes=RECENT_SECONDS // 60,
                           closable={p.eventid for p in page.rows if p.manual_close and not p.resolved})


@bp.post("/problems/update")
def update() -> Any:
    ids = ids_arg(request.form, "eventid", getlist=request.form.getlist) or []
    u = parse_update(request.form)
    apply_update(ids, u, auth.current_user().userid)
    what = u.describe()
    if u.done:
        flash(f"{len(u.done)} problem(s) {what}." + (" A running server applies close and severity within seconds."
                                                      if u.close or u.severity is not None else ""))
    for eid, why in u.skipped:
        flash(f"Problem {eid} not changed: {why}")
    return redirect(_safe_next(request.form.get("next")) if request.form.get("next") else url_for("problems.index"))


@bp.get("/events/<int:eventid>")
def event(eventid: int) -> Any:
    require_event(eventid)
    svc = services()
    pr = problems_repo()
    ev = pr.event(eventid)
    if ev is None:
        raise NotFound(f"eventid: no event {eventid}", "eventid")
    problem_id = ev.eventid if ev.value == 1 else (ev.p_eventid or ev.eventid)
    updates = pr.updates(problem_id)
    alerts = pr.alerts([problem_id] + ([ev.r_eventid] if ev.r_eventid else []))
    now = int(time.time())
    history = pr.events(auth.scope(), triggerid=ev.objectid, limit=20).rows
    fig = None
    items = []
    if ev.trigger is not None and ev.trigger.itemids:
        items = svc.browse.items(itemids=list(ev.trigger.itemids), limit=20).rows
        start = ev.clock - GRAPH_BEFORE
        stop = ev.r_clock if ev.r_eventid else now
        end = min(now, max(stop + 600, ev.clock + 600))
        numeric = [i for i in items if i.value_type in data.NUMERIC]
        if numeric:
            series, _ = data.series(svc.store, numeric, start, end, svc.browse)
            figure = charts.figure(series, start, end, height=300)
            marks = [(ev.clock, "#e45959", "problem")] + ([(ev.r_clock, "#2e9e4f", "resolved")] if ev.r_eventid else [])
            figure["layout"]["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": c * 1000, "x1": c * 1000,
                                           "y0": 0, "y1": 1, "line": {"color": col, "width": 1.5, "dash": "dot"}}
                                          for c, col, _ in marks]
            fig = json.dumps(figure)
    perm = trigger_permission([ev.objectid]).get(ev.objectid, 0)
    can_change = auth.current_user().can_act and perm >= Permission.READ_WRITE
    return render_template("event.html", ev=ev, updates=updates, alerts=alerts, history=history, figure=fig,
                           items=items, now=now, can_change=can_change, problem_id=problem_id,
                           can_configure=auth.current_user().can_configure and perm >= Permission.READ_WRITE)


@bp.get("/events")
def events() -> Any:
    svc = services()
    scope = auth.scope()
    args = request.args
    now = int(time.time())
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    triggerid = int_arg(args, "triggerid", None, 1, 2**31 - 1)
    start, end, ftext, ttext = time_range(args, now, "now-7d")
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    if csv_export.wants_csv():
        return exports.events(scope, triggerid=triggerid, hostids=hostids, start=start, end=end)
    page = problems_repo().events(scope, triggerid=triggerid, hostids=hostids, start=start, end=end, limit=PAGE,
                                  offset=(page_no - 1) * PAGE)
    return render_template("events.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), hosts=svc.browse.host_names(scope),
                           f={"hostid": hostids or [], "triggerid": triggerid, "from": ftext, "to": ttext})


@bp.app_template_filter("duration")
def duration_filter(seconds: int) -> str:
    from vigil.web import format as fmt

    return fmt.duration(seconds)


ACTION_BITS = [(1, "closed"), (2, "acknowledged"), (4, "commented"), (8, "changed severity"), (16, "unacknowledged")]


@bp.app_template_filter("ack_actions")
def ack_actions(action: int) -> str:
    return ", ".join(label for bit, label in ACTION_BITS if action & bit)
