"""Media type, action, maintenance and user forms: HTML form fields into the configuration document's
shape (docs/config-format.md), parsed by the same functions `vigil config import` uses, so the form,
the JSON API and the YAML refuse the same input with the same words. Errors come back keyed by the
document path of the field at fault (`name`, `smtp_port`, `operations[0]`, `periods[1]`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vigil.server.config import alerting as al
from vigil.server.config.model import ConfigError
from vigil.web.forms import FormErrors
from werkzeug.datastructures import MultiDict

ROWS = 30  # at most this many condition / operation / period / media rows in one form
NAME_BAD = re.compile(r"[<>\x00-\x1f\x7f]")
# Lists a form shows as rows, each with its own error line; in other lists (groups, hosts) the field errs.
ROW_FIELDS = {"conditions", "operations", "recovery_operations", "update_operations", "medias", "periods"}


def error_field(message: str, prefix: str, default: str = "name", full: bool = False) -> tuple[str, str]:
    """('operations[0]', 'step_from: expected ...') from "action.operations[0].step_from: expected ...":
    the top-level field, or the row of a list, and the rest of the message. `full`: the whole path
    ('operations[0].step_from', 'expected ...'), as the API names fields."""
    path, sep, text = message.partition(": ")
    if not sep or not (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")):
        return default, message
    path = path[len(prefix):].lstrip(".")
    if not path:
        return default, text
    if full:
        return path, text
    m = re.match(r"(\w+(?:\[\d+\])?)\.?(.*)", path)
    if m is None:
        return default, text
    top, rest = m.group(1), m.group(2)
    if "[" in top and top.partition("[")[0] not in ROW_FIELDS:
        top, rest = top.partition("[")[0], ".".join(x for x in (top.partition("[")[2].rstrip("]"), rest) if x)
    return top, f"{rest}: {text}" if rest else text


def check_name(doc: dict[str, Any], field: str = "name", limit: int = 100) -> dict[str, str]:
    v = doc.get(field)
    if not isinstance(v, str) or not v.strip():
        return {field: "required"}
    if len(v) > limit:
        return {field: f"longer than {limit} characters"}
    if NAME_BAD.search(v):
        return {field: "may not contain <, > or control characters"}
    return {}


def parse(kind: str, doc: Any, from_doc: Callable[[Any, str], Any], default: str = "name",
          full: bool = False) -> Any:
    """The spec from a document object, or FormErrors keyed by field (by its whole path if `full`)."""
    if not isinstance(doc, dict):
        raise FormErrors({"body": "expected a JSON object"})
    errors = check_name(doc, "username" if kind == "user" else "name", 128 if kind == "maintenance" else 100)
    if errors:
        raise FormErrors(errors)
    try:
        return from_doc(doc, kind)
    except ConfigError as e:
        raise FormErrors(dict([error_field(str(e), kind, default, full)])) from None


def config_errors(e: ConfigError, kind: str, default: str = "name", full: bool = False) -> FormErrors:
    return FormErrors(dict([error_field(str(e), kind, default, full)]))


def _s(form: MultiDict, name: str, limit: int = 65535) -> str:
    return (form.get(name) or "")[:limit + 1]


def _num(text: str) -> int | str:
    t = text.strip()
    return int(t) if t.isdigit() and len(t) < 10 else t


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip()]


# --- media types -----------------------------------------------------------------------------------


def media_type_doc(form: MultiDict, old: al.MediaTypeSpec | None = None) -> dict[str, Any]:
    """The media_types entry the form describes. An empty password on edit keeps the stored one."""
    kind = _s(form, "type", 20)
    doc: dict[str, Any] = {"name": _s(form, "name", 1000).strip(), "type": kind,
                           "status": "enabled" if form.get("enabled") else "disabled",
                           "max_attempts": _num(_s(form, "max_attempts", 20) or "3"),
                           "attempt_interval": _s(form, "attempt_interval", 64).strip() or "10s"}
    if form.get("description"):
        doc["description"] = _s(form, "description")
    for p in ("subject", "message"):
        if form.get(p):
            doc[p] = _s(form, p)
    if kind == "email":
        for p in ("smtp_server", "smtp_helo", "smtp_email", "username"):
            doc[p] = _s(form, p, 2048).strip()
        port = _s(form, "smtp_port", 20).strip()
        if port:
            doc["smtp_port"] = _num(port)
        doc["smtp_security"] = _s(form, "smtp_security", 20) or "none"
        doc["content_type"] = _s(form, "content_type", 20) or "plain"
        doc["verify_peer"] = bool(form.get("verify_peer"))
        doc["verify_host"] = bool(form.get("verify_host"))
        password = _s(form, "password", 2048)
        if not password and old is not None and old.kind == al.MediaKind.EMAIL:
            password = str(old.params.get("password", ""))
        doc["password"] = password
    elif kind == "webhook":
        doc["url"] = _s(form, "url", 2048).strip()
        doc["method"] = _s(form, "method", 10) or "POST"
        headers: dict[str, str] = {}
        for line in _lines(_s(form, "headers")):
            k, sep, v = line.partition(":")
            headers[k.strip() if sep else line] = v.strip()
        doc["headers"] = headers
        doc["body"] = _s(form, "body")
        doc["timeout"] = _s(form, "timeout", 20).strip() or "30s"
        doc["verify_tls"] = bool(form.get("verify_tls"))
    elif kind == "script":
        doc["script"] = _s(form, "script", 2048).strip()
        doc["parameters"] = _lines(_s(form, "parameters"))
        doc["timeout"] = _s(form, "timeout", 20).strip() or "30s"
    return doc


def media_type_form_values(m: al.MediaTypeSpec) -> dict[str, Any]:
    """The form's values for a stored media type (the password is never sent back to the browser)."""
    doc = al.media_type_to_doc(m)
    v: dict[str, Any] = {**{k: x for k, x in m.params.items() if k != "password"}, **doc}
    v.pop("password", None)
    v.update(enabled=m.enabled, max_attempts=m.max_attempts, attempt_interval=m.attempt_interval)
    v["headers"] = "\n".join(f"{k}: {x}" for k, x in m.params.get("headers", {}).items())
    v["parameters"] = "\n".join(m.params.get("parameters", []))
    v["has_password"] = bool(m.params.get("password"))
    return v


# --- actions ---------------------------------------------------------------------------------------


def _operation(form: MultiDict, prefix: str, steps: bool) -> dict[str, Any] | None:
    users = [u for u in form.getlist(f"{prefix}-users") if u][:ROWS * 10]
    groups = [g for g in form.getlist(f"{prefix}-groups") if g][:ROWS * 10]
    media = _s(form, f"{prefix}-media_type", 100)
    subject, message = _s(form, f"{prefix}-subject"), _s(form, f"{prefix}-message")
    if not (users or groups or subject or message):
        return None
    op: dict[str, Any] = {}
    if users:
        op["send_to_users"] = users
    if groups:
        op["send_to_groups"] = groups
    if media:
        op["media_type"] = media
    if subject:
        op["subject"] = subject
    if message:
        op["message"] = message
    if steps:
        op["step_from"] = _num(_s(form, f"{prefix}-step_from", 20) or "1")
        op["step_to"] = _num(_s(form, f"{prefix}-step_to", 20) or "1")
        dur = _s(form, f"{prefix}-step_duration", 64).strip()
        if dur and dur != "0":
            op["step_duration"] = dur
    return op


def _host_operations(form: MultiDict) -> list[dict[str, Any]]:
    """An autoregistration action's host operations from the form's "Host operations" fields."""
    ops: list[dict[str, Any]] = []
    if form.get("host-add_host"):
        ops.append({"add_host": True})
    for name in ("add_to_groups", "link_templates"):
        names = [x.strip() for x in _s(form, f"host-{name}", 65535).split(",") if x.strip()]
        if names:
            ops.append({name: names})
    tags = []
    for part in _s(form, "host-add_host_tags", 65535).split(","):
        tag, _, value = part.partition(":")
        if tag.strip() or value.strip():
            tags.append({"tag": tag.strip(), "value": value.strip()})
    if tags:
        ops.append({"add_host_tags": tags})
    status = _s(form, "host-status", 20)
    if status in ("enable_host", "disable_host"):
        ops.append({status: True})
    elif status:
        ops.append({status: True})  # refused by action_from_doc, naming the operation
    return ops


def action_doc(form: MultiDict) -> dict[str, Any]:
    source = _s(form, "event_source", 40) or "triggers"
    if source == "autoregistration":
        doc: dict[str, Any] = {"name": _s(form, "name", 1000).strip(), "event_source": source,
                               "status": "enabled" if form.get("enabled") else "disabled",
                               "evaltype": _s(form, "evaltype", 20) or "and/or",
                               "conditions": _conditions(form)}
        ops = [_operation(form, f"operations-{i}", False) for i in range(ROWS)]
        doc["operations"] = [o for o in ops if o is not None] + _host_operations(form)
        return doc
    doc = {"name": _s(form, "name", 1000).strip(),
                           "status": "enabled" if form.get("enabled") else "disabled",
                           "step_duration": _s(form, "step_duration", 64).strip() or "1h",
                           "evaltype": _s(form, "evaltype", 20) or "and/or",
                           "pause_suppressed": bool(form.get("pause_suppressed"))}
    if source != "triggers":
        doc["event_source"] = source
    doc["conditions"] = _conditions(form)
    for section, steps in (("operations", True), ("recovery_operations", False), ("update_operations", False)):
        ops = [_operation(form, f"{section}-{i}", steps) for i in range(ROWS)]
        doc[section] = [o for o in ops if o is not None]
    return doc


def _conditions(form: MultiDict) -> list[dict[str, Any]]:
    conditions = []
    for i in range(ROWS):
        kind = _s(form, f"conditions-{i}-type", 40)
        if not kind:
            continue
        c: dict[str, Any] = {"type": kind}
        op = _s(form, f"conditions-{i}-operator", 40)
        if op:
            c["operator"] = op
        if kind != "maintenance":
            c["value"] = _s(form, f"conditions-{i}-value", 2048)
        if kind == "tag_value":
            c["value2"] = _s(form, f"conditions-{i}-value2", 255)
        conditions.append(c)
    return conditions


# --- maintenance -----------------------------------------------------------------------------------


def maintenance_doc(form: MultiDict) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": _s(form, "name", 1000).strip(),
                           "collect_data": form.get("collect_data") == "1",
                           "description": _s(form, "description"),
                           "hosts": [h for h in form.getlist("hosts") if h][:10000],
                           "groups": [g for g in form.getlist("groups") if g][:10000]}
    for f in ("active_since", "active_till"):
        v = _s(form, f, 64).strip()
        if v:
            doc[f] = v
    periods = []
    for i in range(ROWS):
        p = f"periods-{i}"
        kind = _s(form, f"{p}-type", 20)
        if not kind:
            continue
        d: dict[str, Any] = {"type": kind, "period": _s(form, f"{p}-period", 64).strip() or "1h"}
        if kind == "one_time":
            d["start_date"] = _s(form, f"{p}-start_date", 64).strip()
        else:
            d["start_time"] = _s(form, f"{p}-start_time", 20).strip() or "00:00"
            if kind in ("daily", "weekly"):
                d["every"] = _num(_s(form, f"{p}-every", 20) or "1")
            if kind in ("weekly", "monthly"):
                days = form.getlist(f"{p}-dayofweek")[:7]
                if days or kind == "weekly":
                    d["dayofweek"] = days
            if kind == "monthly":
                d["month"] = form.getlist(f"{p}-month")[:12]
                day = _s(form, f"{p}-day", 20).strip()
                if day:
                    d["day"] = _num(day)
                    d.pop("dayofweek", None)
                elif d.get("dayofweek"):
                    d["every"] = _num(_s(form, f"{p}-every", 20) or "1")
        periods.append(d)
    doc["periods"] = periods
    return doc


# --- users -----------------------------------------------------------------------------------------


def user_doc(form: MultiDict, username: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"username": username, "name": _s(form, "name", 1000).strip(),
                           "surname": _s(form, "surname", 1000).strip(), "role": _s(form, "role", 20),
                           "groups": [g for g in form.getlist("groups") if g][:1000]}
    medias = []
    for i in range(ROWS):
        p = f"medias-{i}"
        mt, send_to = _s(form, f"{p}-media_type", 100), _s(form, f"{p}-send_to", 2048).strip()
        if not mt and not send_to:
            continue
        sev = form.getlist(f"{p}-severity")[:6]
        medias.append({"media_type": mt, "send_to": send_to, "severity": sev or 0,
                       "period": _s(form, f"{p}-period", 1024).strip() or "1-7,00:00-24:00",
                       "status": "enabled" if form.get(f"{p}-enabled") else "disabled"})
    doc["medias"] = medias
    return doc
