"""Configuration → Actions: trigger actions with their conditions (severity, host group, host, tag,
trigger name, maintenance status; and/or, and, or), escalation operations (users and user groups via
a media type, steps, step duration), recovery and update operations."""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config import alerting as al
from vigil.server.config.alerting_browse import AlertingBrowse
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Severity
from vigil.web import auth
from vigil.web.alerting_forms import action_doc, config_errors, parse
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import FormErrors
from vigil.web.pages.bulk import bulk_change
from vigil.web.params import int_arg, text_arg

bp = Blueprint("actions", __name__)
PAGE = 50
SECTIONS = ("operations", "recovery_operations", "update_operations")


def browse() -> AlertingBrowse:
    return AlertingBrowse(services().engine)


def _spec(actionid: int) -> al.ActionSpec:
    a = browse().action(actionid)
    if a is None:
        raise NotFound(f"actionid: no action {actionid}", "actionid")
    return a


def save(doc: Any, actionid: int | None, full: bool = False) -> int:
    """Parse an actions entry and write it; FormErrors naming the field (or the row), nothing written."""
    spec = parse("action", doc, al.action_from_doc, "operations", full)
    try:
        return services().repo.save_alerting("action", spec, actionid)
    except ConfigError as e:
        raise config_errors(e, "action", "operations", full) from None


def condition_text(c: al.ConditionSpec) -> str:
    kind = al.CONDITION_TYPE_LABELS[c.type]
    op = al.OPERATOR_LABELS[c.operator]
    if kind == "maintenance":
        return f"problem is {'suppressed' if op == 'yes' else 'not suppressed'}"
    value = al.SEVERITY_LABELS[Severity(int(c.value))] if kind == "severity" else c.value
    if kind == "tag_value":
        return f"tag {c.value2} value {op} {value}"
    return f"{kind.replace('_', ' ')} {op} {value}"


@bp.get("/config/actions")
def index() -> Any:
    auth.require_configure()
    args = request.args
    status = text_arg(args, "status")
    if status not in ("", "enabled", "disabled"):
        raise WebError("status: enabled or disabled", "status")
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    search = text_arg(args, "search")
    b = browse()
    page = b.actions(search=search, enabled=None if not status else status == "enabled", limit=PAGE,
                     offset=(page_no - 1) * PAGE)
    cfg = services().repo.alerting() if page.rows else None
    details = {r.actionid: cfg.actions.get(r.actionid) for r in page.rows} if cfg else {}
    return render_template("actions.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), f={"search": search, "status": status},
                           details=details, condition_text=condition_text)


def _display(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the form shows it: default operators filled in, blank rows to add more."""
    v = copy.deepcopy(doc)
    for c in v.setdefault("conditions", []):
        if c.get("type") in al.CONDITION_OPERATORS:
            c.setdefault("operator", al.CONDITION_OPERATORS[c["type"]][0])
    v["conditions"] = list(v["conditions"]) + [{} for _ in range(3)]
    # An autoregistration action's host operations have fields of their own, after the messages.
    host = [op for op in v.get("operations") or [] if any(k in al.HOST_OPERATION_KINDS for k in op)]
    v["operations"] = [op for op in v.get("operations") or [] if op not in host]
    h: dict[str, Any] = {"add_host": False, "add_to_groups": "", "link_templates": "", "add_host_tags": "",
                         "status": ""}
    for op in host:
        for k, val in op.items():
            if k in ("add_to_groups", "link_templates") and isinstance(val, list):
                h[k] = ", ".join(map(str, val))
            elif k == "add_host_tags" and isinstance(val, list):
                h[k] = ", ".join(f"{t.get('tag', '')}:{t.get('value', '')}" if t.get("value") else str(t.get("tag", ""))
                                 for t in val if isinstance(t, dict))
            elif k in ("enable_host", "disable_host"):
                h["status"] = k
            elif k == "add_host":
                h["add_host"] = True
    v["host_ops"] = h
    v["host_op_start"] = len(v["operations"])
    for s in SECTIONS:
        v[s] = list(v.get(s) or []) + [{}]
    return v


def _form(doc: dict[str, Any], errors: dict[str, str], actionid: int | None) -> Any:
    svc = services()
    b = browse()
    return render_template(
        "action_form.html", v=_display(doc), errors=errors, actionid=actionid,
        condition_types=al.CONDITION_TYPES, operators=al.CONDITION_OPERATORS, evaltypes=al.EVALTYPE_NAMES,
        event_sources=list(al.EVENT_SOURCE_NAMES),
        severity_names=list(al.SEVERITY_NAMES), users=[u.username for u in svc.users.users()],
        user_groups=[n for _, n in b.user_group_names()], media_types=[n for _, n in b.media_type_names()],
        host_groups=[n for _, n in svc.browse.host_groups()], hosts=[h for h, _ in b.host_picks()],
    ), 400 if errors else 200


@bp.route("/config/actions/new", methods=["GET", "POST"])
def create() -> Any:
    auth.require_configure()
    if request.method == "POST":
        doc = action_doc(request.form)
        try:
            aid = save(doc, None)
        except FormErrors as e:
            return _form(doc, e.errors, None)
        flash(f"Action {doc['name']} added.")
        return redirect(url_for("actions.edit", actionid=aid))
    return _form({"name": "", "step_duration": "1h", "conditions": [], "operations": []}, {}, None)


@bp.route("/config/actions/<int:actionid>", methods=["GET", "POST"])
def edit(actionid: int) -> Any:
    auth.require_configure()
    old = _spec(actionid)
    if request.method == "POST":
        doc = action_doc(request.form)
        try:
            save(doc, actionid)
        except FormErrors as e:
            return _form(doc, e.errors, actionid)
        flash(f"Action {doc['name']} updated.")
        return redirect(url_for("actions.edit", actionid=actionid))
    return _form(al.action_to_doc(old), {}, actionid)


@bp.post("/config/actions/delete")
def delete() -> Any:
    return bulk_change("action", "actionid", "action", browse().action, "actions.index")
