"""Triggers, media types, users, actions and maintenance as plain dataclasses.

These are what `vigil config import` reads from the YAML document (docs/config-format.md) and what
the trigger engine and the alerts room are handed by `ConfigRepo`. Severities, condition types and
operators use Zabbix's numbers (server/config/tables.py) so an operator's knowledge carries over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from vigil.server.config.tables import MediaKind, Severity


@dataclass
class TriggerSpec:
    name: str  # Zabbix's "description": the name, macros unexpanded
    expression: str
    recovery_expression: str = ""  # '' : the problem ends when the expression is false
    recovery_mode: int = 0  # 0 expression, 1 recovery expression, 2 none (closed by hand only)
    severity: Severity = Severity.NOT_CLASSIFIED
    multiple: bool = False  # a new problem event at every PROBLEM evaluation (Zabbix's "multiple")
    manual_close: bool = False
    enabled: bool = True
    description: str = ""  # Zabbix's "comments"
    opdata: str = ""
    tags: list[tuple[str, str]] = field(default_factory=list)
    # Triggers this one depends on, by "host:trigger name" ("name" alone: the same host/template).
    dependencies: list[str] = field(default_factory=list)


@dataclass
class MediaTypeSpec:
    name: str
    kind: MediaKind
    # email: smtp_server, smtp_port, smtp_helo, smtp_email (From), smtp_security (none|starttls|ssl),
    #        username, password, verify_peer, content_type (plain|html)
    # webhook: url, method, headers {name: value}, body, timeout (seconds), verify_tls
    # script: script (path), parameters [..], timeout
    # every kind: subject, message (default templates), recovery_subject, recovery_message,
    #             update_subject, update_message
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    max_attempts: int = 3
    attempt_interval: str = "10s"
    description: str = ""


@dataclass
class MediaSpec:
    media_type: str  # the media type's name
    send_to: str
    severity: int = 63  # a bit per Severity that is sent (63: all)
    period: str = "1-7,00:00-24:00"
    enabled: bool = True


@dataclass
class UserSpec:
    username: str
    name: str = ""
    surname: str = ""
    role: int = 1  # tables.Role
    groups: list[str] = field(default_factory=list)
    medias: list[MediaSpec] = field(default_factory=list)


@dataclass
class ConditionSpec:
    type: int  # Zabbix's conditiontype (tables.action_conditions)
    operator: int = 0
    value: str = ""
    value2: str = ""


@dataclass
class OperationSpec:
    # 0 send a message, 1 run a remote command; autoregistration actions also (Zabbix's numbers) 2 add
    # host, 4 add to host groups, 6 link templates, 8 enable host, 9 disable host, 13 add host tags
    kind: int = 0
    step_from: int = 1
    step_to: int = 1  # 0: every step from step_from on
    step_duration: str = "0"  # 0: the action's default
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    media_type: str | None = None  # None: every media of the user
    subject: str = ""
    message: str = ""
    command: str = ""
    execute_on: int = 1  # 0 the problem host's agent (system.run), 1 the server
    host_groups: list[str] = field(default_factory=list)  # kind 4, by name
    templates: list[str] = field(default_factory=list)  # kind 6, by name
    tags: list[tuple[str, str]] = field(default_factory=list)  # kind 13


@dataclass
class ActionSpec:
    name: str
    event_source: int = 0  # tables.EventSource
    enabled: bool = True
    step_duration: str = "1h"  # the default escalation step duration (esc_period)
    evaltype: int = 0  # 0 and/or, 1 and, 2 or
    pause_suppressed: bool = True
    conditions: list[ConditionSpec] = field(default_factory=list)
    operations: list[OperationSpec] = field(default_factory=list)
    recovery_operations: list[OperationSpec] = field(default_factory=list)
    update_operations: list[OperationSpec] = field(default_factory=list)


@dataclass
class TimePeriodSpec:
    type: int = 0  # 0 one time only, 2 daily, 3 weekly, 4 monthly
    every: int = 1
    month: int = 0
    dayofweek: int = 0
    day: int = 0
    start_time: int = 0  # seconds after midnight
    period: int = 3600
    start_date: int = 0


@dataclass
class MaintenanceSpec:
    name: str
    collect_data: bool = True  # Zabbix's maintenance_type 0 (with data collection)
    active_since: int = 0
    active_till: int = 0
    description: str = ""
    hosts: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    periods: list[TimePeriodSpec] = field(default_factory=list)


@dataclass
class AlertingConfig:
    """Everything the alerts room needs, read at once by `ConfigRepo.alerting()`.

    Specs name what they refer to as the document does (users, user groups and media types by name,
    condition values as below); the `*_ids` maps turn those names into ids. Condition values:
    host group and host by name, trigger as "host:trigger name", severity as its number ("4"),
    time period as Zabbix writes it ("1-5,09:00-18:00"), tag / tag value as Zabbix stores them
    (tag value: value = the value, value2 = the tag name).
    """

    media_types: dict[int, MediaTypeSpec] = field(default_factory=dict)
    users: dict[int, UserSpec] = field(default_factory=dict)
    user_groups: dict[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # id -> (name, userids)
    actions: dict[int, ActionSpec] = field(default_factory=dict)
    maintenances: dict[int, MaintenanceSpec] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)  # username -> userid
    media_type_ids: dict[str, int] = field(default_factory=dict)  # name -> mediatypeid
    group_ids: dict[str, int] = field(default_factory=dict)  # user group name -> usrgrpid
    host_groups: dict[int, tuple[str, ...]] = field(default_factory=dict)  # hostid -> its host group names
    host_ids: dict[str, int] = field(default_factory=dict)  # host name -> hostid (hosts, not templates)
    trigger_ids: dict[str, int] = field(default_factory=dict)  # "host:trigger name" -> triggerid
    host_group_ids: dict[str, int] = field(default_factory=dict)  # host group name -> groupid


# --- From and to documents (docs/config-format.md). Errors name the field by its path. ----------

# Imported here, not at the top of model.py's import of this module, so the two do not import each other
# at load time: model.py imports these functions inside doc_from_dict.
from vigil.server.config.durations import DurationError, seconds  # noqa: E402
from vigil.server.config.model import (  # noqa: E402
    _MACRO,
    ConfigError,
    _check_keys,
    _names,
    _status,
    _tags,
    _text,
)
from vigil.server.config.tables import MEDIA_KIND_NAMES, SEVERITY_NAMES, EventSource, Role  # noqa: E402

SEVERITY_LABELS = {v: k for k, v in SEVERITY_NAMES.items()}
MEDIA_KIND_LABELS = {v: k for k, v in MEDIA_KIND_NAMES.items()}
ROLE_NAMES = {"user": Role.USER, "admin": Role.ADMIN, "super admin": Role.SUPER_ADMIN, "guest": Role.GUEST}
ROLE_LABELS = {v: k for k, v in ROLE_NAMES.items()}
EVENT_SOURCE_NAMES = {"triggers": EventSource.TRIGGERS, "internal": EventSource.INTERNAL,
                      "autoregistration": EventSource.AUTOREGISTRATION}
EVENT_SOURCE_LABELS = {v: k for k, v in EVENT_SOURCE_NAMES.items()}
EVALTYPE_NAMES = {"and/or": 0, "and": 1, "or": 2}
EVALTYPE_LABELS = {v: k for k, v in EVALTYPE_NAMES.items()}
# Zabbix's condition types and operators (CONDITION_TYPE_*, CONDITION_OPERATOR_*).
CONDITION_TYPES = {"host_group": 0, "host": 1, "trigger": 2, "trigger_name": 3, "severity": 4, "time_period": 6,
                   "maintenance": 16, "tag": 25, "tag_value": 26,
                   # autoregistration actions only
                   "proxy": 20, "host_name": 22, "host_metadata": 24}
AUTOREG_CONDITION_TYPES = ("proxy", "host_name", "host_metadata")
CONDITION_TYPE_LABELS = {v: k for k, v in CONDITION_TYPES.items()}
OPERATORS = {"equals": 0, "not equals": 1, "contains": 2, "not contains": 3, "in": 4, ">=": 5, "<=": 6,
             "not in": 7, "yes": 10, "no": 11, "matches": 8, "does not match": 9}
OPERATOR_LABELS = {v: k for k, v in OPERATORS.items()}
# Which operators each condition type takes, the first being the default (as Zabbix 6.0's frontend).
CONDITION_OPERATORS = {
    "host_group": ("equals", "not equals"), "host": ("equals", "not equals"), "trigger": ("equals", "not equals"),
    "trigger_name": ("contains", "not contains"), "severity": ("equals", "not equals", ">=", "<="),
    "time_period": ("in", "not in"), "maintenance": ("yes", "no"),
    "tag": ("equals", "not equals", "contains", "not contains"),
    "tag_value": ("equals", "not equals", "contains", "not contains"),
    "proxy": ("equals", "not equals"),
    "host_name": ("contains", "not contains", "matches", "does not match"),
    "host_metadata": ("contains", "not contains", "matches", "does not match"),
}
EXECUTE_ON = {"agent": 0, "server": 1}
EXECUTE_ON_LABELS = {v: k for k, v in EXECUTE_ON.items()}
PERIOD_TYPES = {"one_time": 0, "daily": 2, "weekly": 3, "monthly": 4}
PERIOD_TYPE_LABELS = {v: k for k, v in PERIOD_TYPES.items()}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
NEVER = 2**31 - 1  # active_till of a maintenance that does not end
_PERIOD = re.compile(r"[1-7](-[1-7])?,([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]")

TRIGGER_FIELDS = {"name", "expression", "recovery_expression", "recovery", "severity", "manual_close", "multiple",
                  "type", "status", "description", "opdata", "tags", "dependencies"}


def parse_expression(text: str, where: str) -> Any:
    """The parsed expression (vigil.server.triggers.expression), or ConfigError `where: ... at position N`."""
    from vigil.server.triggers.expression import ExpressionError, parse

    try:
        return parse(text)
    except ExpressionError as e:
        raise ConfigError(f"{where}: {e}") from None


def _bool(d: dict[str, Any], name: str, where: str, default: bool) -> bool:
    v = d.get(name, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{where}.{name}: expected true or false, got {v!r}")
    return v


def _int(d: dict[str, Any], name: str, where: str, default: int, lo: int, hi: int) -> int:
    v = d.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{name}: expected a whole number from {lo} to {hi}, got {v!r}")
    return v


def _choice(d: dict[str, Any], name: str, where: str, choices: dict[str, Any] | tuple[str, ...], default: str) -> str:
    v = d.get(name, default)
    if v not in choices:
        raise ConfigError(f"{where}.{name}: {v!r} is not one of {', '.join(choices)}")
    return str(v)


def _duration(d: dict[str, Any], name: str, where: str, default: str, hi: int | None = None,
              macros: bool = False) -> str:
    v = d.get(name, default)
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise ConfigError(f"{where}.{name}: expected a duration like 30s, 5m or 1h, got {v!r}")
    if macros and _MACRO.fullmatch(v.strip()):
        return v.strip()
    try:
        s = seconds(v, f"{where}.{name}")
    except DurationError as e:
        raise ConfigError(str(e)) from None
    if hi is not None and s > hi:
        raise ConfigError(f"{where}.{name}: {v!r} is longer than {hi} seconds")
    return v.strip()


def _list(d: dict[str, Any], name: str, where: str) -> list[Any]:
    v = d.get(name) or []
    if not isinstance(v, list):
        raise ConfigError(f"{where}.{name}: expected a list")
    return v


def _mapping(v: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping with at least {what}")
    return v


def _unique(names: list[str], where: str, field_: str) -> None:
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"{where}[{i}].{field_}: {n!r} appears twice (also {where}[{names.index(n)}])")


# --- triggers ----------------------------------------------------------------------------------------------


def severity_from_doc(v: Any, where: str) -> Severity:
    if isinstance(v, str) and v.lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[v.lower()]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 5:
        return Severity(v)  # Zabbix's number
    raise ConfigError(f"{where}: {v!r} is not one of {', '.join(SEVERITY_NAMES)}")


def trigger_from_doc(d: Any, where: str) -> TriggerSpec:
    d = _mapping(d, where, "'name' and 'expression'")
    _check_keys(d, TRIGGER_FIELDS, where)
    name = _text(d, "name", where)
    if not name.strip():
        raise ConfigError(f"{where}.name: required")
    expression = _text(d, "expression", where, limit=65535)
    if not parse_expression(expression, f"{where}.expression").functions:
        raise ConfigError(f"{where}.expression: {expression!r} reads no item: a trigger expression needs at least "
                          "one function of an item, like last(/host/key)")
    recovery_expression = _text(d, "recovery_expression", where, "", 65535)
    recovery = _choice(d, "recovery", where, ("expression", "recovery_expression", "none"),
                       "recovery_expression" if recovery_expression else "expression")
    if recovery == "recovery_expression" and not recovery_expression:
        raise ConfigError(f"{where}.recovery_expression: required with recovery: recovery_expression")
    if recovery != "recovery_expression" and recovery_expression:
        raise ConfigError(f"{where}.recovery_expression: only with recovery: recovery_expression "
                          f"(recovery is {recovery})")
    if recovery_expression:
        parse_expression(recovery_expression, f"{where}.recovery_expression")
    multiple = _bool(d, "multiple", where, False)
    if "type" in d:
        kind = _choice(d, "type", where, ("single", "multiple"), "single")
        if "multiple" in d and multiple != (kind == "multiple"):
            raise ConfigError(f"{where}.type: {kind} contradicts multiple: {str(multiple).lower()}")
        multiple = kind == "multiple"
    deps = _names(d, "dependencies", where)
    if name in deps:
        raise ConfigError(f"{where}.dependencies: a trigger cannot depend on itself")
    return TriggerSpec(
        name=name, expression=expression, recovery_expression=recovery_expression,
        recovery_mode={"expression": 0, "recovery_expression": 1, "none": 2}[recovery],
        severity=severity_from_doc(d.get("severity", "not classified"), f"{where}.severity"),
        multiple=multiple, manual_close=_bool(d, "manual_close", where, False), enabled=_status(d, where),
        description=_text(d, "description", where, "", 65535), opdata=_text(d, "opdata", where, ""),
        tags=_tags(d.get("tags"), f"{where}.tags"), dependencies=deps,
    )


def triggers_from_doc(d: dict[str, Any], where: str) -> list[TriggerSpec]:
    out = [trigger_from_doc(x, f"{where}.triggers[{i}]") for i, x in enumerate(_list(d, "triggers", where))]
    _unique([tr.name for tr in out], f"{where}.triggers", "name")
    return out


def trigger_to_doc(tr: TriggerSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": tr.name, "expression": tr.expression}
    if tr.recovery_mode == 1:
        d["recovery_expression"] = tr.recovery_expression
    elif tr.recovery_mode == 2:
        d["recovery"] = "none"
    d["severity"] = SEVERITY_LABELS[Severity(tr.severity)]
    if tr.multiple:
        d["multiple"] = True
    if tr.manual_close:
        d["manual_close"] = True
    if not tr.enabled:
        d["status"] = "disabled"
    if tr.description:
        d["description"] = tr.description
    if tr.opdata:
        d["opdata"] = tr.opdata
    if tr.tags:
        d["tags"] = [{"tag": k, "value": v} for k, v in tr.tags]
    if tr.dependencies:
        d["dependencies"] = list(tr.dependencies)
    return d


# --- media types -------------------------------------------------------------------------------------------

MESSAGE_FIELDS = ("subject", "message", "recovery_subject", "recovery_message", "update_subject", "update_message")
UNSET = object()  # a parameter left out of params when the document does not give it (delivery decides)
# Each kind's parameters with their defaults (filled in on import, left out of an export when unchanged);
# None: required. smtp_port unset: 25, 587 with starttls, 465 with ssl (delivery's choice by smtp_security).
MEDIA_PARAMS: dict[MediaKind, dict[str, Any]] = {
    MediaKind.EMAIL: {"smtp_server": None, "smtp_port": UNSET, "smtp_helo": "", "smtp_email": None,
                      "smtp_security": "none", "username": "", "password": "", "verify_peer": False,
                      "verify_host": False, "ca_file": UNSET, "content_type": "plain"},
    MediaKind.WEBHOOK: {"url": None, "method": "POST", "headers": {}, "body": "", "timeout": 30, "verify_tls": True,
                        "ca_file": UNSET},
    MediaKind.SCRIPT: {"script": None, "parameters": [], "timeout": 30},
}
MEDIA_TYPE_FIELDS = {"name", "type", "status", "max_attempts", "attempt_interval", "description", *MESSAGE_FIELDS}


def _media_param(kind: MediaKind, name: str, v: Any, where: str) -> Any:
    w = f"{where}.{name}"
    if name in ("smtp_port",):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
            raise ConfigError(f"{w}: expected a port number from 1 to 65535, got {v!r}")
        return v
    if name == "timeout":
        s = _duration({"timeout": v}, "timeout", where, "30s")
        n = seconds(s)
        if not 1 <= n <= 60:
            raise ConfigError(f"{w}: {v!r} is outside 1s..60s (Zabbix's media type time-out range)")
        return n
    if name in ("verify_peer", "verify_host", "verify_tls"):
        if not isinstance(v, bool):
            raise ConfigError(f"{w}: expected true or false, got {v!r}")
        return v
    if name == "headers":
        if not isinstance(v, dict) or not all(isinstance(k, str) and k for k in v):
            raise ConfigError(f"{w}: expected a mapping of header name: value")
        for k, x in v.items():
            if isinstance(x, bool | dict | list) or x is None:
                raise ConfigError(f"{w}.{k}: expected text, got {x!r}")
            if any(ch in k + str(x) for ch in "\r\n") or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k):
                raise ConfigError(f"{w}.{k}: not a valid HTTP header")
        return {k: str(x) for k, x in v.items()}
    if name == "parameters":
        if not isinstance(v, list) or not all(isinstance(x, str | int | float) and not isinstance(x, bool)
                                              for x in v):
            raise ConfigError(f"{w}: expected a list of text parameters")
        return [str(x) for x in v]
    if name == "smtp_security":
        if v not in ("none", "starttls", "ssl"):
            raise ConfigError(f"{w}: {v!r} is not one of none, starttls, ssl")
        return v
    if name == "content_type":
        if v not in ("plain", "html"):
            raise ConfigError(f"{w}: {v!r} is not one of plain, html")
        return v
    if name == "method":
        if not isinstance(v, str) or v.upper() not in ("POST", "PUT", "GET", "PATCH", "DELETE"):
            raise ConfigError(f"{w}: {v!r} is not one of POST, PUT, GET, PATCH, DELETE")
        return v.upper()
    return _text({name: v}, name, where, limit=65535 if name == "body" else 2048)


def media_type_from_doc(d: Any, where: str) -> MediaTypeSpec:
    d = _mapping(d, where, "'name' and 'type'")
    name = _text(d, "name", where, limit=100)
    if not name.strip():
        raise ConfigError(f"{where}.name: required")
    kind = MEDIA_KIND_NAMES[_choice(d, "type", where, MEDIA_KIND_NAMES, "")] if "type" in d else None
    if kind is None:
        raise ConfigError(f"{where}.type: required: one of {', '.join(MEDIA_KIND_NAMES)}")
    defaults = MEDIA_PARAMS[kind]
    _check_keys(d, MEDIA_TYPE_FIELDS | set(defaults), where)
    params: dict[str, Any] = {}
    for p, default in defaults.items():
        if p not in d or d[p] is None:
            if default is None:
                raise ConfigError(f"{where}.{p}: required for a {MEDIA_KIND_LABELS[kind]} media type")
            if default is not UNSET:
                params[p] = default
        else:
            params[p] = _media_param(kind, p, d[p], where)
    for p in MESSAGE_FIELDS:
        if p in d:
            params[p] = _text(d, p, where, limit=65535)
    if kind == MediaKind.WEBHOOK and not re.match(r"(?i)https?://[^/\s]+", params["url"]):
        raise ConfigError(f"{where}.url: {params['url']!r} is not an http:// or https:// URL")
    if kind == MediaKind.EMAIL:
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", params["smtp_email"]):
            raise ConfigError(f"{where}.smtp_email: {params['smtp_email']!r} is not an e-mail address")
        if not params["smtp_server"].strip():
            raise ConfigError(f"{where}.smtp_server: required for an email media type")
    if kind == MediaKind.SCRIPT and not params["script"].strip():
        raise ConfigError(f"{where}.script: required for a script media type")
    return MediaTypeSpec(
        name=name, kind=kind, params=params, enabled=_status(d, where),
        max_attempts=_int(d, "max_attempts", where, 3, 1, 100),
        attempt_interval=_duration(d, "attempt_interval", where, "10s", hi=3600),
        description=_text(d, "description", where, "", 65535),
    )


def media_type_to_doc(m: MediaTypeSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": m.name, "type": MEDIA_KIND_LABELS[MediaKind(m.kind)]}
    for p, default in MEDIA_PARAMS[MediaKind(m.kind)].items():
        if p in m.params and m.params[p] != default:
            d[p] = m.params[p]
    for p in MESSAGE_FIELDS:
        if p in m.params:
            d[p] = m.params[p]
    if not m.enabled:
        d["status"] = "disabled"
    if m.max_attempts != 3:
        d["max_attempts"] = m.max_attempts
    if m.attempt_interval != "10s":
        d["attempt_interval"] = m.attempt_interval
    if m.description:
        d["description"] = m.description
    return d


# --- user groups and users ---------------------------------------------------------------------------------


def user_groups_from_doc(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise ConfigError("user_groups: expected a list of names (or {name: NAME})")
    out = []
    for i, g in enumerate(v):
        where = f"user_groups[{i}]"
        if isinstance(g, dict):
            _check_keys(g, {"name"}, where)
            g = _text(g, "name", where, limit=64)
        elif not isinstance(g, str):
            raise ConfigError(f"{where}: expected a name")
        if not g.strip() or len(g) > 64:
            raise ConfigError(f"{where}: a user group name is 1 to 64 characters")
        out.append(g.strip())
    for i, n in enumerate(out):
        if n in out[:i]:
            raise ConfigError(f"user_groups[{i}]: {n!r} appears twice (also user_groups[{out.index(n)}])")
    return out


def severity_mask_from_doc(v: Any, where: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v <= 63:
            raise ConfigError(f"{where}: {v} is not a bitmask of severities (0..63)")
        return v
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{where}: expected a list of severity names or a bitmask (63: all)")
    mask = 0
    for i, n in enumerate(names):
        mask |= 1 << severity_from_doc(n, f"{where}[{i}]")
    return mask


def severity_mask_to_doc(mask: int) -> list[str] | None:
    """None for every severity (the default)."""
    if mask == 63:
        return None
    return [SEVERITY_LABELS[s] for s in Severity if mask & (1 << s)]


def media_from_doc(d: Any, where: str) -> MediaSpec:
    d = _mapping(d, where, "'media_type' and 'send_to'")
    _check_keys(d, {"media_type", "send_to", "severity", "period", "status"}, where)
    period = _text(d, "period", where, "1-7,00:00-24:00", 1024)
    if "{$" not in period and not all(_PERIOD.fullmatch(p.strip()) for p in period.rstrip(";").split(";")):
        raise ConfigError(f"{where}.period: {period!r} is not a time period like 1-5,09:00-18:00 "
                          "(days 1-7, Monday first; several joined with ';')")
    send_to = d.get("send_to")
    if isinstance(send_to, list) and send_to and all(isinstance(x, str) for x in send_to):
        send_to = "\n".join(send_to)
    return MediaSpec(
        media_type=_text(d, "media_type", where, limit=100),
        send_to=_text({"send_to": send_to}, "send_to", where, limit=1024),
        severity=severity_mask_from_doc(d.get("severity", 63), f"{where}.severity"),
        period=period, enabled=_status(d, where),
    )


def user_from_doc(d: Any, where: str) -> UserSpec:
    d = _mapping(d, where, "'username'")
    _check_keys(d, {"username", "name", "surname", "role", "groups", "medias"}, where)
    username = _text(d, "username", where, limit=100)
    if not username.strip():
        raise ConfigError(f"{where}.username: required")
    return UserSpec(
        username=username, name=_text(d, "name", where, "", 100), surname=_text(d, "surname", where, "", 100),
        role=int(ROLE_NAMES[_choice(d, "role", where, ROLE_NAMES, "user")]), groups=_names(d, "groups", where),
        medias=[media_from_doc(m, f"{where}.medias[{i}]") for i, m in enumerate(_list(d, "medias", where))],
    )


def user_to_doc(u: UserSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"username": u.username}
    if u.name:
        d["name"] = u.name
    if u.surname:
        d["surname"] = u.surname
    if u.role != Role.USER:
        d["role"] = ROLE_LABELS[Role(u.role)]
    if u.groups:
        d["groups"] = list(u.groups)
    medias = []
    for m in u.medias:
        md: dict[str, Any] = {"media_type": m.media_type, "send_to": m.send_to}
        sev = severity_mask_to_doc(m.severity)
        if sev is not None:
            md["severity"] = sev
        if m.period != "1-7,00:00-24:00":
            md["period"] = m.period
        if not m.enabled:
            md["status"] = "disabled"
        medias.append(md)
    if medias:
        d["medias"] = medias
    return d


# --- actions -----------------------------------------------------------------------------------------------


def condition_from_doc(d: Any, where: str) -> ConditionSpec:
    d = _mapping(d, where, "'type'")
    _check_keys(d, {"type", "operator", "value", "value2"}, where)
    kind = _choice(d, "type", where, CONDITION_TYPES, "") if "type" in d else None
    if kind is None:
        raise ConfigError(f"{where}.type: required: one of {', '.join(CONDITION_TYPES)}")
    allowed = CONDITION_OPERATORS[kind]
    op = d.get("operator", allowed[0])
    if op not in allowed:
        raise ConfigError(f"{where}.operator: {op!r} is not one of {', '.join(allowed)} for a {kind} condition")
    value = d.get("value", "")
    value2 = _text(d, "value2", where, "")
    if kind == "maintenance":
        if "value" in d:
            raise ConfigError(f"{where}.value: a maintenance condition has no value (operator yes or no)")
        value = ""
    elif kind == "severity":
        value = str(int(severity_from_doc(value, f"{where}.value")))
    else:
        value = _text(d, "value", where, None)
        if not value.strip():
            raise ConfigError(f"{where}.value: required for a {kind} condition")
        if kind == "time_period" and "{$" not in value and not all(
                _PERIOD.fullmatch(p.strip()) for p in value.rstrip(";").split(";")):
            raise ConfigError(f"{where}.value: {value!r} is not a time period like 1-5,09:00-18:00")
        if op in ("matches", "does not match"):
            try:
                re.compile(value)
            except re.error as e:
                raise ConfigError(f"{where}.value: {value!r} is not a regular expression: {e}") from None
        if kind == "tag_value" and not value2.strip():
            raise ConfigError(f"{where}.value2: the tag name is required for a tag_value condition "
                              "(value is the tag's value)")
    if kind != "tag_value" and "value2" in d:
        raise ConfigError(f"{where}.value2: only a tag_value condition has value2 (the tag name)")
    return ConditionSpec(type=CONDITION_TYPES[kind], operator=OPERATORS[op], value=value, value2=value2)


def condition_to_doc(c: ConditionSpec) -> dict[str, Any]:
    kind = CONDITION_TYPE_LABELS[c.type]
    d: dict[str, Any] = {"type": kind}
    op = OPERATOR_LABELS[c.operator]
    if op != CONDITION_OPERATORS[kind][0]:
        d["operator"] = op
    if kind == "severity":
        d["value"] = SEVERITY_LABELS[Severity(int(c.value))]
    elif kind != "maintenance":
        d["value"] = c.value
    if kind == "tag_value":
        d["value2"] = c.value2
    return d


OPERATION_FIELDS = {"send_to_users", "send_to_groups", "media_type", "subject", "message", "command", "execute_on"}
STEP_FIELDS = {"step_from", "step_to", "step_duration"}
# An autoregistration action's host operations (Zabbix's operation types), each one key of its own.
HOST_OPERATION_KINDS = {"add_host": 2, "add_to_groups": 4, "link_templates": 6, "enable_host": 8,
                        "disable_host": 9, "add_host_tags": 13}
HOST_OPERATION_LABELS = {v: k for k, v in HOST_OPERATION_KINDS.items()}


def host_operation_from_doc(d: dict[str, Any], where: str) -> OperationSpec:
    keys = [k for k in d if k in HOST_OPERATION_KINDS]
    if len(keys) != 1 or len(d) != 1:
        raise ConfigError(f"{where}: a host operation is one of {', '.join(HOST_OPERATION_KINDS)} alone, "
                          f"got {', '.join(map(str, d))}")
    name = keys[0]
    op = OperationSpec(kind=HOST_OPERATION_KINDS[name])
    if name in ("add_host", "enable_host", "disable_host"):
        if d[name] is not True:
            raise ConfigError(f"{where}.{name}: must be true")
    elif name == "add_to_groups":
        op.host_groups = _names(d, name, where)
        if not op.host_groups:
            raise ConfigError(f"{where}.{name}: at least one host group")
    elif name == "link_templates":
        op.templates = _names(d, name, where)
        if not op.templates:
            raise ConfigError(f"{where}.{name}: at least one template")
    else:
        op.tags = _tags(d[name], f"{where}.{name}")
        if not op.tags:
            raise ConfigError(f"{where}.{name}: at least one tag")
        for i, (k, v) in enumerate(op.tags):
            if not k.strip() or len(k) > 255 or len(v) > 255:
                raise ConfigError(f"{where}.{name}[{i}]: a tag name of 1 to 255 characters and a value of at "
                                  "most 255")
    return op


def operation_from_doc(d: Any, where: str, steps: bool, autoreg: bool = False) -> OperationSpec:
    d = _mapping(d, where, "send_to_users, send_to_groups or command")
    if autoreg and any(k in HOST_OPERATION_KINDS for k in d):
        return host_operation_from_doc(d, where)
    _check_keys(d, OPERATION_FIELDS | (STEP_FIELDS if steps else set()), where)
    users, groups = _names(d, "send_to_users", where), _names(d, "send_to_groups", where)
    command = _text(d, "command", where, "", 65535)
    if command and (users or groups or "media_type" in d or "subject" in d or "message" in d):
        raise ConfigError(f"{where}: an operation either sends a message (send_to_users, send_to_groups, "
                          "media_type, subject, message) or runs a command, not both")
    if not command and not (users or groups):
        raise ConfigError(f"{where}: send_to_users, send_to_groups or command is required")
    if "execute_on" in d and not command:
        raise ConfigError(f"{where}.execute_on: only with command")
    op = OperationSpec(
        kind=1 if command else 0, users=users, groups=groups,
        media_type=_text(d, "media_type", where, limit=100) if "media_type" in d else None,
        subject=_text(d, "subject", where, ""), message=_text(d, "message", where, "", 65535), command=command,
        execute_on=EXECUTE_ON[_choice(d, "execute_on", where, EXECUTE_ON, "server")],
    )
    if steps:
        op.step_from = _int(d, "step_from", where, 1, 1, 99999)
        op.step_to = _int(d, "step_to", where, op.step_from, 0, 99999)
        if op.step_to and op.step_to < op.step_from:
            raise ConfigError(f"{where}.step_to: {op.step_to} is before step_from {op.step_from} "
                              "(0: every step from step_from on)")
        op.step_duration = _duration(d, "step_duration", where, "0", hi=7 * 86400, macros=True)
        s = op.step_duration
        if not _MACRO.fullmatch(s) and seconds(s) != 0 and seconds(s) < 60:
            raise ConfigError(f"{where}.step_duration: {s!r} is outside 0 (the action's) or 60s..7d")
    return op


def operation_to_doc(op: OperationSpec, steps: bool) -> dict[str, Any]:
    if op.kind in HOST_OPERATION_LABELS:
        name = HOST_OPERATION_LABELS[op.kind]
        if op.kind == 4:
            return {name: list(op.host_groups)}
        if op.kind == 6:
            return {name: list(op.templates)}
        if op.kind == 13:
            return {name: [{"tag": k, "value": v} for k, v in op.tags]}
        return {name: True}
    d: dict[str, Any] = {}
    if steps:
        d["step_from"] = op.step_from
        d["step_to"] = op.step_to
        if op.step_duration != "0":
            d["step_duration"] = op.step_duration
    if op.kind == 1:
        d["command"] = op.command
        d["execute_on"] = EXECUTE_ON_LABELS[op.execute_on]
        return d
    if op.users:
        d["send_to_users"] = list(op.users)
    if op.groups:
        d["send_to_groups"] = list(op.groups)
    if op.media_type is not None:
        d["media_type"] = op.media_type
    if op.subject:
        d["subject"] = op.subject
    if op.message:
        d["message"] = op.message
    return d


ACTION_FIELDS = {"name", "status", "event_source", "step_duration", "evaltype", "pause_suppressed", "conditions",
                 "operations", "recovery_operations", "update_operations"}


def action_from_doc(d: Any, where: str) -> ActionSpec:
    d = _mapping(d, where, "'name' and 'operations'")
    _check_keys(d, ACTION_FIELDS, where)
    name = _text(d, "name", where)
    if not name.strip():
        raise ConfigError(f"{where}.name: required")
    step = _duration(d, "step_duration", where, "1h", hi=7 * 86400, macros=True)
    if not _MACRO.fullmatch(step) and seconds(step) < 60:
        raise ConfigError(f"{where}.step_duration: {step!r} is outside 60s..7d")
    source = int(EVENT_SOURCE_NAMES[_choice(d, "event_source", where, EVENT_SOURCE_NAMES, "triggers")])
    autoreg = source == EventSource.AUTOREGISTRATION
    if autoreg:
        for key in ("recovery_operations", "update_operations"):
            if key in d:
                raise ConfigError(f"{where}.{key}: an autoregistration action has operations only")
    for i, c in enumerate(_list(d, "conditions", where)):
        kind = c.get("type") if isinstance(c, dict) else None
        if isinstance(kind, str) and kind in CONDITION_TYPES and (kind in AUTOREG_CONDITION_TYPES) != autoreg:
            allowed = AUTOREG_CONDITION_TYPES if autoreg else tuple(
                k for k in CONDITION_TYPES if k not in AUTOREG_CONDITION_TYPES)
            raise ConfigError(f"{where}.conditions[{i}].type: {kind!r} is not a condition of "
                              f"{'an autoregistration' if autoreg else 'a ' + EVENT_SOURCE_LABELS[EventSource(source)]}"
                              f" action (one of {', '.join(allowed)})")
    a = ActionSpec(
        name=name, event_source=source,
        enabled=_status(d, where), step_duration=step,
        evaltype=EVALTYPE_NAMES[_choice(d, "evaltype", where, EVALTYPE_NAMES, "and/or")],
        pause_suppressed=_bool(d, "pause_suppressed", where, True),
        conditions=[condition_from_doc(c, f"{where}.conditions[{i}]")
                    for i, c in enumerate(_list(d, "conditions", where))],
        operations=[operation_from_doc(o, f"{where}.operations[{i}]", not autoreg, autoreg)
                    for i, o in enumerate(_list(d, "operations", where))],
        recovery_operations=[operation_from_doc(o, f"{where}.recovery_operations[{i}]", False)
                             for i, o in enumerate(_list(d, "recovery_operations", where))],
        update_operations=[operation_from_doc(o, f"{where}.update_operations[{i}]", False)
                           for i, o in enumerate(_list(d, "update_operations", where))],
    )
    if not (a.operations or a.recovery_operations or a.update_operations):
        raise ConfigError(f"{where}: an action needs operations, recovery_operations or update_operations")
    return a


def action_to_doc(a: ActionSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": a.name}
    if not a.enabled:
        d["status"] = "disabled"
    if a.event_source != EventSource.TRIGGERS:
        d["event_source"] = EVENT_SOURCE_LABELS[EventSource(a.event_source)]
    if a.step_duration != "1h":
        d["step_duration"] = a.step_duration
    if a.evaltype:
        d["evaltype"] = EVALTYPE_LABELS[a.evaltype]
    if not a.pause_suppressed:
        d["pause_suppressed"] = False
    if a.conditions:
        d["conditions"] = [condition_to_doc(c) for c in a.conditions]
    autoreg = a.event_source == EventSource.AUTOREGISTRATION
    for name, steps in (("operations", not autoreg), ("recovery_operations", False), ("update_operations", False)):
        ops = getattr(a, name)
        if ops:
            d[name] = [operation_to_doc(o, steps) for o in ops]
    return d


# --- maintenance -------------------------------------------------------------------------------------------


def _time(d: dict[str, Any], name: str, where: str, default: int) -> int:
    """An ISO 8601 time (UTC when it has no offset) or epoch seconds."""
    v = d.get(name, default)
    if isinstance(v, datetime):
        v = v if v.tzinfo else v.replace(tzinfo=UTC)
        v = int(v.timestamp())
    elif isinstance(v, date):
        v = int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp())
    elif isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}.{name}: {v!r} is not an ISO time like 2026-12-01T09:00:00Z "
                              "or epoch seconds") from None
        v = int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= NEVER:
        raise ConfigError(f"{where}.{name}: expected an ISO time like 2026-12-01T09:00:00Z or epoch seconds, "
                          f"got {v!r}")
    return v


def time_to_doc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bits(v: Any, where: str, names: tuple[str, ...]) -> int:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: expected a list of {', '.join(names)}")
    mask = 0
    for i, n in enumerate(items):
        if not isinstance(n, str) or n.lower()[:3] not in names:
            raise ConfigError(f"{where}[{i}]: {n!r} is not one of {', '.join(names)}")
        mask |= 1 << names.index(n.lower()[:3])
    return mask


def bits_to_doc(mask: int, names: tuple[str, ...]) -> list[str]:
    return [n for i, n in enumerate(names) if mask & (1 << i)]


PERIOD_FIELDS = {"one_time": {"type", "start_date", "period"},
                 "daily": {"type", "start_time", "period", "every"},
                 "weekly": {"type", "start_time", "period", "every", "dayofweek"},
                 "monthly": {"type", "start_time", "period", "every", "dayofweek", "day", "month"}}


def period_from_doc(d: Any, where: str) -> TimePeriodSpec:
    d = _mapping(d, where, "'type'")
    kind = _choice(d, "type", where, PERIOD_TYPES, "one_time")
    _check_keys(d, PERIOD_FIELDS[kind], where)
    period = seconds(_duration(d, "period", where, "1h"))
    if not 60 <= period <= 86400 * 365 * 25:
        raise ConfigError(f"{where}.period: {d.get('period')!r} is outside 1m..25y")
    p = TimePeriodSpec(type=PERIOD_TYPES[kind], period=period)
    if kind == "one_time":
        if "start_date" not in d:
            raise ConfigError(f"{where}.start_date: required for a one_time period")
        p.start_date = _time(d, "start_date", where, 0)
        return p
    st = d.get("start_time", "00:00")
    if isinstance(st, int) and not isinstance(st, bool):
        raise ConfigError(f"{where}.start_time: {st!r} is a number; quote the time of day, start_time: \"09:30\" "
                          "(YAML reads 09:30 unquoted as a number)")
    m = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", st) if isinstance(st, str) else None
    if m is None:
        raise ConfigError(f"{where}.start_time: {st!r} is not a time of day like 09:30")
    p.start_time = int(m[1]) * 3600 + int(m[2]) * 60
    if kind == "daily":
        p.every = _int(d, "every", where, 1, 1, 999)
    elif kind == "weekly":
        p.every = _int(d, "every", where, 1, 1, 99)
        p.dayofweek = _bits(d.get("dayofweek"), f"{where}.dayofweek", DAYS)
    else:
        p.month = _bits(d.get("month"), f"{where}.month", MONTHS)
        if ("day" in d) == ("dayofweek" in d):
            raise ConfigError(f"{where}: a monthly period has either day (of the month) or dayofweek "
                              "(with every: the week of the month, 1..4, 5 the last)")
        if "day" in d:
            p.day = _int(d, "day", where, 1, 1, 31)
            if "every" in d:
                raise ConfigError(f"{where}.every: only with dayofweek in a monthly period")
        else:
            p.dayofweek = _bits(d.get("dayofweek"), f"{where}.dayofweek", DAYS)
            p.every = _int(d, "every", where, 1, 1, 5)
    return p


def _duration_to_doc(s: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


def period_to_doc(p: TimePeriodSpec) -> dict[str, Any]:
    kind = PERIOD_TYPE_LABELS[p.type]
    d: dict[str, Any] = {"type": kind}
    if kind == "one_time":
        d["start_date"] = time_to_doc(p.start_date)
    else:
        d["start_time"] = f"{p.start_time // 3600:02d}:{p.start_time % 3600 // 60:02d}"
    d["period"] = _duration_to_doc(p.period)
    if kind in ("daily", "weekly") or (kind == "monthly" and p.dayofweek):
        d["every"] = p.every
    if p.dayofweek:
        d["dayofweek"] = bits_to_doc(p.dayofweek, DAYS)
    if kind == "monthly":
        if p.day:
            d["day"] = p.day
        d["month"] = bits_to_doc(p.month, MONTHS)
    return d


def maintenance_from_doc(d: Any, where: str) -> MaintenanceSpec:
    d = _mapping(d, where, "'name', 'hosts' or 'groups', and 'periods'")
    _check_keys(d, {"name", "collect_data", "active_since", "active_till", "description", "hosts", "groups",
                    "periods"}, where)
    name = _text(d, "name", where, limit=128)
    if not name.strip():
        raise ConfigError(f"{where}.name: required")
    m = MaintenanceSpec(
        name=name, collect_data=_bool(d, "collect_data", where, True),
        active_since=_time(d, "active_since", where, 0), active_till=_time(d, "active_till", where, NEVER),
        description=_text(d, "description", where, "", 65535), hosts=_names(d, "hosts", where),
        groups=_names(d, "groups", where),
        periods=[period_from_doc(p, f"{where}.periods[{i}]") for i, p in enumerate(_list(d, "periods", where))],
    )
    if m.active_till <= m.active_since:
        raise ConfigError(f"{where}.active_till: must be after active_since")
    if not (m.hosts or m.groups):
        raise ConfigError(f"{where}: a maintenance needs hosts or groups")
    if not m.periods:
        raise ConfigError(f"{where}.periods: at least one period is required")
    return m


def maintenance_to_doc(m: MaintenanceSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": m.name}
    if not m.collect_data:
        d["collect_data"] = False
    if m.active_since:
        d["active_since"] = time_to_doc(m.active_since)
    if m.active_till != NEVER:
        d["active_till"] = time_to_doc(m.active_till)
    if m.description:
        d["description"] = m.description
    if m.hosts:
        d["hosts"] = list(m.hosts)
    if m.groups:
        d["groups"] = list(m.groups)
    d["periods"] = [period_to_doc(p) for p in m.periods]
    return d


def alerting_from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The top-level alerting sections of a document, parsed; names unique within each."""
    out: dict[str, Any] = {}
    if "media_types" in doc:
        out["media_types"] = [media_type_from_doc(x, f"media_types[{i}]")
                              for i, x in enumerate(_list(doc, "media_types", "document"))]
        _unique([m.name for m in out["media_types"]], "media_types", "name")
    if "user_groups" in doc:
        out["user_groups"] = user_groups_from_doc(doc["user_groups"] or [])
    if "users" in doc:
        out["users"] = [user_from_doc(x, f"users[{i}]") for i, x in enumerate(_list(doc, "users", "document"))]
        _unique([u.username for u in out["users"]], "users", "username")
    if "actions" in doc:
        out["actions"] = [action_from_doc(x, f"actions[{i}]") for i, x in enumerate(_list(doc, "actions", "document"))]
        _unique([a.name for a in out["actions"]], "actions", "name")
    if "maintenances" in doc:
        out["maintenances"] = [maintenance_from_doc(x, f"maintenances[{i}]")
                               for i, x in enumerate(_list(doc, "maintenances", "document"))]
        _unique([m.name for m in out["maintenances"]], "maintenances", "name")
    return out
