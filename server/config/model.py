"""The configuration as plain dataclasses, and their validation from YAML/JSON documents.

The document format (docs/config-format.md) is what `vigil config import` reads and
`vigil config export` writes. Validation errors name the field by its path in the document,
e.g. `hosts[0].items[2].value_type: 'flot' is not one of float, char, log, unsigned, text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vigil.agent.protocol.itemkey import ItemKeyError
from vigil.agent.protocol.itemkey import parse as parse_key
from vigil.server.config.durations import DurationError, history_seconds, seconds, trends_seconds
from vigil.server.config.tables import ITEM_TYPE_NAMES, VALUE_TYPE_NAMES, ItemType, ValueType

if TYPE_CHECKING:  # alerting.py imports this module's helpers; doc_from_dict imports it when run
    from vigil.server.config.alerting import ActionSpec, MaintenanceSpec, MediaTypeSpec, TriggerSpec, UserSpec

ITEM_TYPE_LABELS = {v: k for k, v in ITEM_TYPE_NAMES.items()}
# Zabbix's host tls_accept flags
TLS_UNENCRYPTED, TLS_PSK, TLS_CERT = 1, 2, 4
TLS_ACCEPT_NAMES = {"unencrypted": TLS_UNENCRYPTED, "psk": TLS_PSK, "cert": TLS_CERT}
HOST_FIELDS = {"host", "name", "groups", "status", "description", "templates", "macros", "items", "tls_accept",
               "tls_issuer", "tls_subject", "triggers"}
TEMPLATE_FIELDS = {"template", "name", "groups", "description", "macros", "items", "triggers"}
DOCUMENT_FIELDS = {"hosts", "templates", "host_groups", "vigil", "macros", "media_types", "user_groups", "users",
                   "actions", "maintenances"}
VALUE_TYPE_LABELS = {v: k for k, v in VALUE_TYPE_NAMES.items()}
_MACRO = re.compile(r"\{\$[A-Z0-9_.]+\}")


class ConfigError(ValueError):
    """A configuration document or request that cannot be applied; names the field."""


@dataclass
class ItemSpec:
    key: str
    type: ItemType = ItemType.TRAPPER
    value_type: ValueType = ValueType.FLOAT
    name: str = ""
    units: str = ""
    delay: str = "1m"
    history: str = "31d"
    trends: str = "365d"
    enabled: bool = True
    description: str = ""
    tags: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class HostSpec:
    host: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    enabled: bool = True
    description: str = ""
    # None: the document does not say, so an existing host keeps what it has.
    templates: list[str] | None = None
    macros: dict[str, str] | None = None
    items: list[ItemSpec] = field(default_factory=list)
    tls_accept: int | None = None  # TLS_UNENCRYPTED | TLS_CERT flags; None: as it is (new host: unencrypted)
    tls_issuer: str | None = None
    tls_subject: str | None = None
    triggers: list[TriggerSpec] = field(default_factory=list)


@dataclass
class TemplateSpec:
    template: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    description: str = ""
    macros: dict[str, str] = field(default_factory=dict)
    items: list[ItemSpec] = field(default_factory=list)
    triggers: list[TriggerSpec] = field(default_factory=list)


@dataclass
class ConfigDoc:
    host_groups: list[str] = field(default_factory=list)
    templates: list[TemplateSpec] = field(default_factory=list)
    hosts: list[HostSpec] = field(default_factory=list)
    # The alerting sections: None when the document does not have them (what is stored stays as it is).
    macros: dict[str, str] | None = None  # global user macros; replaces them all when present
    media_types: list[MediaTypeSpec] | None = None
    user_groups: list[str] | None = None
    users: list[UserSpec] | None = None
    actions: list[ActionSpec] | None = None
    maintenances: list[MaintenanceSpec] | None = None


def _check_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown field {extra[0]!r} (known: {', '.join(sorted(allowed))})")


def _text(d: dict[str, Any], name: str, where: str, default: str | None = None, limit: int = 255) -> str:
    v = d.get(name, default)
    if v is None:
        raise ConfigError(f"{where}.{name}: required")
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ConfigError(f"{where}.{name}: expected text, got {type(v).__name__}")
    v = str(v)
    if len(v) > limit:
        raise ConfigError(f"{where}.{name}: longer than {limit} characters")
    return v


def _names(d: dict[str, Any], name: str, where: str) -> list[str]:
    v = d.get(name, [])
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ConfigError(f"{where}.{name}: expected a list of names")
    return [x.strip() for x in v]


def _status(d: dict[str, Any], where: str) -> bool:
    v = d.get("status", "enabled")
    if v not in ("enabled", "disabled"):
        raise ConfigError(f"{where}.status: {v!r} is not one of enabled, disabled")
    return v == "enabled"


def _macros(d: dict[str, Any], where: str) -> dict[str, str]:
    v = d.get("macros", {})
    if not isinstance(v, dict):
        raise ConfigError(f"{where}.macros: expected a mapping of {{$NAME}}: value")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not _MACRO.fullmatch(k):
            raise ConfigError(f"{where}.macros: {k!r} is not a user macro like {{$NAME}}")
        out[k] = "" if val is None else str(val)
    return out


def _tls_accept(v: Any, where: str) -> int:
    """`cert`, `[unencrypted, cert]` or Zabbix's flags (1 unencrypted, 4 cert; 5 both)."""
    names = [v] if isinstance(v, str) else v
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= 7:
            raise ConfigError(f"{where}: {v} is not a set of Zabbix's flags (1 unencrypted, 4 cert)")
        flags = v
    elif isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        flags = 0
        for n in names:
            if n not in TLS_ACCEPT_NAMES:
                raise ConfigError(f"{where}: {n!r} is not one of unencrypted, cert")
            flags |= TLS_ACCEPT_NAMES[n]
    else:
        raise ConfigError(f"{where}: expected unencrypted, cert or a list of them")
    if flags & TLS_PSK:
        raise ConfigError(f"{where}: psk is not supported by Vigil (Python's ssl module before 3.13 has no PSK "
                          "callbacks); use cert or unencrypted")
    return flags


def tls_accept_to_doc(flags: int) -> str | list[str]:
    names = [n for n, f in TLS_ACCEPT_NAMES.items() if flags & f]
    return names[0] if len(names) == 1 else names


def _tags(v: Any, where: str) -> list[tuple[str, str]]:
    if v is None:
        return []
    if isinstance(v, dict):
        return [(str(k), "" if x is None else str(x)) for k, x in v.items()]
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list of {{tag, value}} or a mapping")
    out = []
    for i, t in enumerate(v):
        if not isinstance(t, dict) or "tag" not in t:
            raise ConfigError(f"{where}[{i}]: expected {{tag: NAME, value: VALUE}}")
        out.append((str(t["tag"]), str(t.get("value", ""))))
    return out


ITEM_FIELDS = {"key", "type", "value_type", "name", "units", "delay", "history", "trends", "status",
               "description", "tags"}


def item_from_doc(d: Any, where: str) -> ItemSpec:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'key'")
    _check_keys(d, ITEM_FIELDS, where)
    key = _text(d, "key", where, limit=2048)
    try:
        parse_key(key)
    except ItemKeyError as e:
        raise ConfigError(f"{where}.key: {key!r} is not a valid item key: {e}") from None
    t = d.get("type", "trapper")
    if t not in ITEM_TYPE_NAMES:
        raise ConfigError(f"{where}.type: {t!r} is not one of {', '.join(ITEM_TYPE_NAMES)}")
    vt = d.get("value_type", "float")
    if vt not in VALUE_TYPE_NAMES:
        raise ConfigError(f"{where}.value_type: {vt!r} is not one of {', '.join(VALUE_TYPE_NAMES)}")
    spec = ItemSpec(
        key=key, type=ITEM_TYPE_NAMES[t], value_type=VALUE_TYPE_NAMES[vt],
        name=_text(d, "name", where, ""), units=_text(d, "units", where, ""),
        delay=_text(d, "delay", where, "1m", 64), history=_text(d, "history", where, "31d", 64),
        trends=_text(d, "trends", where, "365d", 64), enabled=_status(d, where),
        description=_text(d, "description", where, "", 65535), tags=_tags(d.get("tags"), f"{where}.tags"),
    )
    for name, check in (("delay", seconds), ("history", history_seconds), ("trends", trends_seconds)):
        value = getattr(spec, name)
        if "{$" in value:
            continue  # a user macro: checked once resolved for a host
        try:
            check(value, f"{where}.{name}")
        except DurationError as e:
            raise ConfigError(str(e)) from None
    if spec.type != ItemType.TRAPPER and "{$" not in spec.delay and seconds(spec.delay) == 0:
        raise ConfigError(f"{where}.delay: an {t} item needs an update interval above 0")
    return spec


def _items(d: dict[str, Any], where: str) -> list[ItemSpec]:
    v = d.get("items", [])
    if not isinstance(v, list):
        raise ConfigError(f"{where}.items: expected a list")
    items = [item_from_doc(x, f"{where}.items[{i}]") for i, x in enumerate(v)]
    seen: set[str] = set()
    for i, it in enumerate(items):
        if it.key in seen:
            raise ConfigError(f"{where}.items[{i}].key: {it.key!r} appears twice")
        seen.add(it.key)
    return items


def doc_from_dict(doc: Any) -> ConfigDoc:
    from vigil.server.config.alerting import alerting_from_doc, triggers_from_doc

    if doc is None:
        return ConfigDoc()
    if not isinstance(doc, dict):
        raise ConfigError("the document must be a mapping with hosts:, templates: or host_groups:")
    _check_keys(doc, DOCUMENT_FIELDS, "document")
    out = ConfigDoc(host_groups=_names(doc, "host_groups", "document"))
    if "macros" in doc:
        out.macros = _macros(doc, "document")
    for name, value in alerting_from_doc(doc).items():
        setattr(out, name, value)
    for i, t in enumerate(doc.get("templates") or []):
        where = f"templates[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: expected a mapping with at least 'template'")
        _check_keys(t, TEMPLATE_FIELDS, where)
        out.templates.append(TemplateSpec(
            template=_text(t, "template", where, limit=128), name=_text(t, "name", where, "", 128),
            groups=_names(t, "groups", where), description=_text(t, "description", where, "", 65535),
            macros=_macros(t, where), items=_items(t, where), triggers=triggers_from_doc(t, where),
        ))
    for i, h in enumerate(doc.get("hosts") or []):
        where = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise ConfigError(f"{where}: expected a mapping with at least 'host'")
        _check_keys(h, HOST_FIELDS, where)
        host = _text(h, "host", where, limit=128)
        if not re.fullmatch(r"[0-9A-Za-z_. \-]+", host):
            raise ConfigError(f"{where}.host: {host!r} may contain only letters, digits, space, '.', '_' and '-'")
        out.hosts.append(HostSpec(
            host=host, name=_text(h, "name", where, "", 128), groups=_names(h, "groups", where),
            enabled=_status(h, where), description=_text(h, "description", where, "", 65535),
            templates=_names(h, "templates", where) if "templates" in h else None,
            macros=_macros(h, where) if "macros" in h else None, items=_items(h, where),
            tls_accept=_tls_accept(h["tls_accept"], f"{where}.tls_accept") if "tls_accept" in h else None,
            tls_issuer=_text(h, "tls_issuer", where, limit=1024) if "tls_issuer" in h else None,
            tls_subject=_text(h, "tls_subject", where, limit=1024) if "tls_subject" in h else None,
            triggers=triggers_from_doc(h, where),
        ))
    for kind, field_, names in (("templates", "template", [t.template for t in out.templates]),
                                ("hosts", "host", [h.host for h in out.hosts])):
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ConfigError(f"{kind}[{i}].{field_}: {n!r} appears twice (also {kind}[{names.index(n)}])")
    templates = [t.template for t in out.templates]
    for i, h in enumerate(out.hosts):
        if h.host in templates:
            raise ConfigError(f"hosts[{i}].host: {h.host!r} is the name of a template "
                              f"(templates[{templates.index(h.host)}])")
    return out


def item_to_doc(it: ItemSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"key": it.key, "type": ITEM_TYPE_LABELS[it.type],
                         "value_type": VALUE_TYPE_LABELS[it.value_type]}
    if it.name:
        d["name"] = it.name
    if it.units:
        d["units"] = it.units
    if it.type != ItemType.TRAPPER or it.delay != "1m":
        d["delay"] = it.delay
    if it.history != "31d":
        d["history"] = it.history
    if it.trends != "365d":
        d["trends"] = it.trends
    if not it.enabled:
        d["status"] = "disabled"
    if it.description:
        d["description"] = it.description
    if it.tags:
        d["tags"] = [{"tag": t, "value": v} for t, v in it.tags]
    return d


def resolve_macros(text: str, macros: dict[str, str]) -> str:
    """Replace {$NAME} with the host's (or its templates') value; unknown macros stay as written."""
    if "{$" not in text:
        return text
    return _MACRO.sub(lambda m: macros.get(m.group(), m.group()), text)
