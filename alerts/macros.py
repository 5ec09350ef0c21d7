"""Message templates: Zabbix macros ({HOST.NAME}, {EVENT.DURATION}, {$MACRO}...) in Jinja2 templates.

`render(template, ctx)` first expands the Zabbix macros, then renders the text as a sandboxed
Jinja2 template (autoescape off) with the variables `event`, `trigger`, `host`, `hosts`, `item`,
`items`, `alert`, `user`, `update` and `macros` (every macro by name without braces:
`macros["HOST.NAME"]`, `macros["$TEAM"]`).

A macro's value is never read as template syntax: outside Jinja tags it goes into the output as
is; inside a tag (`{% if "{TRIGGER.SEVERITY}" == "High" %}`) it becomes a string literal. With
`json_escape` (a webhook's JSON body) values are JSON-string-escaped, so a host name with a quote
keeps the body valid JSON. A known macro without a value gives `*UNKNOWN*` and an unknown one is
left as written, as Zabbix does. A broken template raises TemplateFailure, whose message is what
the alert log shows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

UNKNOWN = "*UNKNOWN*"
SEVERITY_NAMES = ("Not classified", "Information", "Warning", "Average", "High", "Disaster")

# Zabbix 6.0's default media type templates (without the operational data and URL lines).
DEFAULTS = {
    "problem": ("Problem: {EVENT.NAME}",
                "Problem started at {EVENT.TIME} on {EVENT.DATE}\nProblem name: {EVENT.NAME}\n"
                "Host: {HOST.NAME}\nSeverity: {EVENT.SEVERITY}\nOriginal problem ID: {EVENT.ID}\n"),
    "recovery": ("Resolved in {EVENT.DURATION}: {EVENT.NAME}",
                 "Problem has been resolved at {EVENT.RECOVERY.TIME} on {EVENT.RECOVERY.DATE}\n"
                 "Problem name: {EVENT.NAME}\nProblem duration: {EVENT.DURATION}\nHost: {HOST.NAME}\n"
                 "Severity: {EVENT.SEVERITY}\nOriginal problem ID: {EVENT.ID}\n"),
    "update": ("Updated problem in {EVENT.AGE}: {EVENT.NAME}",
               "{USER.FULLNAME} {EVENT.UPDATE.ACTION} problem at {EVENT.UPDATE.DATE} {EVENT.UPDATE.TIME}.\n"
               "{EVENT.UPDATE.MESSAGE}\n\nCurrent problem status is {EVENT.STATUS}, age is {EVENT.AGE}, "
               "acknowledged: {EVENT.ACK.STATUS}.\n"),
}


class TemplateFailure(ValueError):
    """A template that cannot be rendered; str() says where and why."""


@dataclass
class ItemFacts:
    itemid: int
    name: str
    key: str
    value: str | None = None  # the value at the event's time
    lastvalue: str | None = None
    units: str = ""


@dataclass
class HostFacts:
    hostid: int
    host: str
    name: str


@dataclass
class UpdateFacts:
    userid: int | None
    clock: int
    message: str
    action: int
    user_fullname: str = ""


@dataclass
class MessageContext:
    """Everything a message can name about one event (recovery and update when the message is one)."""

    eventid: int
    clock: int
    name: str
    severity: int
    value: int = 1
    acknowledged: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    triggerid: int | None = None
    trigger_name: str = ""
    trigger_expression: str = ""
    trigger_value: int | None = None  # 1 PROBLEM, 0 OK
    hosts: list[HostFacts] = field(default_factory=list)
    items: list[ItemFacts] = field(default_factory=list)
    recovery_eventid: int | None = None
    recovery_clock: int | None = None
    update: UpdateFacts | None = None
    user_fullname: str = ""
    alert_id: int | None = None
    alert_sendto: str = ""
    alert_subject: str = ""
    alert_message: str = ""
    user_macros: dict[str, str] = field(default_factory=dict)  # "{$NAME}" -> value
    now: int = 0  # 0: time.time()


def age(sec: int) -> str:
    """Zabbix's age format: "5m", "2h 5m", "1d 0h 5m"."""
    sec = max(0, int(sec))
    days, rest = divmod(sec, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    out = f"{days}d " if days else ""
    if days or hours:
        out += f"{hours}h "
    return out + f"{minutes}m"


def _date(t: int) -> str:
    return time.strftime("%Y.%m.%d", time.localtime(t))


def _time(t: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _update_action(action: int) -> str:
    words = []
    if action & 2:
        words.append("acknowledged")
    if action & 16:
        words.append("unacknowledged")
    if action & 4:
        words.append("commented")
    if action & 8:
        words.append("changed severity of")
    if action & 1:
        words.append("closed")
    return ", ".join(words) or "updated"


def values(ctx: MessageContext) -> dict[str, str | None]:
    """Every known macro's value (None: known, no value here) by name without braces."""
    now = ctx.now or int(time.time())
    sev = SEVERITY_NAMES[ctx.severity] if 0 <= ctx.severity < len(SEVERITY_NAMES) else str(ctx.severity)
    end = ctx.recovery_clock if ctx.recovery_clock is not None else now
    v: dict[str, str | None] = {
        "EVENT.ID": str(ctx.eventid),
        "EVENT.NAME": ctx.name,
        "EVENT.DATE": _date(ctx.clock),
        "EVENT.TIME": _time(ctx.clock),
        "EVENT.STATUS": "RESOLVED" if ctx.recovery_eventid is not None else "PROBLEM",
        "EVENT.VALUE": "0" if ctx.recovery_eventid is not None else str(ctx.value),
        "EVENT.SEVERITY": sev,
        "EVENT.NSEVERITY": str(ctx.severity),
        "EVENT.DURATION": age(end - ctx.clock),
        "EVENT.AGE": age(now - ctx.clock),
        "EVENT.TAGS": ", ".join(f"{t}:{val}" if val else t for t, val in ctx.tags),
        "EVENT.ACK.STATUS": "Yes" if ctx.acknowledged else "No",
        "EVENT.RECOVERY.ID": str(ctx.recovery_eventid) if ctx.recovery_eventid is not None else None,
        "EVENT.RECOVERY.DATE": _date(ctx.recovery_clock) if ctx.recovery_clock is not None else None,
        "EVENT.RECOVERY.TIME": _time(ctx.recovery_clock) if ctx.recovery_clock is not None else None,
        "EVENT.RECOVERY.STATUS": "RESOLVED" if ctx.recovery_eventid is not None else None,
        "EVENT.UPDATE.MESSAGE": ctx.update.message if ctx.update else None,
        "EVENT.UPDATE.ACTION": _update_action(ctx.update.action) if ctx.update else None,
        "EVENT.UPDATE.DATE": _date(ctx.update.clock) if ctx.update else None,
        "EVENT.UPDATE.TIME": _time(ctx.update.clock) if ctx.update else None,
        "USER.FULLNAME": (ctx.update.user_fullname if ctx.update else ctx.user_fullname) or None,
        "TRIGGER.ID": str(ctx.triggerid) if ctx.triggerid is not None else None,
        "TRIGGER.NAME": ctx.trigger_name or (ctx.name if ctx.triggerid is not None else None),
        "TRIGGER.SEVERITY": sev if ctx.triggerid is not None else None,
        "TRIGGER.NSEVERITY": str(ctx.severity) if ctx.triggerid is not None else None,
        "TRIGGER.EXPRESSION": ctx.trigger_expression or None,
        "TRIGGER.STATUS": None if ctx.trigger_value is None else ("PROBLEM" if ctx.trigger_value else "OK"),
        "TRIGGER.VALUE": None if ctx.trigger_value is None else str(ctx.trigger_value),
        "ALERT.ID": str(ctx.alert_id) if ctx.alert_id is not None else None,
        "ALERT.SENDTO": ctx.alert_sendto,
        "ALERT.SUBJECT": ctx.alert_subject,
        "ALERT.MESSAGE": ctx.alert_message,
    }
    for n in range(1, 10):
        suffix = "" if n == 1 else str(n)
        h = ctx.hosts[n - 1] if n <= len(ctx.hosts) else None
        it = ctx.items[n - 1] if n <= len(ctx.items) else None
        for s in {suffix, str(n)}:
            v[f"HOST.NAME{s}"] = h.name or h.host if h else None
            v[f"HOST.HOST{s}"] = h.host if h else None
            v[f"HOST.ID{s}"] = str(h.hostid) if h else None
            v[f"ITEM.ID{s}"] = str(it.itemid) if it else None
            v[f"ITEM.NAME{s}"] = it.name if it else None
            v[f"ITEM.KEY{s}"] = it.key if it else None
            v[f"ITEM.VALUE{s}"] = (it.value if it.value is not None else it.lastvalue) if it else None
            v[f"ITEM.LASTVALUE{s}"] = it.lastvalue if it else None
    return v


def variables(ctx: MessageContext, v: Mapping[str, str | None]) -> dict[str, Any]:
    """The Jinja variables: plain dicts and lists, nothing with methods to call."""
    host = ctx.hosts[0] if ctx.hosts else None
    item = ctx.items[0] if ctx.items else None

    def host_d(h: HostFacts) -> dict[str, Any]:
        return {"id": h.hostid, "host": h.host, "name": h.name or h.host}

    def item_d(i: ItemFacts) -> dict[str, Any]:
        return {"id": i.itemid, "name": i.name, "key": i.key, "value": i.value if i.value is not None else i.lastvalue,
                "lastvalue": i.lastvalue, "units": i.units}

    return {
        "event": {"id": ctx.eventid, "name": ctx.name, "clock": ctx.clock, "date": v["EVENT.DATE"],
                  "time": v["EVENT.TIME"], "status": v["EVENT.STATUS"], "value": int(v["EVENT.VALUE"] or 0),
                  "severity": v["EVENT.SEVERITY"], "nseverity": ctx.severity, "duration": v["EVENT.DURATION"],
                  "age": v["EVENT.AGE"], "tags": dict(ctx.tags), "acknowledged": ctx.acknowledged,
                  "recovery": None if ctx.recovery_eventid is None else {
                      "id": ctx.recovery_eventid, "clock": ctx.recovery_clock, "date": v["EVENT.RECOVERY.DATE"],
                      "time": v["EVENT.RECOVERY.TIME"]}},
        "trigger": None if ctx.triggerid is None else {
            "id": ctx.triggerid, "name": v["TRIGGER.NAME"], "severity": v["TRIGGER.SEVERITY"],
            "nseverity": ctx.severity, "expression": ctx.trigger_expression, "status": v["TRIGGER.STATUS"]},
        "host": host_d(host) if host else None,
        "hosts": [host_d(h) for h in ctx.hosts],
        "item": item_d(item) if item else None,
        "items": [item_d(i) for i in ctx.items],
        "update": None if ctx.update is None else {
            "message": ctx.update.message, "action": v["EVENT.UPDATE.ACTION"], "clock": ctx.update.clock,
            "user": ctx.update.user_fullname},
        "alert": {"id": ctx.alert_id, "sendto": ctx.alert_sendto, "subject": ctx.alert_subject,
                  "message": ctx.alert_message},
        "user": {"fullname": v["USER.FULLNAME"]},
        "macros": {k: (val if val is not None else UNKNOWN) for k, val in v.items()}
        | {k.strip("{}"): val for k, val in ctx.user_macros.items()},
    }


_MACRO = re.compile(r"\{(\$[A-Z0-9_.]+(?::(?:\"(?:[^\"\\]|\\.)*\"|[^}]*))?|[A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+)\}")
_TAG_OPEN = re.compile(r"\{([{%#])")
_TAG_CLOSE = {"{": "}}", "%": "%}", "#": "#}"}


def _lookup(name: str, v: Mapping[str, str | None], user_macros: Mapping[str, str]) -> str | None:
    """The value of a macro; None when it is not one we know (left as written)."""
    if name.startswith("$"):
        full = "{" + name + "}"
        if full in user_macros:
            return user_macros[full]
        base = "{" + name.split(":", 1)[0] + "}"
        return user_macros.get(base)
    if name in v:
        val = v[name]
        return UNKNOWN if val is None else val
    return None


def _esc(s: str, json_escape: bool) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1] if json_escape else s


def expand(text: str, ctx: MessageContext, json_escape: bool = False) -> str:
    """Zabbix macros only, no Jinja (remote commands, media type parameters)."""
    v = values(ctx)

    def sub(m: re.Match[str]) -> str:
        val = _lookup(m[1], v, ctx.user_macros)
        return m[0] if val is None else _esc(val, json_escape)

    return _MACRO.sub(sub, text)


def _in_tag(body: str, v: Mapping[str, str | None], user_macros: Mapping[str, str]) -> str:
    """Macros inside a Jinja tag: as string literals, or escaped inside the tag's own string literal."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(body):
        ch = body[i]
        if quote and ch == "\\" and i + 1 < len(body):
            out.append(body[i:i + 2])
            i += 2
            continue
        if ch in "\"'":
            quote = None if quote == ch else (ch if quote is None else quote)
        elif ch == "{":
            m = _MACRO.match(body, i)
            if m:
                val = _lookup(m[1], v, user_macros)
                if val is not None:
                    if quote:
                        out.append(val.replace("\\", "\\\\").replace(quote, "\\" + quote))
                    else:
                        out.append(repr(val))
                    i = m.end()
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.Undefined)


def render(template: str, ctx: MessageContext, json_escape: bool = False) -> str:
    """Expand the macros, then render the Jinja2 template; TemplateFailure names the error's line."""
    v = values(ctx)
    pieces: list[str] = []  # macro values kept out of Jinja's reach, put back after rendering
    out: list[str] = []
    pos = 0
    marker = "\x00"

    def outside(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            val = _lookup(m[1], v, ctx.user_macros)
            if val is None:
                return m[0]
            pieces.append(_esc(val, json_escape))
            return f"{marker}{len(pieces) - 1}{marker}"

        return _MACRO.sub(sub, text.replace(marker, ""))

    while True:
        m = _TAG_OPEN.search(template, pos)
        if m is None:
            out.append(outside(template[pos:]))
            break
        out.append(outside(template[pos:m.start()]))
        close = template.find(_TAG_CLOSE[m[1]], m.end())
        if close < 0:  # unterminated: let Jinja report it
            out.append(template[m.start():])
            break
        out.append(template[m.start():m.end()] + _in_tag(template[m.end():close], v, ctx.user_macros))
        pos = close
    source = "".join(out)
    try:
        text = _ENV.from_string(source).render(variables(ctx, v))
    except jinja2.TemplateSyntaxError as e:
        raise TemplateFailure(f"template error at line {e.lineno}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise TemplateFailure(f"template error: {e}") from None
    except Exception as e:  # a filter given the wrong type, a division by zero in the template...
        raise TemplateFailure(f"template error: {type(e).__name__}: {e}") from None
    return re.sub(f"{marker}([0-9]+){marker}", lambda mm: pieces[int(mm[1])], text)


def default_templates(kind: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """The subject and message of a media type for `kind` ("problem", "recovery", "update"): its
    own templates (subject/message, recovery_*, update_*) or the built-in defaults."""
    prefix = "" if kind == "problem" else kind + "_"
    subject = params.get(prefix + "subject") or DEFAULTS[kind][0]
    message = params.get(prefix + "message") or DEFAULTS[kind][1]
    return str(subject), str(message)
