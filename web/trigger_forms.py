"""The trigger form and the triggers API: fields into a TriggerSpec with field errors, the rights to the
hosts an expression reads, the save through ConfigRepo, and the "would it fire now" preview."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.alerting import SEVERITY_LABELS, TriggerSpec, trigger_from_doc
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Permission, Severity
from vigil.server.triggers.expression import ExpressionError, parse
from vigil.server.triggers.preview import Preview, preview
from vigil.web import auth
from vigil.web.app import services
from vigil.web.forms import text_field
from vigil.web.triage import severity_arg, triggers_repo

_FIELD = re.compile(r"^trigger\.(\w+)(?:\[\d+\])?(?:\.\w+)?:\s*")
RECOVERY = {0: "expression", 1: "recovery_expression", 2: "none"}


@dataclass
class TriggerForm:
    name: str = ""
    expression: str = ""
    recovery: str = "expression"
    recovery_expression: str = ""
    severity: int = int(Severity.AVERAGE)
    multiple: bool = False
    manual_close: bool = False
    enabled: bool = True
    description: str = ""
    opdata: str = ""
    tags: list[tuple[str, str]] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)

    @property
    def tags_text(self) -> str:
        return "\n".join(f"{k}={v}" if v else k for k, v in self.tags)

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "expression": self.expression, "recovery": self.recovery,
                             "severity": SEVERITY_LABELS[Severity(self.severity)], "multiple": self.multiple,
                             "manual_close": self.manual_close, "status": "enabled" if self.enabled else "disabled",
                             "description": self.description, "opdata": self.opdata,
                             "tags": [{"tag": k, "value": v} for k, v in self.tags],
                             "dependencies": list(self.dependencies)}
        if self.recovery == "recovery_expression":
            d["recovery_expression"] = self.recovery_expression
        return d


def form_of(row: Any) -> TriggerForm:
    """A TriggerForm with a stored trigger's values (a TriggerRow)."""
    return TriggerForm(row.name, row.expression, RECOVERY.get(row.recovery_mode, "expression"),
                       row.recovery_expression, row.severity, row.multiple, row.manual_close, row.enabled,
                       row.comments, row.opdata, list(row.tags))


def _flag(data: Mapping[str, Any], name: str, default: bool, errors: dict[str, str], form: bool) -> bool:
    v = data.get(name)
    if form:
        return bool(v) and v not in ("0", "off", "false")
    if v is None:
        return default
    if not isinstance(v, bool):
        errors[name] = "expected true or false"
        return default
    return v


def parse_trigger(data: Mapping[str, Any], *, form: bool, base: TriggerForm | None = None) -> tuple[TriggerForm, dict]:
    """A TriggerForm and field errors from form fields (form=True) or a JSON object (missing fields keep
    `base`'s values)."""
    errors: dict[str, str] = {}
    b = base or TriggerForm()

    def get(name: str, default: Any) -> Any:
        return data.get(name, default) if not form else data.get(name, "")

    f = TriggerForm()
    f.name = text_field(get("name", b.name), "name", errors, 255)
    f.expression = text_field(get("expression", b.expression), "expression", errors, 65535)
    f.recovery = text_field(get("recovery", b.recovery), "recovery", errors, 32) or "expression"
    if f.recovery not in ("expression", "recovery_expression", "none"):
        errors["recovery"] = "expression, recovery_expression or none"
    f.recovery_expression = text_field(get("recovery_expression", b.recovery_expression), "recovery_expression",
                                  errors, 65535)
    sev = get("severity", b.severity)
    try:
        f.severity = severity_arg(str(sev)) if not isinstance(sev, bool) else -1
    except Exception:
        errors["severity"] = "0-5 or not classified, information, warning, average, high, disaster"
    if f.severity == -1:
        errors["severity"] = "0-5 or a severity name"
        f.severity = b.severity
    f.multiple = _flag(data, "multiple", b.multiple, errors, form)
    f.manual_close = _flag(data, "manual_close", b.manual_close, errors, form)
    if form:
        f.enabled = bool(data.get("enabled"))
    else:
        st = data.get("status", "enabled" if b.enabled else "disabled")
        if st not in ("enabled", "disabled"):
            errors["status"] = "enabled or disabled"
        f.enabled = st == "enabled"
    f.description = text_field(get("description", b.description), "description", errors, 65535)
    f.opdata = text_field(get("opdata", b.opdata), "opdata", errors, 255)
    tags = get("tags", [{"tag": k, "value": v} for k, v in b.tags])
    if isinstance(tags, str):
        parsed = []
        for n, line in enumerate(tags.splitlines(), 1):
            if not line.strip():
                continue
            k, _, v = line.partition("=")
            if not k.strip() or len(k) > 255 or len(v) > 255:
                errors["tags"] = f"line {n}: expected TAG or TAG=VALUE, each at most 255 characters"
                break
            parsed.append((k.strip(), v.strip()))
        f.tags = parsed
    elif isinstance(tags, list) and all(isinstance(x, dict) and isinstance(x.get("tag"), str) for x in tags):
        f.tags = [(x["tag"], str(x.get("value", ""))) for x in tags]
    else:
        errors["tags"] = "expected a list of {\"tag\", \"value\"} objects"
    deps = get("dependencies", b.dependencies)
    if isinstance(deps, str):
        f.dependencies = [x.strip() for x in deps.splitlines() if x.strip()]
    elif isinstance(deps, list) and all(isinstance(x, str) for x in deps):
        f.dependencies = deps
    else:
        errors["dependencies"] = "expected a list of trigger names"
    if not f.name and "name" not in errors:
        errors["name"] = "required"
    if not f.expression and "expression" not in errors:
        errors["expression"] = "required: a condition such as last(/host/key)>5"
    return f, errors


def expression_error(text: str) -> tuple[str, int] | None:
    """(message, position) of a syntax error in the expression, or None."""
    try:
        parse(text)
    except ExpressionError as e:
        return e.message, e.pos
    return None


def check_hosts(f: TriggerForm, errors: dict[str, str]) -> None:
    """The caller must be able to read every host the expressions name (a trigger on hidden data would leak it)."""
    browse = services().browse
    a = auth.access()
    for name, text in (("expression", f.expression), ("recovery_expression", f.recovery_expression)):
        if name in errors or not text:
            continue
        try:
            refs = parse(text).item_refs()
        except ExpressionError:
            continue
        for host, _ in sorted(refs):
            if host == "{HOST.HOST}":
                continue
            hid = browse.host_id(host)
            if hid is None:
                continue  # the save names it: no such host
            if a.host(browse.host_groups_of([hid])[hid]) < Permission.READ:
                errors[name] = f"you have no rights to host {host!r}"
                break


def save(host: str, f: TriggerForm, triggerid: int | None) -> int:
    """Validate through the configuration model and write through ConfigRepo; FormErrors-like dict on failure."""
    from vigil.web.forms import FormErrors

    try:
        spec: TriggerSpec = trigger_from_doc(f.to_doc(), "trigger")
        return services().repo.save_trigger(host, spec, triggerid)
    except ConfigError as e:
        raise FormErrors(dict([split_error(str(e))])) from None


def split_error(message: str) -> tuple[str, str]:
    m = _FIELD.match(message)
    if m:
        return m.group(1), message[m.end():]
    return "expression", message


def would_fire(text: str, hostid: int, host: str) -> Preview:
    svc = services()
    tb = triggers_repo()

    def lookup(refs: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, str]]:
        return {k: (v[0], v[1], v[3]) for k, v in tb.items_named(refs).items()}

    return preview(text, host, svc.store, lookup, svc.repo.macros_for(hostid))
