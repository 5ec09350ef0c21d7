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
    from vigil.server.config.lld import DiscoveryRuleSpec

ITEM_TYPE_LABELS = {v: k for k, v in ITEM_TYPE_NAMES.items()}
# Zabbix's host tls_accept flags
TLS_UNENCRYPTED, TLS_PSK, TLS_CERT = 1, 2, 4
TLS_ACCEPT_NAMES = {"unencrypted": TLS_UNENCRYPTED, "psk": TLS_PSK, "cert": TLS_CERT}
HOST_FIELDS = {"host", "name", "groups", "status", "description", "templates", "macros", "items", "tls_accept",
               "tls_issuer", "tls_subject", "triggers", "interfaces", "proxy",
               "discovery_rules", "tags", "proxy_group"}
TEMPLATE_FIELDS = {"template", "name", "groups", "description", "macros", "items", "triggers", "discovery_rules"}
DOCUMENT_FIELDS = {"hosts", "templates", "host_groups", "vigil", "macros", "media_types", "user_groups", "users",
                   "actions", "maintenances", "proxies", "proxy_groups"}
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
    # Pollers (see "Polled items" below): the interface, HTTP request, master item and preprocessing.
    poll: PollSpec = field(default_factory=lambda: PollSpec())


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
    interfaces: list[InterfaceSpec] | None = None  # None: the document does not say; keep what the host has
    triggers: list[TriggerSpec] = field(default_factory=list)
    proxy: str | None = None  # the proxy monitoring the host; '': the server itself; None: as it is
    discovery_rules: list[DiscoveryRuleSpec] = field(default_factory=list)  # lld.py
    tags: list[tuple[str, str]] | None = None  # None: the document does not say; keep the host's
    proxy_group: str | None = None  # the proxy group monitoring the host; '': none; None: as it is


@dataclass
class ProxySpec:
    """A Zabbix 6.0 proxy (or `vigil proxy`) collecting for the server."""

    name: str  # the proxy's Hostname
    mode: int = 0  # ProxyMode: 0 active, 1 passive
    address: str = ""  # passive: host:port where the server reaches it
    allowed_addresses: list[str] = field(default_factory=list)  # active: addresses/CIDRs it may connect from
    description: str = ""
    group: str = ""  # the proxy group it belongs to ('': none)


@dataclass
class ProxyGroupSpec:
    """Zabbix 7.0's proxy group: its hosts go to whichever of its proxies are online."""

    name: str
    failover_delay: str = "1m"  # how long a proxy may be silent before its hosts move (10s..15m)
    min_online: int = 1  # fewer online proxies than this: the group is offline and nothing moves
    description: str = ""


@dataclass
class TemplateSpec:
    template: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    description: str = ""
    macros: dict[str, str] = field(default_factory=dict)
    items: list[ItemSpec] = field(default_factory=list)
    triggers: list[TriggerSpec] = field(default_factory=list)
    discovery_rules: list[DiscoveryRuleSpec] = field(default_factory=list)  # lld.py


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
    proxies: list[ProxySpec] | None = None  # None: the document has no proxies: section
    proxy_groups: list[ProxyGroupSpec] | None = None  # None: the document has no proxy_groups: section


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


def _host_tags(v: Any, where: str) -> list[tuple[str, str]]:
    out = _tags(v, where)
    for i, (k, val) in enumerate(out):
        if not k.strip() or len(k) > 255 or len(val) > 255:
            raise ConfigError(f"{where}[{i}]: a tag name of 1 to 255 characters and a value of at most 255")
    return out


ITEM_FIELDS = {"key", "type", "value_type", "name", "units", "delay", "history", "trends", "status",
               "description", "tags"} | set()  # and POLL_FIELDS, added below


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
        poll=poll_from_doc(d, ITEM_TYPE_NAMES[t], where),
    )
    for name, check in (("delay", seconds), ("history", history_seconds), ("trends", trends_seconds)):
        value = getattr(spec, name)
        if "{$" in value:
            continue  # a user macro: checked once resolved for a host
        try:
            check(value, f"{where}.{name}")
        except DurationError as e:
            raise ConfigError(str(e)) from None
    if spec.type not in NO_DELAY_TYPES and "{$" not in spec.delay and seconds(spec.delay) == 0:
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
    from vigil.server.config.lld import rules_from_doc

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
            discovery_rules=rules_from_doc(t, where),
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
            interfaces=interfaces_from_doc(h["interfaces"], f"{where}.interfaces") if "interfaces" in h else None,
            triggers=triggers_from_doc(h, where), discovery_rules=rules_from_doc(h, where),
            proxy=_proxy_ref(h, where),
            tags=_host_tags(h.get("tags"), f"{where}.tags") if "tags" in h else None,
            proxy_group=_proxy_group_ref(h, where),
        ))
        _check_interface_refs(out.hosts[-1], where)
    if "proxies" in doc:
        out.proxies = proxies_from_doc(doc["proxies"])
    if "proxy_groups" in doc:
        out.proxy_groups = proxy_groups_from_doc(doc["proxy_groups"])
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
    d.update(poll_to_doc(it.poll, it.type))
    return d


def resolve_macros(text: str, macros: dict[str, str]) -> str:
    """Replace {$NAME} with the host's (or its templates') value; unknown macros stay as written."""
    if "{$" not in text:
        return text
    return _MACRO.sub(lambda m: macros.get(m.group(), m.group()), text)


# --- Polled items and host interfaces (pollers, migration 0007) -------------------------------------
# An item the server polls may name its host interface (`interface_ref`, else the host's main one of
# its kind), HTTP agent fields, a master item (dependent items) and preprocessing steps.

# Zabbix 6.0's preprocessing step numbers, by the names its YAML export uses (lower case here).
PREPROC_TYPES = {
    "multiplier": 1, "rtrim": 2, "ltrim": 3, "trim": 4, "regex": 5, "bool_to_decimal": 6, "octal_to_decimal": 7,
    "hex_to_decimal": 8, "simple_change": 9, "change_per_second": 10, "xmlpath": 11, "jsonpath": 12,
    "in_range": 13, "matches_regex": 14, "not_matches_regex": 15, "check_json_error": 16, "check_xml_error": 17,
    "check_regex_error": 18, "discard_unchanged": 19, "discard_unchanged_heartbeat": 20, "javascript": 21,
    "prometheus_pattern": 22, "prometheus_to_json": 23, "csv_to_json": 24, "str_replace": 25,
    "check_not_supported": 26, "xml_to_json": 27, "snmp_walk_to_json": 29,
}
PREPROC_LABELS = {v: k for k, v in PREPROC_TYPES.items()}
ERROR_HANDLERS = {"original_error": 0, "discard_value": 1, "custom_value": 2, "custom_error": 3}
ERROR_HANDLER_LABELS = {v: k for k, v in ERROR_HANDLERS.items()}
HTTP_METHODS = {"GET": 0, "POST": 1, "PUT": 2, "HEAD": 3}
HTTP_METHOD_LABELS = {v: k for k, v in HTTP_METHODS.items()}
AUTH_TYPES = {"none": 0, "basic": 1, "bearer": 5}
AUTH_LABELS = {v: k for k, v in AUTH_TYPES.items()}
SSH_AUTH_TYPES = {"password": 0, "publickey": 1}  # Zabbix's authtype of SSH items
SSH_AUTH_LABELS = {v: k for k, v in SSH_AUTH_TYPES.items()}
SCRIPT_TYPES = {ItemType.SSH, ItemType.TELNET}
RETRIEVE_MODES = {"body": 0, "headers": 1, "both": 2}
RETRIEVE_LABELS = {v: k for k, v in RETRIEVE_MODES.items()}
NO_DELAY_TYPES = {ItemType.TRAPPER, ItemType.DEPENDENT, ItemType.SNMP_TRAP}
POLL_FIELDS = {"interface_ref", "master_item", "params", "preprocessing", "snmp_oid", "ipmi_sensor", "url",
               "query_fields",
               "method", "headers", "body", "status_codes", "follow_redirects", "verify_peer", "verify_host",
               "ssl_cert_file", "ssl_key_file", "auth", "username", "password", "retrieve_mode", "timeout",
               "jmx_endpoint", "publickey", "privatekey"}
ITEM_FIELDS |= POLL_FIELDS
INTERFACE_FIELDS = {"type", "address", "port", "main", "interface_ref", "useip"}
SNMP_FIELDS = {"version", "community", "bulk", "max_repetitions", "securityname", "securitylevel", "authprotocol",
               "authpassphrase", "privprotocol", "privpassphrase", "contextname"}
IPMI_FIELDS = {"username", "password", "authtype", "privilege"}
# Zabbix's host IPMI authentication types and privilege levels (server/pollers/ipmi.py speaks RMCP+ only).
IPMI_AUTHTYPES = ("default", "none", "md2", "md5", "straight", "oem", "rmcp_plus")
IPMI_PRIVILEGES = ("callback", "user", "operator", "admin", "oem")
DEFAULT_PORTS = {"agent": "10050", "snmp": "161", "ipmi": "623", "jmx": "12345"}
_STATUS_CODES = re.compile(r"\s*(?:\d+(?:\s*-\s*\d+)?|\{\$[A-Z0-9_.]+\})(?:\s*,\s*(?:\d+(?:\s*-\s*\d+)?|"
                           r"\{\$[A-Z0-9_.]+\}))*\s*")


@dataclass
class PreprocStep:
    type: int  # PREPROC_TYPES
    params: str = ""  # the step's parameters joined by newlines, as Zabbix stores them
    error_handler: int = 0  # ERROR_HANDLERS
    error_handler_params: str = ""


@dataclass
class PollSpec:
    interface_ref: str = ""  # '' : the host's main interface of the item's kind
    master_item: str = ""  # a dependent item's master: the key of an item of the same host
    params: str = ""
    preprocessing: list[PreprocStep] = field(default_factory=list)
    snmp_oid: str = ""  # SNMP items: an OID (numeric or MIB name), walk[OID,...] or discovery[...]
    ipmi_sensor: str = ""  # IPMI items: the sensor's name (its SDR ID string); empty for ipmi.get
    url: str = ""
    query_fields: list[tuple[str, str]] = field(default_factory=list)
    method: int = 0  # HTTP_METHODS
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    status_codes: str = "200"
    follow_redirects: bool = True
    verify_peer: bool = False
    verify_host: bool = False
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    auth: int = 0  # AUTH_TYPES
    username: str = ""
    password: str = ""
    retrieve_mode: int = 0  # RETRIEVE_MODES
    timeout: str = "3s"
    publickey: str = ""  # ssh items with auth publickey: file names in VIGIL_SSH_KEY_LOCATION
    privatekey: str = ""
    jmx_endpoint: str = ""  # JMX items: '' : JMX_DEFAULT_ENDPOINT


JMX_DEFAULT_ENDPOINT = "service:jmx:rmi:///jndi/rmi://{HOST.CONN}:{HOST.PORT}/jmxrmi"


@dataclass
class InterfaceSpec:
    type: int  # InterfaceType
    address: str  # an IP address or a DNS name
    port: str = ""
    main: bool = True
    ref: str = ""  # how items name it (interface_ref); by default agent1, agent2, snmp1... in document order
    details: dict[str, str] = field(default_factory=dict)  # SNMP version/community/v3 user, IPMI user

    @property
    def useip(self) -> bool:
        import ipaddress

        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            return False
        return True


def _bool(d: dict[str, Any], name: str, where: str, default: bool) -> bool:
    v = d.get(name, default)
    if isinstance(v, bool):
        return v
    if v in ("yes", "no"):
        return v == "yes"
    raise ConfigError(f"{where}.{name}: expected true or false, got {v!r}")


def _pairs(v: Any, where: str) -> list[tuple[str, str]]:
    """`{Name: value}` or `[{name: N, value: V}]` (the latter keeps repeated names)."""
    if v is None:
        return []
    if isinstance(v, dict):
        return [(str(k), "" if x is None else str(x)) for k, x in v.items()]
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a mapping of name: value or a list of {{name, value}}")
    out = []
    for i, p in enumerate(v):
        if not isinstance(p, dict) or "name" not in p:
            raise ConfigError(f"{where}[{i}]: expected {{name: NAME, value: VALUE}}")
        out.append((str(p["name"]), "" if p.get("value") is None else str(p["value"])))
    return out


def _choice(d: dict[str, Any], name: str, where: str, names: dict[str, int], default: str) -> int:
    v = d.get(name, default)
    key = v.upper() if names is HTTP_METHODS and isinstance(v, str) else v
    if key not in names:
        raise ConfigError(f"{where}.{name}: {v!r} is not one of {', '.join(names)}")
    return names[key]


def _preprocessing(v: Any, where: str) -> list[PreprocStep]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list of {{type, params, error_handler}}")
    out = []
    for i, s in enumerate(v):
        w = f"{where}[{i}]"
        if not isinstance(s, dict) or "type" not in s:
            raise ConfigError(f"{w}: expected {{type: NAME, params: [...], error_handler: ...}}")
        _check_keys(s, {"type", "params", "error_handler", "error_handler_params"}, w)
        kind = str(s["type"]).lower()
        if kind not in PREPROC_TYPES:
            raise ConfigError(f"{w}.type: {s['type']!r} is not one of {', '.join(PREPROC_TYPES)}")
        params = s.get("params", [])
        if isinstance(params, str | int | float) and not isinstance(params, bool):
            params = [str(params)]
        if not isinstance(params, list) or not all(isinstance(p, str | int | float) for p in params):
            raise ConfigError(f"{w}.params: expected a list of texts")
        handler = str(s.get("error_handler", "original_error")).lower()
        if handler not in ERROR_HANDLERS:
            raise ConfigError(f"{w}.error_handler: {s['error_handler']!r} is not one of {', '.join(ERROR_HANDLERS)}")
        hparams = _text(s, "error_handler_params", w, "")
        if handler == "custom_error" and not hparams:
            raise ConfigError(f"{w}.error_handler_params: custom_error needs the error message to set")
        out.append(PreprocStep(PREPROC_TYPES[kind], "\n".join(str(p) for p in params), ERROR_HANDLERS[handler],
                               hparams))
    _validate_steps(out, where)
    return out


def _validate_steps(steps: list[PreprocStep], where: str) -> None:
    """Parameters that cannot work (a regex or JSONPath that does not compile...) are refused at import."""
    from vigil.server.preprocessing import Step, StepError, validate

    try:
        validate([Step(s.type, s.params, s.error_handler, s.error_handler_params) for s in steps])
    except StepError as e:
        m = re.match(r"step (\d+) \(([^)]*)\): (.*)", str(e), re.S)
        if m is None:
            raise ConfigError(f"{where}: {e}") from None
        raise ConfigError(f"{where}[{int(m.group(1)) - 1}].params: {m.group(2)}: {m.group(3)}") from None


def poll_from_doc(d: dict[str, Any], kind: ItemType, where: str) -> PollSpec:
    p = PollSpec(
        interface_ref=_text(d, "interface_ref", where, ""), master_item=_text(d, "master_item", where, "", 2048),
        params=_text(d, "params", where, "", 65535),
        preprocessing=_preprocessing(d.get("preprocessing"), f"{where}.preprocessing"),
        snmp_oid=_text(d, "snmp_oid", where, "", 512), ipmi_sensor=_text(d, "ipmi_sensor", where, "", 128),
        url=_text(d, "url", where, "", 2048), query_fields=_pairs(d.get("query_fields"), f"{where}.query_fields"),
        method=_choice(d, "method", where, HTTP_METHODS, "GET"), headers=_pairs(d.get("headers"), f"{where}.headers"),
        body=_text(d, "body", where, "", 65535), status_codes=_text(d, "status_codes", where, "200"),
        follow_redirects=_bool(d, "follow_redirects", where, True),
        verify_peer=_bool(d, "verify_peer", where, False), verify_host=_bool(d, "verify_host", where, False),
        ssl_cert_file=_text(d, "ssl_cert_file", where, ""), ssl_key_file=_text(d, "ssl_key_file", where, ""),
        auth=_choice(d, "auth", where, SSH_AUTH_TYPES, "password") if kind == ItemType.SSH else
        _choice(d, "auth", where, AUTH_TYPES, "none"), username=_text(d, "username", where, ""),
        password=_text(d, "password", where, ""), retrieve_mode=_choice(d, "retrieve_mode", where, RETRIEVE_MODES,
                                                                        "body"),
        timeout=_text(d, "timeout", where, "3s"), jmx_endpoint=_text(d, "jmx_endpoint", where, "", 255),
        publickey=_text(d, "publickey", where, "", 64), privatekey=_text(d, "privatekey", where, "", 64),
    )
    if kind != ItemType.JMX and p.jmx_endpoint:
        raise ConfigError(f"{where}.jmx_endpoint: only jmx items have a JMX endpoint")
    if p.jmx_endpoint == JMX_DEFAULT_ENDPOINT:
        p.jmx_endpoint = ""
    if p.jmx_endpoint and not p.jmx_endpoint.startswith("service:jmx:"):
        raise ConfigError(f"{where}.jmx_endpoint: {p.jmx_endpoint!r} is not a JMX service URL "
                          "(service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi)")
    _check_channel_key(d.get("key", ""), kind, where)
    _check_script_item(p, kind, where)
    if kind == ItemType.HTTP_AGENT:
        if not p.url:
            raise ConfigError(f"{where}.url: an http_agent item needs the URL to request")
        if not re.match(r"(?i)(https?://|\{)", p.url) and "://" in p.url:
            raise ConfigError(f"{where}.url: {p.url!r}: only http:// and https:// URLs can be requested")
    elif p.url:
        raise ConfigError(f"{where}.url: only http_agent items have a URL")
    if not _STATUS_CODES.fullmatch(p.status_codes):
        raise ConfigError(f"{where}.status_codes: {p.status_codes!r} is not a list of codes and ranges "
                          "like 200,201,210-299")
    if "{$" not in p.timeout:
        try:
            t = seconds(p.timeout, f"{where}.timeout")
        except DurationError as e:
            raise ConfigError(str(e)) from None
        if not 1 <= t <= 60:
            raise ConfigError(f"{where}.timeout: {p.timeout!r} must be between 1s and 60s")
    if p.auth and kind == ItemType.HTTP_AGENT and (p.auth == AUTH_TYPES["bearer"]) != (not p.username):
        if p.auth == AUTH_TYPES["bearer"]:
            raise ConfigError(f"{where}.username: bearer authentication takes the token in password, no username")
        raise ConfigError(f"{where}.username: basic authentication needs a username")
    if kind == ItemType.SNMP and not p.snmp_oid:
        raise ConfigError(f"{where}.snmp_oid: an snmp item needs the OID to get, e.g. 1.3.6.1.2.1.1.5.0 or "
                          "walk[1.3.6.1.2.1.2.2.1.2]")
    if kind != ItemType.SNMP and p.snmp_oid:
        raise ConfigError(f"{where}.snmp_oid: only snmp items have an OID")
    if kind == ItemType.IPMI and not p.ipmi_sensor and str(d.get("key", "")).split("[")[0] != "ipmi.get":
        raise ConfigError(f"{where}.ipmi_sensor: an ipmi item needs the sensor to read, e.g. 'CPU Temp' "
                          "(or the key ipmi.get for all sensors as JSON)")
    if kind != ItemType.IPMI and p.ipmi_sensor:
        raise ConfigError(f"{where}.ipmi_sensor: only ipmi items have a sensor")
    if kind == ItemType.DEPENDENT:
        if not p.master_item:
            raise ConfigError(f"{where}.master_item: a dependent item needs the key of its master item")
    elif p.master_item:
        raise ConfigError(f"{where}.master_item: only dependent items have a master item")
    return p


def _check_script_item(p: PollSpec, kind: ItemType, where: str) -> None:
    """SSH, Telnet and calculated items: what they need, and no key files on other items."""
    if kind in SCRIPT_TYPES:
        name = kind.name.lower()
        if not p.params.strip():
            raise ConfigError(f"{where}.params: a {name} item needs the script (commands) to run on the host")
        if not p.username:
            raise ConfigError(f"{where}.username: a {name} item needs the user to log in as")
    if kind == ItemType.SSH and p.auth == SSH_AUTH_TYPES["publickey"]:
        for f in ("publickey", "privatekey"):
            v = getattr(p, f)
            if not v:
                raise ConfigError(f"{where}.{f}: publickey authentication needs the {f} file name "
                                  "(in VIGIL_SSH_KEY_LOCATION)")
            if "/" in v or v in (".", ".."):
                raise ConfigError(f"{where}.{f}: {v!r} must be a file name in VIGIL_SSH_KEY_LOCATION, not a path")
    elif p.publickey or p.privatekey:
        raise ConfigError(f"{where}.{'publickey' if p.publickey else 'privatekey'}: only ssh items with "
                          "auth: publickey have key files")
    if kind == ItemType.CALCULATED:
        if not p.params.strip():
            raise ConfigError(f"{where}.params: a calculated item needs its formula, e.g. "
                              "last(//net.if.in[eth0])+last(//net.if.out[eth0])")
        from vigil.server.triggers.expression import ExpressionError, parse

        try:
            parse(p.params, calculated=True)
        except ExpressionError as e:
            raise ConfigError(f"{where}.params: {e}") from None


def poll_to_doc(p: PollSpec, kind: ItemType | None = None) -> dict[str, Any]:
    """The poll fields that differ from their defaults."""
    d: dict[str, Any] = {}
    if p.interface_ref:
        d["interface_ref"] = p.interface_ref
    if p.master_item:
        d["master_item"] = p.master_item
    if p.params:
        d["params"] = p.params
    if p.snmp_oid:
        d["snmp_oid"] = p.snmp_oid
    if p.ipmi_sensor:
        d["ipmi_sensor"] = p.ipmi_sensor
    if p.url:
        d["url"] = p.url
    if p.query_fields:
        d["query_fields"] = [{"name": n, "value": v} for n, v in p.query_fields]
    if p.method:
        d["method"] = HTTP_METHOD_LABELS[p.method]
    if p.headers:
        d["headers"] = [{"name": n, "value": v} for n, v in p.headers]
    if p.body:
        d["body"] = p.body
    if p.status_codes != "200":
        d["status_codes"] = p.status_codes
    if not p.follow_redirects:
        d["follow_redirects"] = False
    for name in ("verify_peer", "verify_host"):
        if getattr(p, name):
            d[name] = True
    for name in ("ssl_cert_file", "ssl_key_file", "username", "password", "publickey", "privatekey"):
        if getattr(p, name):
            d[name] = getattr(p, name)
    if kind == ItemType.SSH:
        d["auth"] = SSH_AUTH_LABELS.get(p.auth, "password")
    elif p.auth:
        d["auth"] = AUTH_LABELS[p.auth]
    if p.retrieve_mode:
        d["retrieve_mode"] = RETRIEVE_LABELS[p.retrieve_mode]
    if p.timeout != "3s":
        d["timeout"] = p.timeout
    if p.jmx_endpoint:
        d["jmx_endpoint"] = p.jmx_endpoint
    if p.preprocessing:
        steps = []
        for s in p.preprocessing:
            sd: dict[str, Any] = {"type": PREPROC_LABELS[s.type]}
            if s.params:
                sd["params"] = s.params.split("\n")
            if s.error_handler:
                sd["error_handler"] = ERROR_HANDLER_LABELS[s.error_handler]
            if s.error_handler_params:
                sd["error_handler_params"] = s.error_handler_params
            steps.append(sd)
        d["preprocessing"] = steps
    return d


def interfaces_from_doc(v: Any, where: str) -> list[InterfaceSpec]:
    from vigil.server.config.tables import INTERFACE_TYPE_NAMES

    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list of {{type, address, port}}")
    out: list[InterfaceSpec] = []
    for i, d in enumerate(v):
        w = f"{where}[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{w}: expected a mapping with type and address")
        kind = d.get("type", "agent")
        if kind not in INTERFACE_TYPE_NAMES:
            raise ConfigError(f"{w}.type: {kind!r} is not one of {', '.join(INTERFACE_TYPE_NAMES)}")
        extra = SNMP_FIELDS if kind == "snmp" else IPMI_FIELDS if kind == "ipmi" else set()
        _check_keys(d, INTERFACE_FIELDS | extra, w)
        address = _text(d, "address", w, limit=255).strip()
        if not address or not re.fullmatch(r"[0-9A-Za-z_.:\-\[\]{}$]+", address):
            raise ConfigError(f"{w}.address: {address!r} is not an IP address or DNS name")
        port = _text(d, "port", w, DEFAULT_PORTS[kind], 64)
        if "{$" not in port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"{w}.port: {port!r} is not a port number from 1 to 65535")
        details = {k: _text(d, k, w, limit=255) for k in sorted(extra) if k in d}
        if kind == "snmp":
            version = details.setdefault("version", "2")
            if version not in ("1", "2", "3"):
                raise ConfigError(f"{w}.version: {version!r} is not one of 1, 2, 3 (2 is v2c)")
            level = details.get("securitylevel", "noAuthNoPriv")
            if level not in ("noAuthNoPriv", "authNoPriv", "authPriv"):
                raise ConfigError(f"{w}.securitylevel: {level!r} is not one of noAuthNoPriv, authNoPriv, authPriv")
            if version == "3" and not details.get("securityname"):
                raise ConfigError(f"{w}.securityname: SNMPv3 needs the user (security name)")
            if version != "3":
                details.setdefault("community", "{$SNMP_COMMUNITY}")
        if kind == "ipmi":
            for name, names in (("authtype", IPMI_AUTHTYPES), ("privilege", IPMI_PRIVILEGES)):
                if name in details and "{$" not in details[name] and details[name].lower() not in names:
                    raise ConfigError(f"{w}.{name}: {details[name]!r} is not one of {', '.join(names)}")
                if name in details:
                    details[name] = details[name].lower()
        same = sum(1 for x in out if x.type == INTERFACE_TYPE_NAMES[kind])
        out.append(InterfaceSpec(  # default name: agent1, agent2, snmp1... (stable when another type's goes)
            type=int(INTERFACE_TYPE_NAMES[kind]), address=address, port=port,
            main=_bool(d, "main", w, same == 0), ref=_text(d, "interface_ref", w, f"{kind}{same + 1}", 64),
            details=details,
        ))
    for i, itf in enumerate(out):
        if itf.ref in [x.ref for x in out[:i]]:
            raise ConfigError(f"{where}[{i}].interface_ref: {itf.ref!r} appears twice")
        if itf.main and any(x.main and x.type == itf.type for x in out[:i]):
            raise ConfigError(f"{where}[{i}].main: a host has one main interface of each type")
    for kind in {x.type for x in out}:
        if not any(x.main for x in out if x.type == kind):
            raise ConfigError(f"{where}: no main interface of type {kind}: mark one with main: true")
    return out


def interface_to_doc(itf: InterfaceSpec) -> dict[str, Any]:
    from vigil.server.config.tables import InterfaceType

    kind = InterfaceType(itf.type).name.lower()
    d: dict[str, Any] = {"type": kind, "address": itf.address, "interface_ref": itf.ref}
    if itf.port != DEFAULT_PORTS[kind]:
        d["port"] = itf.port
    d["main"] = itf.main
    d.update(itf.details)
    return d


def _check_interface_refs(h: HostSpec, where: str) -> None:
    """Items naming an interface must name one of the host's (when the document lists them)."""
    if h.interfaces is None:
        return
    refs = {x.ref for x in h.interfaces}
    for i, it in enumerate(h.items):
        if it.poll.interface_ref and it.poll.interface_ref not in refs:
            raise ConfigError(f"{where}.items[{i}].interface_ref: {it.poll.interface_ref!r} is not one of the "
                              f"host's interfaces ({', '.join(sorted(refs)) or 'none'})")


# --- More channels (JMX, Nagios plugins, external checks) --------------------------------------------

JMX_KEYS = ("jmx", "jmx.discovery", "jmx.get")


def _check_channel_key(key: Any, kind: ItemType, where: str) -> None:
    """Keys the JMX, Nagios and external pollers cannot run are refused at import, naming the field."""
    if kind not in (ItemType.JMX, ItemType.NAGIOS, ItemType.EXTERNAL) or not isinstance(key, str):
        return
    try:
        k = parse_key(key)
    except ItemKeyError:
        return  # item_from_doc reports it
    if kind == ItemType.JMX and k.name not in JMX_KEYS:
        raise ConfigError(f"{where}.key: {key!r}: a jmx item's key is one of {', '.join(JMX_KEYS)}[...]")
    if kind == ItemType.NAGIOS:
        if k.name != "nagios.check" or not k.params or isinstance(k.params[0], list) or not k.params[0]:
            raise ConfigError(f"{where}.key: {key!r}: a nagios item's key is nagios.check[plugin,<arg>,...]")
        if not plain_file_name(k.params[0]):
            raise ConfigError(f"{where}.key: {k.params[0]!r} is not a plugin name (a file name in the plugin "
                              "directory, without '/')")
    if kind == ItemType.EXTERNAL and not plain_file_name(k.name):
        raise ConfigError(f"{where}.key: {k.name!r} is not a script name (a file name in VIGIL_EXTERNAL_SCRIPTS)")


def plain_file_name(name: str) -> bool:
    """A file name that stays inside its directory: no '/', not '.' or '..', no NUL."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")
# --- Proxies (migration 0010) -------------------------------------------------------------------------

PROXY_FIELDS = {"name", "mode", "address", "allowed_addresses", "description", "group"}
_PROXY_NAME = re.compile(r"[0-9A-Za-z_. \-]+")


def _proxy_ref(h: dict[str, Any], where: str) -> str | None:
    if "proxy" not in h:
        return None
    v = h["proxy"]
    if v is None:
        return ""
    return _text(h, "proxy", where, limit=128).strip()


def _address_list(v: Any, where: str) -> list[str]:
    import ipaddress

    if v is None:
        return []
    items = [x.strip() for x in v.split(",")] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of addresses or CIDRs")
    out = []
    for i, x in enumerate(items):
        if not isinstance(x, str) or not x.strip():
            raise ConfigError(f"{where}[{i}]: expected an address or CIDR")
        x = x.strip()
        try:
            ipaddress.ip_network(x, strict=False)
        except ValueError:
            if not re.fullmatch(r"[0-9A-Za-z_.\-]+", x):
                raise ConfigError(f"{where}[{i}]: {x!r} is not an IP address, CIDR or DNS name") from None
        out.append(x)
    return out


def proxy_address(address: str, where: str) -> tuple[str, int]:
    """host:port of a passive proxy ([v6]:port; port 10051 when left out)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([0-9A-Za-z_.\-]+)(?::(\d+))?", address)
    if m is None:
        raise ConfigError(f"{where}: {address!r} is not host:port")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 10051)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} is not from 1 to 65535")
    return host, port


def proxies_from_doc(v: Any) -> list[ProxySpec]:
    from vigil.server.config.tables import PROXY_MODE_NAMES

    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError("proxies: expected a list of {name, mode, address}")
    out: list[ProxySpec] = []
    for i, d in enumerate(v):
        where = f"proxies[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping with at least 'name'")
        _check_keys(d, PROXY_FIELDS, where)
        name = _text(d, "name", where, limit=128).strip()
        if not _PROXY_NAME.fullmatch(name):
            raise ConfigError(f"{where}.name: {name!r} may contain only letters, digits, space, '.', '_' and '-'")
        mode = d.get("mode", "active")
        if mode not in PROXY_MODE_NAMES:
            raise ConfigError(f"{where}.mode: {mode!r} is not one of active, passive")
        spec = ProxySpec(name=name, mode=int(PROXY_MODE_NAMES[mode]), address=_text(d, "address", where, "").strip(),
                         allowed_addresses=_address_list(d.get("allowed_addresses"), f"{where}.allowed_addresses"),
                         description=_text(d, "description", where, "", 65535),
                         group=(_text(d, "group", where, "", 128) if d.get("group") is not None else "").strip())
        if mode == "passive":
            if not spec.address:
                raise ConfigError(f"{where}.address: a passive proxy needs the host:port the server connects to")
            proxy_address(spec.address, f"{where}.address")
            if spec.allowed_addresses:
                raise ConfigError(f"{where}.allowed_addresses: only active proxies connect to the server")
        elif spec.address:
            raise ConfigError(f"{where}.address: only a passive proxy has an address (an active one connects in; "
                              "limit where from with allowed_addresses)")
        for j, other in enumerate(out):
            if other.name == name:
                raise ConfigError(f"{where}.name: {name!r} appears twice (also proxies[{j}])")
        out.append(spec)
    return out


def proxy_to_doc(p: ProxySpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": p.name, "mode": "passive" if p.mode == 1 else "active"}
    if p.address:
        d["address"] = p.address
    if p.allowed_addresses:
        d["allowed_addresses"] = list(p.allowed_addresses)
    if p.description:
        d["description"] = p.description
    if p.group:
        d["group"] = p.group
    return d


# --- Proxy groups (migration 0016) --------------------------------------------------------------------

PROXY_GROUP_FIELDS = {"name", "failover_delay", "min_online", "description"}
FAILOVER_DELAY_RANGE = (10, 900)  # Zabbix 7.0's 10s..15m
MIN_ONLINE_RANGE = (1, 1000)


def _proxy_group_ref(h: dict[str, Any], where: str) -> str | None:
    if "proxy_group" not in h:
        return None
    if h["proxy_group"] is None:
        return ""
    if "proxy" in h and h["proxy"]:
        raise ConfigError(f"{where}.proxy_group: a host is monitored by a proxy or by a proxy group, not both "
                          f"(it has proxy: {h['proxy']!r}; leave one out)")
    return _text(h, "proxy_group", where, limit=128).strip()


def failover_seconds(text: Any, where: str) -> int:
    try:
        s = seconds(text, where)
    except DurationError as e:
        raise ConfigError(str(e)) from None
    lo, hi = FAILOVER_DELAY_RANGE
    if not lo <= s <= hi:
        raise ConfigError(f"{where}: {text!r} is outside 10s..15m")
    return s


def proxy_groups_from_doc(v: Any) -> list[ProxyGroupSpec]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError("proxy_groups: expected a list of {name, failover_delay, min_online}")
    out: list[ProxyGroupSpec] = []
    for i, d in enumerate(v):
        where = f"proxy_groups[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping with at least 'name'")
        _check_keys(d, PROXY_GROUP_FIELDS, where)
        name = _text(d, "name", where, limit=128).strip()
        if not _PROXY_NAME.fullmatch(name):
            raise ConfigError(f"{where}.name: {name!r} may contain only letters, digits, space, '.', '_' and '-'")
        raw = d.get("failover_delay", "1m")
        failover_seconds(raw, f"{where}.failover_delay")
        delay = str(raw).strip()
        n = d.get("min_online", 1)
        if isinstance(n, str) and n.strip().isdigit():
            n = int(n)
        lo, hi = MIN_ONLINE_RANGE
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
            raise ConfigError(f"{where}.min_online: expected a number of proxies from 1 to 1000, got {n!r}")
        for j, other in enumerate(out):
            if other.name == name:
                raise ConfigError(f"{where}.name: {name!r} appears twice (also proxy_groups[{j}])")
        out.append(ProxyGroupSpec(name, delay, n, _text(d, "description", where, "", 65535)))
    return out


def proxy_group_to_doc(g: ProxyGroupSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": g.name, "failover_delay": g.failover_delay, "min_online": g.min_online}
    if g.description:
        d["description"] = g.description
    return d
