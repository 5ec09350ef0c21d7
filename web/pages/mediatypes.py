"""Configuration → Media types: list, create/edit/delete e-mail, webhook and script media types, and
"Send test", which sends one real message through the alerts room's media code and shows what the
SMTP server, the webhook receiver or the script answered."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.alerts import macros
from vigil.alerts.media import Context, MediaError, Message, send
from vigil.server.config import alerting as al
from vigil.server.config.alerting_browse import AlertingBrowse
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import MEDIA_KIND_NAMES, MediaKind
from vigil.server.store.alertlog import MediaType
from vigil.web import auth
from vigil.web.alerting_forms import config_errors, media_type_doc, media_type_form_values, parse
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import FormErrors
from vigil.web.pages.bulk import bulk_change
from vigil.web.params import int_arg, text_arg

bp = Blueprint("mediatypes", __name__)
PAGE = 50
KINDS = tuple(MEDIA_KIND_NAMES)  # email, script, webhook


def browse() -> AlertingBrowse:
    return AlertingBrowse(services().engine)


def _spec(mediatypeid: int) -> al.MediaTypeSpec:
    m = browse().media_type(mediatypeid)
    if m is None:
        raise NotFound(f"mediatypeid: no media type {mediatypeid}", "mediatypeid")
    return m


def save(doc: Any, mediatypeid: int | None, full: bool = False) -> int:
    """Parse a media_types entry and write it; FormErrors naming the field, nothing written."""
    spec = parse("media_type", doc, al.media_type_from_doc, full=full)
    try:
        return services().repo.save_alerting("media_type", spec, mediatypeid)
    except ConfigError as e:
        raise config_errors(e, "media_type", full=full) from None


def send_test(spec: al.MediaTypeSpec, mediatypeid: int, sendto: str, subject: str, message: str) -> str | None:
    """Send one message now through the media type; None when it went out, else what failed."""
    media = MediaType(mediatypeid=mediatypeid, name=spec.name, kind=spec.kind, enabled=spec.enabled,
                      params=dict(spec.params), maxattempts=1, attempt_interval="0s")
    ctx = Context(scripts_dir=services().settings.alert_scripts_path, timeout_cap=30.0)
    now = int(time.time())
    body = str(spec.params.get("body") or "") if spec.kind == MediaKind.WEBHOOK else ""
    if body.strip():
        # As the escalator does: a webhook's body template, rendered with JSON-escaped values, is the message.
        mctx = macros.MessageContext(eventid=0, clock=now, name=subject, severity=0, alert_id=0, alert_sendto=sendto,
                                     alert_subject=subject, alert_message=message, now=now)
        try:
            message = macros.render(body, mctx, json_escape=True)
        except macros.TemplateFailure as e:
            return f"media type {spec.name!r}: the body template: {e}"
    try:
        send(media, Message(alertid=0, sendto=sendto, subject=subject, message=message, clock=now), ctx)
    except MediaError as e:
        return str(e)
    except (OSError, ValueError) as e:  # a media module's own bug or an odd answer: still the operator's answer
        return f"media type {spec.name!r}: {type(e).__name__}: {e}"
    return None


def test_fields(data: Any) -> tuple[str, str, str, dict[str, str]]:
    errors: dict[str, str] = {}
    sendto = str(data.get("sendto") or "").strip()
    if not sendto:
        errors["sendto"] = "required: the address (or target) to send the test to"
    elif len(sendto) > 1024:
        errors["sendto"] = "longer than 1024 characters"
    subject = str(data.get("subject") or "Test message from Vigil")[:2048]
    message = str(data.get("message") or "This is a test message from Vigil.")[:65536]
    return sendto, subject, message, errors


@bp.get("/config/mediatypes")
def index() -> Any:
    auth.require_configure()
    args = request.args
    kind = text_arg(args, "type")
    if kind not in ("", *KINDS):
        raise WebError(f"type: one of {', '.join(KINDS)}", "type")
    status = text_arg(args, "status")
    if status not in ("", "enabled", "disabled"):
        raise WebError("status: enabled or disabled", "status")
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    search = text_arg(args, "search")
    page = browse().media_types(search=search, kind=int(MEDIA_KIND_NAMES[kind]) if kind else None,
                                enabled=None if not status else status == "enabled", limit=PAGE,
                                offset=(page_no - 1) * PAGE)
    return render_template("mediatypes.html", rows=page.rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)), kinds=KINDS,
                           f={"search": search, "type": kind, "status": status}, labels=al.MEDIA_KIND_LABELS)


def _form(v: dict[str, Any], errors: dict[str, str], mediatypeid: int | None,
          test: dict[str, Any] | None = None) -> Any:
    kind = v.get("type") if v.get("type") in KINDS else "email"
    v["type"] = kind
    return render_template("mediatype_form.html", v=v, errors=errors, mediatypeid=mediatypeid, kinds=KINDS,
                           test=test or {}), 400 if errors else 200


@bp.route("/config/mediatypes/new", methods=["GET", "POST"])
def create() -> Any:
    auth.require_configure()
    if request.method == "POST":
        doc = media_type_doc(request.form)
        try:
            mid = save(doc, None)
        except FormErrors as e:
            return _form(_redisplay(doc), e.errors, None)
        flash(f"Media type {doc['name']} added.")
        return redirect(url_for("mediatypes.edit", mediatypeid=mid))
    kind = request.args.get("type", "email")
    return _form({"type": kind, "enabled": True, "max_attempts": 3, "attempt_interval": "10s",
                  "smtp_security": "none", "method": "POST", "timeout": "30s", "verify_tls": True}, {}, None)


def _redisplay(doc: dict[str, Any]) -> dict[str, Any]:
    v = dict(doc)
    v["enabled"] = doc.get("status") == "enabled"
    v["headers"] = "\n".join(f"{k}: {x}" for k, x in (doc.get("headers") or {}).items())
    v["parameters"] = "\n".join(doc.get("parameters") or [])
    v["has_password"] = bool(doc.get("password"))
    v.pop("password", None)
    return v


@bp.route("/config/mediatypes/<int:mediatypeid>", methods=["GET", "POST"])
def edit(mediatypeid: int) -> Any:
    auth.require_configure()
    old = _spec(mediatypeid)
    if request.method == "POST":
        doc = media_type_doc(request.form, old)
        try:
            save(doc, mediatypeid)
        except FormErrors as e:
            return _form(_redisplay(doc), e.errors, mediatypeid)
        flash(f"Media type {doc['name']} updated.")
        return redirect(url_for("mediatypes.edit", mediatypeid=mediatypeid))
    v = media_type_form_values(old)
    if request.args.get("type") in KINDS:
        v["type"] = request.args["type"]
    return _form(v, {}, mediatypeid)


@bp.post("/config/mediatypes/<int:mediatypeid>/test")
def test(mediatypeid: int) -> Any:
    auth.require_configure()
    spec = _spec(mediatypeid)
    sendto, subject, message, errors = test_fields(request.form)
    result: dict[str, Any] = {"sendto": sendto, "subject": subject, "message": message}
    if errors:
        return _form(media_type_form_values(spec), {f"test_{k}": v for k, v in errors.items()}, mediatypeid,
                     result)
    result["error"] = send_test(spec, mediatypeid, sendto, subject, message)
    result["done"] = True
    return _form(media_type_form_values(spec), {}, mediatypeid, result)


@bp.post("/config/mediatypes/delete")
def delete() -> Any:
    return bulk_change("media_type", "mediatypeid", "media type", browse().media_type, "mediatypes.index")
